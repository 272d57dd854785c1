"""Message processing log steps and traces, custom header properties, log levels

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_processing_log_traces",
        sa.Column("message_guid", sa.String(length=64), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("step_start", sa.DateTime(), nullable=False),
        sa.Column("trace", sa.Text(), nullable=True),
        sa.Column("trace_size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "message_guid", "step_index", name=op.f("pk_message_processing_log_traces")
        ),
    )
    op.create_index(
        op.f("ix_message_processing_log_traces_step_start"),
        "message_processing_log_traces",
        ["step_start"],
    )
    op.create_table(
        "message_processing_log_properties",
        sa.Column("message_guid", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("adapter_id", sa.String(length=100), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=1000), nullable=False),
        sa.PrimaryKeyConstraint(
            "message_guid", "seq", name=op.f("pk_message_processing_log_properties")
        ),
    )
    op.create_index(
        "ix_message_processing_log_properties_search",
        "message_processing_log_properties",
        ["kind", "name", "value"],
    )
    op.create_table(
        "flow_log_levels",
        sa.Column("flow", sa.String(length=200), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=True),
        sa.Column("changed_by", sa.String(length=150), nullable=True),
        sa.Column("changed_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("flow", name=op.f("pk_flow_log_levels")),
    )
    with op.batch_alter_table("message_processing_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("steps", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("adapter_attributes", sa.Text(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_message_processing_logs_correlation_id"), ["correlation_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("message_processing_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_processing_logs_correlation_id"))
        batch_op.drop_column("adapter_attributes")
        batch_op.drop_column("steps")
    op.drop_table("flow_log_levels")
    op.drop_index(
        "ix_message_processing_log_properties_search",
        table_name="message_processing_log_properties",
    )
    op.drop_table("message_processing_log_properties")
    op.drop_index(
        op.f("ix_message_processing_log_traces_step_start"),
        table_name="message_processing_log_traces",
    )
    op.drop_table("message_processing_log_traces")

"""Message processing log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_processing_logs",
        sa.Column("message_guid", sa.String(length=64), nullable=False),
        sa.Column("correlation_id", sa.String(length=64), nullable=True),
        sa.Column("application_message_id", sa.String(length=200), nullable=True),
        sa.Column("application_message_type", sa.String(length=200), nullable=True),
        sa.Column("log_start", sa.DateTime(), nullable=False),
        sa.Column("log_end", sa.DateTime(), nullable=True),
        sa.Column("sender", sa.String(length=60), nullable=True),
        sa.Column("receiver", sa.String(length=60), nullable=True),
        sa.Column("integration_flow_name", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("custom_status", sa.String(length=20), nullable=True),
        sa.Column("log_level", sa.String(length=20), nullable=True),
        sa.Column("transaction_id", sa.String(length=64), nullable=True),
        sa.Column("endpoint", sa.String(length=400), nullable=True),
        sa.Column("user", sa.String(length=150), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("failed_step", sa.String(length=400), nullable=True),
        sa.Column("error_information", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("message_guid", name=op.f("pk_message_processing_logs")),
    )
    with op.batch_alter_table("message_processing_logs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_processing_logs_integration_flow_name"),
            ["integration_flow_name"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_message_processing_logs_log_start"), ["log_start"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_message_processing_logs_sender"), ["sender"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_message_processing_logs_status"), ["status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("message_processing_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_processing_logs_status"))
        batch_op.drop_index(batch_op.f("ix_message_processing_logs_sender"))
        batch_op.drop_index(batch_op.f("ix_message_processing_logs_log_start"))
        batch_op.drop_index(batch_op.f("ix_message_processing_logs_integration_flow_name"))

    op.drop_table("message_processing_logs")

"""Message processing log attachments

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_processing_log_attachments",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("message_guid", sa.String(length=64), nullable=False),
        sa.Column("time_stamp", sa.DateTime(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("payload_size", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_processing_log_attachments")),
    )
    with op.batch_alter_table("message_processing_log_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_processing_log_attachments_message_guid"),
            ["message_guid"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("message_processing_log_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_processing_log_attachments_message_guid"))

    op.drop_table("message_processing_log_attachments")

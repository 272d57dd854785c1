"""Change history (audit entries)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("change_id", sa.String(length=32), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("user", sa.String(length=150), nullable=True),
        sa.Column("operation", sa.String(length=20), nullable=False),
        sa.Column("entity_set", sa.String(length=60), nullable=False),
        sa.Column("pid", sa.String(length=60), nullable=True),
        sa.Column("previous_pid", sa.String(length=60), nullable=True),
        sa.Column("entity_key", sa.Text(), nullable=False),
        sa.Column("label", sa.String(length=600), nullable=True),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
    )
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_entries_change_id"), ["change_id"])
        batch_op.create_index(batch_op.f("ix_audit_entries_time"), ["time"])
        batch_op.create_index(batch_op.f("ix_audit_entries_pid"), ["pid"])
        batch_op.create_index(batch_op.f("ix_audit_entries_previous_pid"), ["previous_pid"])


def downgrade() -> None:
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_entries_previous_pid"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_pid"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_time"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_change_id"))

    op.drop_table("audit_entries")

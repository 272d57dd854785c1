"""Certificate mapping rules

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificate_mapping_rules",
        sa.Column("id", sa.String(length=60), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("user", sa.String(length=150), nullable=False),
        sa.Column("subject_dn", sa.String(length=1024), nullable=True),
        sa.Column("issuer_dn", sa.String(length=1024), nullable=True),
        sa.Column("serial_number", sa.String(length=64), nullable=True),
        sa.Column("thumbprint", sa.String(length=64), nullable=True),
        sa.Column("last_modified_by", sa.String(length=150), nullable=True),
        sa.Column("last_modified_time", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=150), nullable=True),
        sa.Column("created_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_mapping_rules")),
    )
    with op.batch_alter_table("certificate_mapping_rules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_certificate_mapping_rules_issuer_dn"), ["issuer_dn"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_certificate_mapping_rules_thumbprint"), ["thumbprint"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("certificate_mapping_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificate_mapping_rules_thumbprint"))
        batch_op.drop_index(batch_op.f("ix_certificate_mapping_rules_issuer_dn"))

    op.drop_table("certificate_mapping_rules")

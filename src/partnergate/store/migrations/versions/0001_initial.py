"""Partner Directory, certificate mappings, local users, OAuth clients

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alternative_partners",
        sa.Column("hexagency", sa.String(length=480), nullable=False),
        sa.Column("hexscheme", sa.String(length=480), nullable=False),
        sa.Column("hexid", sa.String(length=1020), nullable=False),
        sa.Column("agency", sa.String(length=120), nullable=False),
        sa.Column("scheme", sa.String(length=120), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.String(length=60), nullable=False),
        sa.Column("last_modified_by", sa.String(length=150), nullable=True),
        sa.Column("last_modified_time", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=150), nullable=True),
        sa.Column("created_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint(
            "hexagency", "hexscheme", "hexid", name=op.f("pk_alternative_partners")
        ),
        sa.UniqueConstraint(
            "agency", "scheme", "pid", name=op.f("uq_alternative_partners_agency_scheme_pid")
        ),
    )
    with op.batch_alter_table("alternative_partners", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alternative_partners_agency_scheme_id"),
            ["agency", "scheme", "id"],
            unique=True,
        )
        batch_op.create_index(batch_op.f("ix_alternative_partners_pid"), ["pid"], unique=False)

    op.create_table(
        "authorized_users",
        sa.Column("user", sa.String(length=150), nullable=False),
        sa.Column("pid", sa.String(length=60), nullable=False),
        sa.Column("last_modified_by", sa.String(length=150), nullable=True),
        sa.Column("last_modified_time", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=150), nullable=True),
        sa.Column("created_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("user", name=op.f("pk_authorized_users")),
    )
    with op.batch_alter_table("authorized_users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_authorized_users_pid"), ["pid"], unique=False)

    op.create_table(
        "binary_parameters",
        sa.Column("pid", sa.String(length=60), nullable=False),
        sa.Column("id", sa.String(length=1500), nullable=False),
        sa.Column("content_type", sa.String(length=300), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("last_modified_by", sa.String(length=150), nullable=True),
        sa.Column("last_modified_time", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=150), nullable=True),
        sa.Column("created_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("pid", "id", name=op.f("pk_binary_parameters")),
    )
    op.create_table(
        "certificate_user_mappings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user", sa.String(length=150), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=False),
        sa.Column("valid_until", sa.BigInteger(), nullable=True),
        sa.Column("last_modified_by", sa.String(length=150), nullable=True),
        sa.Column("last_modified_time", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=150), nullable=True),
        sa.Column("created_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_user_mappings")),
    )
    with op.batch_alter_table("certificate_user_mappings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_certificate_user_mappings_user"), ["user"], unique=False
        )

    op.create_table(
        "local_users",
        sa.Column("name", sa.String(length=150), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("created_time", sa.DateTime(), nullable=True),
        sa.Column("changed_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_local_users")),
    )
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(length=150), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("created_time", sa.DateTime(), nullable=True),
        sa.Column("changed_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_oauth_clients")),
    )
    op.create_table(
        "server_keys",
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_server_keys")),
    )
    op.create_table(
        "string_parameters",
        sa.Column("pid", sa.String(length=60), nullable=False),
        sa.Column("id", sa.String(length=1500), nullable=False),
        sa.Column("value", sa.String(length=4000), nullable=False),
        sa.Column("last_modified_by", sa.String(length=150), nullable=True),
        sa.Column("last_modified_time", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=150), nullable=True),
        sa.Column("created_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("pid", "id", name=op.f("pk_string_parameters")),
    )
    op.create_table(
        "user_credential_parameters",
        sa.Column("pid", sa.String(length=60), nullable=False),
        sa.Column("id", sa.String(length=1500), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("password_enc", sa.LargeBinary(), nullable=False),
        sa.Column("last_modified_by", sa.String(length=150), nullable=True),
        sa.Column("last_modified_time", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=150), nullable=True),
        sa.Column("created_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("pid", "id", name=op.f("pk_user_credential_parameters")),
    )


def downgrade() -> None:
    op.drop_table("user_credential_parameters")
    op.drop_table("string_parameters")
    op.drop_table("server_keys")
    op.drop_table("oauth_clients")
    op.drop_table("local_users")
    with op.batch_alter_table("certificate_user_mappings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificate_user_mappings_user"))

    op.drop_table("certificate_user_mappings")
    op.drop_table("binary_parameters")
    with op.batch_alter_table("authorized_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authorized_users_pid"))

    op.drop_table("authorized_users")
    with op.batch_alter_table("alternative_partners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alternative_partners_pid"))
        batch_op.drop_index(batch_op.f("ix_alternative_partners_agency_scheme_id"))

    op.drop_table("alternative_partners")

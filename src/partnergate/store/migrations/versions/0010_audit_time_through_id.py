"""History on SQLite: no index on ``time``; time ranges are found through ``id``

An entry's ``id`` begins with its time (20 digits), so the primary key's index already
orders the history by time. On SQLite the index on ``time`` was one more to write for
every entry (an import writes millions, and this one cost about 8 % of its time);
``AuditEntries`` filtered or ordered by ``Time`` now read through the ids
(``partnergate.store.audit.id_range``). PostgreSQL keeps the index: it orders strings with
``COLLATE "C"``, which the primary key's index (in the database's collation) cannot serve.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NAME = "ix_audit_entries_time"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index(NAME, table_name="audit_entries")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index(NAME, "audit_entries", ["time"])

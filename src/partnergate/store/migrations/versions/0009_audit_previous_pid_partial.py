"""History: index ``previous_pid`` only where a change moved an entity

Only a rename or a move between partners sets ``previous_pid``; every other entry (an
import writes millions) kept a NULL in the index that no query looks for. The History tab's
``pid = :p OR previous_pid = :p`` still finds moved entities by this index.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

NAME = "ix_audit_entries_previous_pid"
MOVED = sa.text("previous_pid IS NOT NULL")


def upgrade() -> None:
    op.drop_index(NAME, table_name="audit_entries")
    op.create_index(
        NAME, "audit_entries", ["previous_pid"], sqlite_where=MOVED, postgresql_where=MOVED
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="audit_entries")
    op.create_index(NAME, "audit_entries", ["previous_pid"])

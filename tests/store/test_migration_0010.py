"""Migration 0010 upgrades a store in place: the history it held stays, SQLite's index on
time goes (PostgreSQL keeps its), and a time range still finds the entries; and back."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from partnergate.model.entities import ENTITY_TYPES
from partnergate.odata.filter import parse_filter
from partnergate.security.secretbox import SecretBox
from partnergate.store import database
from partnergate.store.directory import DirectoryStore, ListRequest
from partnergate.store.tables import audit_entries

from ..conftest import STORE
from .test_migration_0009 import _to

ENTRY = {
    "id": "20260101120000000000-aaaaaaaa-0000000",
    "change_id": "aaaaaaaa",
    "time": datetime(2026, 1, 1, 12),
    "operation": "Create",
    "entity_set": "StringParameters",
    "pid": "Kept",
    "entity_key": '{"Id": "URL", "Pid": "Kept"}',
    "label": "URL",
}
"""An entry as the store wrote it before: its time in the column's own format."""


def _time_indexes(connection: sa.Connection) -> list[str]:
    found = sa.inspect(connection).get_indexes("audit_entries")
    return [i["name"] for i in found if i["column_names"] == ["time"]]


def test_an_old_store_keeps_its_history_and_finds_it_by_time(
    fresh_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        engine = database.create_engine(fresh_url)
        entity_type = ENTITY_TYPES["AuditEntries"]
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_to("0009"))
                await conn.execute(sa.insert(audit_entries), ENTRY)
                assert await conn.run_sync(_time_indexes) == ["ix_audit_entries_time"]
            await database.upgrade(engine)
            async with engine.connect() as conn:
                kept = [] if STORE == "sqlite" else ["ix_audit_entries_time"]
                assert await conn.run_sync(_time_indexes) == kept
            store = DirectoryStore(engine, SecretBox.from_key_file(tmp_path / "key"))
            for text, found in (
                ("Time ge datetime'2026-01-01T12:00:00'", ["Kept"]),
                ("Time eq datetime'2026-01-01T12:00:00'", ["Kept"]),
                ("Time lt datetime'2026-01-01T12:00:00'", []),
                ("Time gt datetime'2026-01-01T11:59:59.999999'", ["Kept"]),
            ):
                request = ListRequest(filter=parse_filter(text, entity_type))
                async with store.read() as directory:
                    rows = (await directory.list("AuditEntries", request)).rows
                assert [r["Pid"] for r in rows] == found, text
            async with engine.begin() as conn:  # and back, and up again
                await conn.run_sync(_to("0009", down=True))
                assert await conn.run_sync(_time_indexes) == ["ix_audit_entries_time"]
            await database.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())

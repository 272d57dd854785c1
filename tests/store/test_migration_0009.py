"""Migration 0009 upgrades a store in place: the history it held stays, and a moved
entity is still found by its previous partner through the narrowed index."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from partnergate.odata.filter import Compare, CompareOp, Literal, Or, PropertyRef, ValueType
from partnergate.security.secretbox import SecretBox
from partnergate.store import database
from partnergate.store.directory import DirectoryStore, ListRequest


def _to(revision: str, down: bool = False):  # type: ignore[no-untyped-def]
    def run(connection: sa.Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(database.MIGRATIONS))
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    return run


def _is(prop: str, value: str) -> Compare:
    return Compare(
        CompareOp.EQ, PropertyRef(prop, ValueType.STRING), Literal(value, ValueType.STRING)
    )


MOVED = (
    "INSERT INTO audit_entries (id, change_id, time, operation, entity_set, pid, "
    "previous_pid, entity_key, label) VALUES ('20260101120000000000-aaaaaaaa-0000000', "
    "'aaaaaaaa', '2026-01-01 12:00:00', 'Rename', 'StringParameters', 'New', 'Old', "
    '\'{"Id": "URL", "Pid": "New"}\', \'URL\')'
)


def test_an_old_store_keeps_its_history_and_finds_moved_entities(
    fresh_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        engine = database.create_engine(fresh_url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_to("0008"))
                await conn.execute(sa.text(MOVED))
            await database.upgrade(engine)
            store = DirectoryStore(engine, SecretBox.from_key_file(tmp_path / "key"))
            request = ListRequest(filter=Or((_is("Pid", "Old"), _is("PreviousPid", "Old"))))
            async with store.read() as directory:
                rows = (await directory.list("AuditEntries", request)).rows
            assert [(r["Pid"], r["PreviousPid"]) for r in rows] == [("New", "Old")]
            async with engine.begin() as conn:  # and back, and up again
                await conn.run_sync(_to("0008", down=True))
            await database.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())

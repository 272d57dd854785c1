"""A unit of work with more writes than it keeps in memory, on the run's store.

An import of millions of rows is one transaction; :meth:`Directory.settle` writes waiting
inserts and history entries as it goes. What it commits must be what a short transaction
commits: every row, one history entry per entity, nothing at all if it fails.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from partnergate.model.errors import AlreadyExists
from partnergate.security.secretbox import SecretBox
from partnergate.store import database
from partnergate.store.directory import SETTLE_AT, DirectoryStore
from partnergate.store.tables import audit_entries, string_parameters

COUNT = SETTLE_AT + 300


async def _store(store_url: str, tmp_path: Path) -> DirectoryStore:
    engine = database.create_engine(store_url)
    await database.upgrade(engine)
    return DirectoryStore(engine, SecretBox.from_key_file(tmp_path / "credentials.key"))


async def _rows(store: DirectoryStore, query: sa.Select) -> list[sa.Row]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(query)).all())


def _create(pid: str, n: int) -> dict[str, object]:
    return {"Pid": pid, "Id": f"P{n:05d}", "Value": f"v{n}"}


def test_entities_written_again_after_their_entries_were_written_stay_one_entry(
    store_url: str, tmp_path: Path
) -> None:
    pid = f"Long_{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        store = await _store(store_url, tmp_path)
        try:
            async with store.begin("importer") as d:
                for n in range(COUNT):
                    await d.create("StringParameters", _create(pid, n), "importer")
                    await d.settle()
                await d.drain()
                assert d.audit.written > 0, "entries were written before the commit"
                await d.update(
                    "StringParameters", {"Pid": pid, "Id": "P00001"}, {"Value": "w"}, "x"
                )
                await d.delete("StringParameters", {"Pid": pid, "Id": "P00002"})
            stored = await _rows(
                store, sa.select(sa.func.count()).where(string_parameters.c.pid == pid)
            )
            assert stored[0][0] == COUNT - 1
            t = audit_entries
            entries = await _rows(
                store, sa.select(t.c.entity_key, t.c.operation, t.c.after, t.c.change_id, t.c.id)
                .where(t.c.pid == pid)
                .order_by(t.c.id),
            )  # fmt: skip
        finally:
            await store.engine.dispose()
        keys = [json.loads(e.entity_key)["Id"] for e in entries]
        assert len(keys) == COUNT - 1 and len(set(keys)) == COUNT - 1
        assert "P00002" not in keys  # created and deleted in one transaction: no change
        assert {e.operation for e in entries} == {"Create"}
        assert len({e.change_id for e in entries}) == 1
        updated = next(e for e in entries if json.loads(e.entity_key)["Id"] == "P00001")
        assert json.loads(updated.after)["Value"] == "w"
        # Ids sort as written, past 99,999 entries too: fixed-width numbers.
        assert len({len(e.id) for e in entries}) == 1

    asyncio.run(main())


def test_a_refused_write_after_entries_were_written_leaves_nothing(
    store_url: str, tmp_path: Path
) -> None:
    pid = f"Long_{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        store = await _store(store_url, tmp_path)
        try:
            with pytest.raises(AlreadyExists, match="P00007"):
                async with store.begin("importer") as d:
                    for n in range(COUNT):
                        await d.create("StringParameters", _create(pid, n), "importer")
                        await d.settle()
                    await d.drain()
                    assert d.audit.written > 0
                    await d.create("StringParameters", _create(pid, 7), "importer")
                    await d.flush()
            stored = await _rows(
                store, sa.select(sa.func.count()).where(string_parameters.c.pid == pid)
            )
            entries = await _rows(
                store, sa.select(sa.func.count()).where(audit_entries.c.pid == pid)
            )
        finally:
            await store.engine.dispose()
        assert stored[0][0] == 0 and entries[0][0] == 0

    asyncio.run(main())


def test_a_write_behind_that_fails_fails_the_unit_of_work_and_leaves_nothing(
    store_url: str, tmp_path: Path
) -> None:
    """A batch :meth:`settle` writes while the caller goes on: its refusal reaches the
    caller at the next use of the connection, and nothing of the unit of work stays."""
    pid = f"Behind_{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        store = await _store(store_url, tmp_path)
        try:
            async with store.begin("seed") as d:
                await d.create("StringParameters", _create(pid, 11), "seed")
            with pytest.raises(AlreadyExists, match="P00011"):
                async with store.begin("importer") as d:
                    for n in range(COUNT):
                        # ``new``: the caller vouches for a new key, as an import does
                        # after reading the target; the database still refuses a clash.
                        await d.create("StringParameters", _create(pid, n), "importer", new=True)
                        await d.settle()
                    # The next read waits for the write behind, which failed.
                    await d.get("StringParameters", {"Pid": pid, "Id": "P00001"})
            assert d.failed_behind
            stored = await _rows(
                store, sa.select(string_parameters.c.id).where(string_parameters.c.pid == pid)
            )
            entries = await _rows(
                store, sa.select(sa.func.count()).where(audit_entries.c.pid == pid)
            )
        finally:
            await store.engine.dispose()
        assert [r.id for r in stored] == ["P00011"]
        assert entries[0][0] == 1

    asyncio.run(main())


def test_a_failure_while_a_write_runs_behind_rolls_back_with_its_own_error(
    store_url: str, tmp_path: Path
) -> None:
    pid = f"Behind_{uuid.uuid4().hex[:8]}"

    class Stop(Exception):
        pass

    async def main() -> None:
        store = await _store(store_url, tmp_path)
        try:
            with pytest.raises(Stop):
                async with store.begin("importer") as d:
                    for n in range(SETTLE_AT):
                        await d.create("StringParameters", _create(pid, n), "importer", new=True)
                        await d.settle()
                    sqlite = d.conn.dialect.name == "sqlite"  # SQLite writes in step
                    assert sqlite or d._behind is not None, "the batch is being written"
                    raise Stop
            stored = await _rows(
                store, sa.select(sa.func.count()).where(string_parameters.c.pid == pid)
            )
            async with store.begin("after") as d:  # the pool's connection is usable
                await d.create("StringParameters", _create(pid, 1), "after")
        finally:
            await store.engine.dispose()
        assert stored[0][0] == 0

    asyncio.run(main())

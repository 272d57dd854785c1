"""On SQLite the history has no index on ``Time``: a time range is found through the Ids,
which begin with their entry's time. Every comparison still finds exactly the entries it
names, on both stores, and the database finds them by an index, not by reading the whole
history (SQLite by the primary key's, PostgreSQL by the one it keeps on ``time``)."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, insert

from partnergate.model.entities import ENTITY_TYPES
from partnergate.odata.filter import parse_filter, parse_orderby
from partnergate.security.secretbox import SecretBox
from partnergate.store import audit, database
from partnergate.store.directory import DirectoryStore, ListRequest
from partnergate.store.tables import audit_entries

from ..conftest import STORE

BASE = datetime(2026, 3, 1, 9, 30, 15, 250_000)
TIMES = [
    BASE - timedelta(days=400),
    BASE - timedelta(microseconds=1),
    BASE,
    BASE,  # two changes in one microsecond
    BASE + timedelta(microseconds=1),
    BASE + timedelta(milliseconds=1),
    BASE + timedelta(seconds=1),
    datetime(2027, 1, 1),
]
"""Entries around one moment, down to the microsecond either side of it."""

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
MIRRORED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


def _literal(moment: datetime) -> str:
    return f"datetime'{moment.year:04d}-{moment:%m-%dT%H:%M:%S.%f}'"


async def _fill(engine: sa.ext.asyncio.AsyncEngine) -> None:
    """One entry per time in :data:`TIMES`, written as the store writes them."""
    async with engine.begin() as conn:
        for n, moment in enumerate(TIMES):
            recorder = audit.Recorder()
            key = {"Pid": "Timed", "Id": f"P{n}"}
            after = audit.snapshot("StringParameters", {**key, "Value": "v"})
            recorder.record("StringParameters", key, None, after, "tester")
            await conn.execute(insert(audit_entries), recorder.rows(moment))


def test_every_comparison_of_time_finds_exactly_its_entries(fresh_url: str, tmp_path: Path) -> None:
    entity_type = ENTITY_TYPES["AuditEntries"]

    async def main() -> None:
        engine = database.create_engine(fresh_url)
        await database.upgrade(engine)
        try:
            await _fill(engine)
            store = DirectoryStore(engine, SecretBox.from_key_file(tmp_path / "key"))
            moments = sorted(set(TIMES)) + [
                BASE - timedelta(days=1),
                BASE + timedelta(days=1),
                datetime.min,  # the first and the last moment a client can name
                datetime.max,
            ]
            for moment in moments:
                for op, compare in OPS.items():
                    expected = sorted(f"P{n}" for n, t in enumerate(TIMES) if compare(t, moment))
                    for text in (
                        f"Time {op} {_literal(moment)}",
                        f"{_literal(moment)} {MIRRORED[op]} Time",
                        f"Pid eq 'Timed' and Time {op} {_literal(moment)}",
                    ):
                        request = ListRequest(filter=parse_filter(text, entity_type))
                        async with store.read() as directory:
                            rows = (await directory.list("AuditEntries", request)).rows
                        assert sorted(str(r["Label"]) for r in rows) == expected, text
        finally:
            await engine.dispose()

    asyncio.run(main())


async def _listed_and_planned(url: str, key: Path, request: ListRequest) -> tuple[list[str], str]:
    """The labels the store lists for ``request`` over :data:`TIMES`, and what the database
    plans for the statement it ran (PostgreSQL told to avoid reading the whole table)."""
    engine = database.create_engine(url)
    await database.upgrade(engine)
    seen: list[tuple[str, Any]] = []

    def remember(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "FROM audit_entries" in statement:
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", remember)
    try:
        await _fill(engine)
        store = DirectoryStore(engine, SecretBox.from_key_file(key))
        # In a unit of work the list runs on the engine's connection, where it is seen.
        async with store.begin("tester") as directory:
            rows = (await directory.list("AuditEntries", request)).rows
        statement, parameters = seen[-1]
        async with engine.connect() as conn:
            if STORE == "sqlite":
                plan = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                lines = [str(row[-1]) for row in plan]
            else:
                await conn.exec_driver_sql("SET enable_seqscan = off")
                plan = await conn.exec_driver_sql("EXPLAIN " + statement, parameters)
                lines = [str(row[0]) for row in plan]
        return [str(r["Label"]) for r in rows], "\n".join(lines)
    finally:
        await engine.dispose()


def test_a_time_range_is_read_through_an_index(fresh_url: str, tmp_path: Path) -> None:
    """What the database plans for the statement the store runs for a time range."""
    entity_type = ENTITY_TYPES["AuditEntries"]
    text = f"Time ge {_literal(BASE)} and Time lt {_literal(BASE + timedelta(seconds=1))}"
    request = ListRequest(filter=parse_filter(text, entity_type))
    labels, plan = asyncio.run(_listed_and_planned(fresh_url, tmp_path / "key", request))
    assert sorted(labels) == ["P2", "P3", "P4", "P5"]
    if STORE == "sqlite":
        assert "USING INDEX sqlite_autoindex_audit_entries_1 (id>? AND id<?)" in plan, plan
        assert "SCAN audit_entries" not in plan, plan
    else:
        assert "ix_audit_entries_time" in plan and "Seq Scan" not in plan, plan


def test_an_entry_id_begins_with_its_time() -> None:
    """The rule the ranges stand on, as the recorder writes entries."""
    recorder = audit.Recorder()
    recorder.record("StringParameters", {"Pid": "P", "Id": "A"}, None, {"Pid": "P"}, None)
    (row,) = recorder.rows(BASE)
    assert row["time"] == BASE
    assert str(row["id"]).startswith(audit.time_prefix(BASE) + "-")
    assert audit.time_prefix(BASE) == "20260301093015250000"
    assert audit.time_prefix(datetime(999, 1, 2, 3, 4, 5, 6)) == "09990102030405000006"


def test_newest_first_by_time_is_read_in_the_primary_key_order(
    fresh_url: str, tmp_path: Path
) -> None:
    """``$orderby=Time desc`` pages through the history newest first, on SQLite in the
    primary key's order, without sorting the history (PostgreSQL sorts, as before: it
    puts nulls last descending, which no index has)."""
    entity_type = ENTITY_TYPES["AuditEntries"]
    request = ListRequest(orderby=parse_orderby("Time desc", entity_type), top=4)
    labels, plan = asyncio.run(_listed_and_planned(fresh_url, tmp_path / "key", request))
    assert labels == ["P7", "P6", "P5", "P4"]  # the four latest times, none shared
    if STORE == "sqlite":
        assert "TEMP B-TREE" not in plan, plan

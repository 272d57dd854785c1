"""The message processing log in the store: the runtime's ``MessageLogSink``, and retention.

Entries are written behind the messages: the engine's reports go to a buffer that one
task writes in batches (one upsert per batch, every ``interval`` seconds or sooner when
the buffer fills), so a message never waits for the database. On SQLite a thread of
the writer's own writes each batch as one statement over one JSON text (see
:class:`_SqliteWriter`), so the event loop spends a few microseconds per entry on the
log and SQLite's own work runs beside it, on another core. Every read of the store
flushes first (:meth:`flush` is a ``DirectoryStore.before_read`` hook), so whoever asks
this node sees every message it has taken; another node of a fleet sees it within
``interval``. Entries are served read-only as SAP's ``MessageProcessingLogs`` through the
generic entity-set reads of :mod:`partnergate.store.directory`, with the attachments a flow
kept (``MessageProcessingLogAttachments``); retention removes both.

Each entry's steps and adapter attributes travel in its own row as JSON text (read whole,
never searched, so a message at ``INFO`` costs no extra row); custom header properties,
which the monitor and ``filterCustomHeaderProperties`` search, and traces (``TRACE``
only) go into tables of their own in the same transaction (read here:
:func:`read_steps`, :func:`read_properties`, :func:`list_logs`). A trace is bounded
twice: ``trace_hours`` after it was taken it is dropped (the step lines stay), and beyond
``trace_max_bytes`` the oldest go first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from .. import metrics
from ..model.entities import MESSAGE_PROCESSING_LOG
from ..odata.filter import Expr, OrderBy
from ..odata.mpl import ARTIFACT_TYPE
from ..runtime.messagelog import (
    Attachment,
    LogLevels,
    MessageLogEntry,
    RunStep,
)
from .changes import publish
from .database import begin, bounded_read, sqlite_file, write_lock
from .directory import Page, now
from .filtering import compile_filter, compile_orderby
from .siblings import Siblings
from .tables import columns_of
from .tables import flow_log_levels as levels_table
from .tables import message_processing_log_attachments as attachments
from .tables import message_processing_log_properties as properties
from .tables import message_processing_log_traces as run_steps
from .tables import message_processing_logs as mpl

log = logging.getLogger("partnergate.store")

FLUSH_INTERVAL = 0.1
"""Seconds an entry may wait in memory; what another node of a fleet may lag behind."""
MAX_PENDING = 5000
"""Entries in memory at most: beyond it, messages wait for the write (back-pressure)."""
BUSY_TIMEOUT_MS = 5000
"""How long the log's thread waits for another process's write (the CLI's) to end."""
ROWS_PER_TRANSACTION = 250
"""On SQLite the API's writes wait for each transaction: keep each to a few milliseconds."""
MAX_PARAMETERS = 999
"""Parameters of one statement on SQLite: the most that SQLite before 3.32 allows."""


CUSTOM = "CUSTOM"
ADAPTER = "ADAPTER"
TRACE_HOURS = 24
TRACE_MAX_BYTES = 100 * 1024 * 1024
TRACE_PURGE_SHARE = 4
"""Traces this node wrote since its last purge that start another: a quarter of
``trace_max_bytes``, so the bound holds between the hourly purges (within a quarter more
per node) however busy a traced flow is."""


_compact = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps(value, separators=(",", ":"))`` without building an encoder per call."""
_compact_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
""":data:`_compact` with non-ASCII characters as they are."""


def error_information(entry: MessageLogEntry) -> str | None:
    """``<step label>: <why>``; the label already starts with ``step <n>``."""
    if entry.error is None and entry.failed_step is None:
        return None
    return ": ".join(p for p in (entry.failed_step, entry.error) if p)


def _row(entry: MessageLogEntry) -> dict[str, object]:
    return {
        "message_guid": entry.message_guid,
        "correlation_id": entry.correlation_id or entry.message_guid,
        "integration_flow_name": entry.flow,
        "endpoint": entry.endpoint,
        "status": entry.status,
        "custom_status": entry.status,
        "log_level": entry.log_level,
        "log_start": entry.start,
        "log_end": entry.end,
        "user": entry.user,
        "sender": entry.sender_partner,
        "receiver": entry.receiver_partner,
        "http_status": entry.http_status,
        "failed_step": entry.failed_step,
        "error_information": error_information(entry),
        "steps": _steps_text(entry.steps) if entry.steps else None,
        "adapter_attributes": (
            _compact(entry.adapter_attributes) if entry.adapter_attributes else None
        ),
    }


def _steps_text(steps: Sequence[RunStep]) -> str:
    """A message's step lines as one JSON text; times in microseconds after its start."""
    return _compact_text(
        [
            [s.index, s.step_id, s.kind, s.offset_us, s.duration_us, s.status, s.summary, s.error]
            for s in steps
        ]
    )


_STEP_FIELDS = (
    "step_index",
    "step_id",
    "kind",
    "offset_us",
    "duration_us",
    "status",
    "summary",
    "error",
)


def _attachment_row(message_guid: str, attachment: Attachment) -> dict[str, object]:
    return {
        "id": attachment.attachment_id,
        "message_guid": message_guid,
        "time_stamp": attachment.time,
        "name": attachment.name,
        "content_type": attachment.content_type,
        "payload_size": len(attachment.payload),
        "payload": attachment.payload,
    }


def _attachments_of(entries: Sequence[MessageLogEntry]) -> list[dict[str, object]]:
    return [_attachment_row(e.message_guid, a) for e in entries for a in e.attachments]


def _trace(step: RunStep) -> str | None:
    if step.before is None and step.after is None:
        return None
    document = {
        "before": step.before.as_dict() if step.before else None,
        "after": step.after.as_dict() if step.after else None,
    }
    return _compact(document)


def _trace_row(message_guid: str, step: RunStep) -> dict[str, object] | None:
    trace = _trace(step)
    if trace is None:
        return None
    return {
        "message_guid": message_guid,
        "step_index": step.index,
        "step_start": step.start,
        "trace": trace,
        "trace_size": len(trace),
    }


def _traces_of(entries: Sequence[MessageLogEntry]) -> list[dict[str, object]]:
    rows = (
        _trace_row(e.message_guid, s)
        for e in entries
        for s in e.steps
        if s.before is not None or s.after is not None  # traced: a step at TRACE
    )
    return [r for r in rows if r is not None]


def _properties_of(entries: Sequence[MessageLogEntry]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for e in entries:
        seq = 0
        for name, value in e.custom_properties:
            seq += 1
            rows.append(
                {
                    "message_guid": e.message_guid,
                    "seq": seq,
                    "kind": CUSTOM,
                    "adapter_id": None,
                    "name": name[:200],
                    "value": value[:1000],
                }
            )
    return rows


def _children(entries: Sequence[MessageLogEntry]) -> list[tuple[Table, list[dict[str, object]]]]:
    """What goes with the entries into tables of their own."""
    return [
        (attachments, _attachments_of(entries)),
        (run_steps, _traces_of(entries)),
        (properties, _properties_of(entries)),
    ]


def _replacing(statement: Any) -> Any:
    """``statement`` with ON CONFLICT (message_guid) DO UPDATE: a later report of a
    message replaces an earlier one."""
    changed = {
        name: statement.excluded[name]
        for name in mpl.c.keys()
        if name not in ("message_guid", "correlation_id")
    }
    return statement.on_conflict_do_update(index_elements=[mpl.c.message_guid], set_=changed)


def _keep(dialect: str, table: Table = attachments) -> Any:
    """INSERT into ``table``; a row already written (a batch tried again) stays as it is."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    keys = [c for c in table.primary_key.columns]
    return insert(table).on_conflict_do_nothing(index_elements=keys)


def _upsert(dialect: str) -> Any:
    """INSERT of entries, a later report replacing an earlier (:func:`_replacing`)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return _replacing(insert(mpl))


@dataclass(frozen=True)
class StoredAttachment:
    """An attachment as stored: what a download needs, in one read."""

    message_guid: str
    name: str
    content_type: str | None
    payload: bytes


async def read_attachment(engine: AsyncEngine, attachment_id: str) -> StoredAttachment | None:
    """An attachment as stored, None when unknown (callers let the writer catch up first)."""
    t = attachments
    query = select(t.c.message_guid, t.c.name, t.c.content_type, t.c.payload).where(
        t.c.id == attachment_id
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else StoredAttachment(row[0], row[1], row[2], bytes(row[3]))


async def read_error_text(engine: AsyncEngine, message_guid: str) -> str | None:
    """A message's ``ErrorInformation`` as stored; None when there is no such message."""
    query = select(mpl.c.error_information).where(mpl.c.message_guid == message_guid)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else (row[0] or "")


class _SqliteWriter:
    """Writes batches into a SQLite file on a thread of its own, over its own connection.

    The event loop turns a batch into rows of values; the thread binds each group of
    rows as the parameters of one multi-row INSERT (:func:`_values_insert`), so that
    SQLite inserts the group in one step with the GIL released. Binding row by row
    (``executemany``) on another thread would hand the GIL back and forth with the event
    loop for each row, which cost far more than the write; one JSON text over
    ``json_each`` cost SQLite twice the work per row of bound values.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="partnergate-messagelog")
        dialect = sqlite.dialect()
        self._columns = {
            t.name: _Columns(t, tuple(t.c.keys())) for t in (mpl, run_steps, properties)
        }
        self._inserts: dict[tuple[str, int], str] = {}
        compiled = _keep("sqlite").compile(dialect=dialect, column_keys=list(attachments.c.keys()))
        self._attachments = str(compiled)
        self._attachment_columns = _Columns(attachments, tuple(compiled.positiontup or ()))

    async def write(
        self,
        entries: list[dict[str, object]],
        children: list[tuple[Table, list[dict[str, object]]]],
    ) -> None:
        """One transaction; the caller holds the store's write lock."""
        groups: list[tuple[str, list[object]]] = []
        attached: list[tuple[object, ...]] = []
        for table, rows in [(mpl, entries), *children]:
            if not rows:
                continue
            if table is attachments:  # few, and large: bound one by one
                attached = [tuple(v) for v in self._attachment_columns.values(rows)]
                continue
            values = self._columns[table.name].values(rows)
            size = max(1, MAX_PARAMETERS // len(table.c))
            for start in range(0, len(values), size):
                group = values[start : start + size]
                flat = list(chain.from_iterable(group))
                groups.append((self._insert(table, len(group)), flat))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._write, groups, attached)

    def _insert(self, table: Table, rows: int) -> str:
        """:func:`_values_insert` of ``rows`` rows of ``table``, made once per size."""
        key = (table.name, rows)
        found = self._inserts.get(key)
        if found is None:
            found = self._inserts[key] = _values_insert(
                table, self._columns[table.name].names, rows
            )
        return found

    def _write(
        self, groups: list[tuple[str, list[object]]], attached: list[tuple[object, ...]]
    ) -> None:
        if self._connection is None:
            self._connection = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False
            )
            self._connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor = self._connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            for statement, parameters in groups:
                cursor.execute(statement, parameters)
            if attached:
                cursor.executemany(self._attachments, attached)
            cursor.execute("COMMIT")
        except BaseException:
            if self._connection.in_transaction:
                cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _values_insert(table: Table, columns: Sequence[str], rows: int) -> str:
    """INSERT of ``rows`` rows of ``table`` in one statement, positional parameters row
    after row in the order of ``columns``: for entries the upsert of :func:`_upsert`,
    for another ``table`` one that leaves rows already written as they are."""
    values = [{name: bindparam(f"{name}_{i}") for name in columns} for i in range(rows)]
    insert = sqlite.insert(table).values(values)
    if table is mpl:
        statement = _replacing(insert)
    else:
        statement = insert.on_conflict_do_nothing(index_elements=list(table.primary_key.columns))
    compiled = statement.compile(dialect=sqlite.dialect())
    order = tuple(f"{name}_{i}" for i in range(rows) for name in columns)
    if tuple(compiled.positiontup or ()) != order:
        raise RuntimeError("the multi-row INSERT binds its parameters out of row order")
    return str(compiled)


_TO_TEXT: Any = DateTime().dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
"""SQLAlchemy's conversion of a ``datetime`` to what it stores on SQLite."""


def _as_text(value: Any) -> Any:
    """:data:`_TO_TEXT`; for a naive ``datetime`` (what the log's times are) the same
    text from ``isoformat``, in C, twice per entry."""
    if type(value) is datetime and value.tzinfo is None:
        return value.isoformat(" ", "microseconds")
    return _TO_TEXT(value)


class _Columns:
    """Columns of ``table`` in a statement's order, and which of them hold times."""

    def __init__(self, table: Table, names: tuple[str, ...]) -> None:
        self.names = names
        self.times = tuple(
            i for i, name in enumerate(names) if isinstance(table.c[name].type, DateTime)
        )

    def values(self, rows: Sequence[dict[str, object]]) -> list[list[object]]:
        """Each row's values in this order, times as SQLAlchemy stores them on SQLite (its
        ``DATETIME`` text), so that filters compare them as they always did."""
        values = []
        for row in rows:
            items = [row.get(name) for name in self.names]
            for i in self.times:
                if items[i] is not None:
                    items[i] = _as_text(items[i])
            values.append(items)
        return values


class StoreMessageLog:
    def __init__(
        self,
        engine: AsyncEngine,
        interval: float = FLUSH_INTERVAL,
        max_pending: int = MAX_PENDING,
        *,
        levels: LogLevels | None = None,
        trace_hours: float = TRACE_HOURS,
        trace_max_bytes: int = TRACE_MAX_BYTES,
    ) -> None:
        self.engine = engine
        self.levels = levels if levels is not None else LogLevels()
        self.trace_hours = trace_hours
        self.trace_max_bytes = trace_max_bytes
        self.interval = interval
        self.max_pending = max_pending
        self._pending: dict[str, MessageLogEntry] = {}
        self._lock = asyncio.Lock()
        self._upsert = _upsert(engine.dialect.name)
        self._keep = {
            t.name: _keep(engine.dialect.name, t) for t in (attachments, run_steps, properties)
        }
        self._sqlite_path = sqlite_file(engine)
        self._sqlite: _SqliteWriter | None = None
        self.siblings: Siblings | None = None
        """The other workers of this server, told when entries wait here (``serve``
        with several workers)."""
        self._told_waiting = False
        self.trace_written = 0
        """Bytes of traces written since the last :meth:`purge_traces`."""

    async def started(self, entry: MessageLogEntry) -> None:
        await self._put(entry)

    async def finished(self, entry: MessageLogEntry) -> None:
        await self._put(entry)

    @metrics.queued_log_entry
    async def _put(self, entry: MessageLogEntry) -> None:
        self._pending[entry.message_guid] = entry
        if self.siblings is not None and not self._told_waiting:
            self._told_waiting = True
            self.siblings.waiting(True)
        if len(self._pending) >= self.max_pending:
            await self.flush()

    async def flush(self) -> None:
        """Write every buffered entry, and wait for a write under way; on failure the
        entries stay buffered for the next try."""
        if not self._pending and not self._lock.locked():
            return
        async with self._lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return
            siblings = self.siblings
            if siblings is not None:
                siblings.batch_started()
            try:
                await self._write(list(batch.values()))
            except BaseException:
                # newer reports of the same messages win over the batch that failed
                self._pending = {**batch, **self._pending}
                raise
            if siblings is not None:
                siblings.batch_written()
                if not self._pending:
                    self._told_waiting = False
                    siblings.waiting(False)

    async def flush_everywhere(self) -> None:
        """:meth:`flush`, and have the other workers of this server write theirs."""
        await self.flush()
        if self.siblings is not None:
            await self.siblings.flush_others()

    @metrics.timed_log_write
    async def _write(self, batch: list[MessageLogEntry]) -> None:
        if self._sqlite_path is None:
            children = _children(batch)
            self._count_traces(children)
            async with begin(self.engine) as conn:
                await conn.execute(self._upsert, [_row(e) for e in batch])
                for table, rows in children:
                    if rows:
                        await conn.execute(self._keep[table.name], rows)
            return
        if self._sqlite is None:
            self._sqlite = _SqliteWriter(self._sqlite_path)
        for start in range(0, len(batch), ROWS_PER_TRANSACTION):
            part = batch[start : start + ROWS_PER_TRANSACTION]
            children = _children(part)
            self._count_traces(children)
            async with write_lock(self.engine):
                await self._sqlite.write([_row(e) for e in part], children)

    def _count_traces(self, children: list[tuple[Table, list[dict[str, object]]]]) -> None:
        for table, rows in children:
            if table is run_steps:
                self.trace_written += sum(cast(int, r["trace_size"]) for r in rows)

    def close(self) -> None:
        """Close the SQLite writer's connection (after the last flush)."""
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    async def run(self) -> None:
        """Flush every ``interval`` seconds until cancelled; then flush what is left."""
        ticks = 0
        try:
            while True:
                await asyncio.sleep(self.interval)
                ticks += 1
                if ticks * self.interval >= LEVELS_INTERVAL:
                    ticks = 0
                    try:
                        await self.load_levels()
                    except Exception:
                        log.exception("flow log levels could not be read")
                try:
                    await self.flush()
                except Exception:
                    log.exception(
                        "message processing log: %d entries not yet written; retrying",
                        len(self._pending),
                    )
                if self.trace_written * TRACE_PURGE_SHARE >= self.trace_max_bytes:
                    try:
                        await self.purge_traces()
                    except Exception:
                        log.exception("message processing log: traces could not be bounded")
        finally:
            await asyncio.shield(self._final_flush())

    async def _final_flush(self) -> None:
        try:
            await self.flush()
        except Exception:
            log.exception("message processing log: %d entries lost", len(self._pending))

    async def attachment(self, attachment_id: str) -> StoredAttachment | None:
        """An attachment as stored (its ``$value``); None when unknown."""
        await self.flush_everywhere()
        return await read_attachment(self.engine, attachment_id)

    async def error_text(self, message_guid: str) -> str | None:
        """``ErrorInformation/$value``; None when there is no such message."""
        await self.flush_everywhere()
        return await read_error_text(self.engine, message_guid)

    async def purge(self, keep_days: int) -> int:
        """Delete entries that started more than ``keep_days`` ago; return how many.
        Traces beyond their age or the size bound lose their bodies."""
        await self.flush()
        old = mpl.c.log_start < now() - timedelta(days=keep_days)
        async with begin(self.engine) as conn:
            for child in (attachments, run_steps, properties):
                await conn.execute(
                    delete(child).where(
                        child.c.message_guid.in_(select(mpl.c.message_guid).where(old))
                    )
                )
            result = await conn.execute(delete(mpl).where(old))
        await self.purge_traces()
        return int(result.rowcount or 0)

    async def purge_traces(self) -> int:
        """Drop trace bodies older than ``trace_hours``, then the oldest beyond
        ``trace_max_bytes``; the step lines stay. Returns how many steps lost theirs."""
        await self.flush()
        self.trace_written = 0
        cleared = {"trace": None, "trace_size": 0}
        cut = now() - timedelta(hours=self.trace_hours)
        async with begin(self.engine) as conn:
            aged = await conn.execute(
                update(run_steps)
                .where(run_steps.c.trace_size > 0, run_steps.c.step_start < cut)
                .values(**cleared)
            )
            total = int(aged.rowcount or 0)
            sizes = await conn.execute(
                select(run_steps.c.message_guid, run_steps.c.step_index, run_steps.c.trace_size)
                .where(run_steps.c.trace_size > 0)
                .order_by(run_steps.c.step_start.desc(), run_steps.c.step_index.desc())
            )
            kept, drop = 0, []
            for guid, index, size in sizes:
                kept += size
                if kept > self.trace_max_bytes:
                    drop.append((guid, index))
            if drop:
                await conn.execute(
                    update(run_steps)
                    .where(
                        run_steps.c.message_guid == bindparam("guid"),
                        run_steps.c.step_index == bindparam("index"),
                    )
                    .values(**cleared),
                    [{"guid": guid, "index": index} for guid, index in drop],
                )
        return total + len(drop)

    # -- log levels ----------------------------------------------------------------------

    async def load_levels(self) -> None:
        """Take the levels every node shares from the store (another node may have set one)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(levels_table))).all()
        self.levels.replace_all({r.flow: (r.level, r.until) for r in rows})

    async def set_level(
        self, flow: str, level: str, actor: str, conn: AsyncConnection | None = None
    ) -> datetime | None:
        """Set ``flow``'s log level on every node; returns when a ``TRACE`` ends. With
        ``conn``, the write is part of that transaction (the API's)."""
        at = now()
        until = self.levels.set(flow, level, at)
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        values = {"flow": flow, "level": level, "until": until, "changed_by": actor}
        statement = insert(levels_table).values(changed_time=at, **values)
        statement = statement.on_conflict_do_update(
            index_elements=[levels_table.c.flow],
            set_={"level": level, "until": until, "changed_by": actor, "changed_time": at},
        )
        told = [LogLevels.change(flow, level, until)]
        if conn is not None:
            await conn.execute(statement)
            await publish(conn, told)
            return until
        async with begin(self.engine) as own:
            await own.execute(statement)
            await publish(own, told)
        return until

    # -- reading -------------------------------------------------------------------------

    async def steps(self, message_guid: str) -> list[dict[str, Any]]:
        await self.flush()
        return await read_steps(self.engine, message_guid)

    async def properties(self, message_guid: str, kind: str) -> list[dict[str, Any]]:
        await self.flush()
        return await read_properties(self.engine, message_guid, kind)


LEVELS_INTERVAL = 2.0
"""Seconds between two reads of the shared log levels: how soon other nodes follow."""


async def read_steps(engine: AsyncEngine, message_guid: str) -> list[dict[str, Any]]:
    """A message's steps in order, each with its trace (decoded) when one was kept."""
    query = select(mpl.c.steps, mpl.c.log_start).where(mpl.c.message_guid == message_guid)
    async with engine.connect() as conn:
        found = (await conn.execute(query)).first()
        text, start = (found[0], found[1]) if found is not None else (None, None)
        traces = {
            r.step_index: r.trace
            for r in await conn.execute(
                select(run_steps.c.step_index, run_steps.c.trace).where(
                    run_steps.c.message_guid == message_guid, run_steps.c.trace_size > 0
                )
            )
        }
    out = []
    for values in json.loads(text) if text else []:
        item = dict(zip(_STEP_FIELDS, values, strict=True))
        item["step_start"] = start + timedelta(microseconds=item["offset_us"])
        item["step_stop"] = item["step_start"] + timedelta(microseconds=item["duration_us"])
        trace = traces.get(item["step_index"])
        item["trace"] = json.loads(trace) if trace else None
        out.append(item)
    return out


async def read_adapter_attributes(engine: AsyncEngine, message_guid: str) -> list[dict[str, Any]]:
    """What the sender adapter saw: ``seq``, ``adapter_id``, ``name``, ``value``."""
    query = select(mpl.c.adapter_attributes).where(mpl.c.message_guid == message_guid)
    async with engine.connect() as conn:
        text = (await conn.execute(query)).scalar()
    return [
        {"message_guid": message_guid, "seq": n, "adapter_id": a, "name": k, "value": v}
        for n, (a, k, v) in enumerate(json.loads(text) if text else [], start=1)
    ]


async def read_properties(
    engine: AsyncEngine, message_guid: str, kind: str
) -> list[dict[str, Any]]:
    if kind == ADAPTER:
        return await read_adapter_attributes(engine, message_guid)
    query = (
        select(properties)
        .where(properties.c.message_guid == message_guid, properties.c.kind == kind)
        .order_by(properties.c.seq)
    )
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings().all()]


@dataclass(frozen=True)
class PropertyMatch:
    """Messages with a custom header property ``name`` whose value is ``value`` (any value
    when None; ``contains``: the value holds it)."""

    name: str
    value: str | None = None
    contains: bool = False


def _with_property(match: PropertyMatch) -> Any:
    condition = [properties.c.kind == CUSTOM, properties.c.name == match.name]
    if match.value is not None:
        if match.contains:
            pattern = match.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            condition.append(properties.c.value.like(f"%{pattern}%", escape="\\"))
        else:
            condition.append(properties.c.value == match.value)
    return mpl.c.message_guid.in_(select(properties.c.message_guid).where(*condition))


COMPONENT = "partnergate"
"""What SAP's ``LocalComponentName`` and ``OriginComponentName`` name: this runtime."""
MONITOR_PAGE = "/ui/monitor/"
"""``AlternateWebLink``: the message's page in our monitor, relative to the server."""
ALIKE: dict[str, str] = {
    "ArchivingStatus": "NOT_RELEVANT",
    "ArchivingSenderChannelMessages": "false",
    "ArchivingReceiverChannelMessages": "false",
    "ArchivingLogAttachments": "false",
    "ArchivingPersistedMessages": "false",
    "LocalComponentName": COMPONENT,
    "OriginComponentName": COMPONENT,
}
"""SAP's properties that read the same for every message here (nothing is archived)."""


def derived(guid: str, correlation: object) -> dict[str, object]:
    """SAP's properties that no column holds: :data:`ALIKE`, the monitor page, and
    ``PreviousComponentName`` when the message joined a correlation ID another flow sent."""
    joined = correlation is not None and correlation != guid
    return {
        **ALIKE,
        "AlternateWebLink": MONITOR_PAGE + guid,
        "PreviousComponentName": COMPONENT if joined else None,
    }


def _derived_columns() -> dict[str, ColumnElement[Any]]:
    """:func:`derived` in SQL, so that ``$filter`` and ``$orderby`` read those properties
    as the entries show them."""
    out: dict[str, ColumnElement[Any]] = {
        name: literal(value, String()) for name, value in ALIKE.items()
    }
    out["AlternateWebLink"] = literal(MONITOR_PAGE, String()).concat(mpl.c.message_guid)
    joined = and_(mpl.c.correlation_id.is_not(None), mpl.c.correlation_id != mpl.c.message_guid)
    out["PreviousComponentName"] = case((joined, literal(COMPONENT, String())), else_=null())
    # the members of the IntegrationArtifact complex value, as odata.mpl writes them
    flow = mpl.c.integration_flow_name
    out |= {"IntegrationArtifact/Id": flow, "IntegrationArtifact/Name": flow}
    out["IntegrationArtifact/Type"] = literal(ARTIFACT_TYPE, String())
    for member in ("PackageId", "PackageName"):
        out[f"IntegrationArtifact/{member}"] = literal(None, String())
    return out


_LOG_COLUMNS: dict[str, ColumnElement[Any]] = {
    **columns_of(mpl, MESSAGE_PROCESSING_LOG.property_names),
    **_derived_columns(),
}


async def list_logs(
    engine: AsyncEngine,
    *,
    filter: Expr | None = None,
    orderby: Sequence[OrderBy] = (),
    top: int | None = None,
    skip: int = 0,
    count: bool = False,
    having: Sequence[PropertyMatch] = (),
) -> Page:
    """Message processing log entries as entity values, narrowed by ``$filter`` and by
    custom header properties (SAP's ``filterCustomHeaderProperties``)."""
    cols = _LOG_COLUMNS
    where = [compile_filter(filter, cols)] if filter is not None else []
    where += [_with_property(m) for m in having]
    query = select(mpl).where(*where)
    order = compile_orderby(orderby, cols) if orderby else []
    query = query.order_by(*order, mpl.c.message_guid)
    if top is not None:
        query = query.limit(top)
    if skip:
        query = query.offset(skip)
    async with engine.connect() as conn, bounded_read(conn):
        result = await conn.execute(query)
        rows = [_entity(r._mapping) for r in result]
        total = None
        if count:
            counter = select(func.count()).select_from(mpl).where(*where)
            total = int((await conn.execute(counter)).scalar_one())
    return Page(rows, total)


async def get_log(engine: AsyncEngine, message_guid: str) -> dict[str, object] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(mpl).where(mpl.c.message_guid == message_guid))).first()
    return None if row is None else _entity(row._mapping)


def _entity(mapping: Any) -> dict[str, object]:
    """A row as entity values, plus what only our monitor shows (``_``-prefixed)."""
    out: dict[str, object] = {}
    for name, column in columns_of(mpl, MESSAGE_PROCESSING_LOG.property_names).items():
        out[name] = mapping[column.name]
    out["_failed_step"] = mapping["failed_step"]
    out["_error"] = mapping["error_information"]
    out["_http_status"] = mapping["http_status"]
    out["_endpoint"] = mapping["endpoint"]
    return out

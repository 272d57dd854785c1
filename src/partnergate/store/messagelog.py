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
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    DateTime,
    Table,
    Text,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from ..runtime.messagelog import Attachment, MessageLogEntry
from .database import begin, sqlite_file, write_lock
from .directory import now
from .siblings import Siblings
from .tables import message_processing_log_attachments as attachments
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


def error_information(entry: MessageLogEntry) -> str | None:
    if entry.error is None and entry.failed_step is None:
        return None
    parts = [p for p in (entry.failed_step and f"step {entry.failed_step}", entry.error) if p]
    return ": ".join(parts)


def _row(entry: MessageLogEntry) -> dict[str, object]:
    return {
        "message_guid": entry.message_guid,
        "correlation_id": entry.message_guid,
        "integration_flow_name": entry.flow,
        "endpoint": entry.endpoint,
        "status": entry.status,
        "custom_status": entry.status,
        "log_level": "INFO",
        "log_start": entry.start,
        "log_end": entry.end,
        "user": entry.user,
        "sender": entry.sender_partner,
        "receiver": entry.receiver_partner,
        "http_status": entry.http_status,
        "failed_step": entry.failed_step,
        "error_information": error_information(entry),
    }


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


def _replacing(statement: Any) -> Any:
    """``statement`` with ON CONFLICT (message_guid) DO UPDATE: a later report of a
    message replaces an earlier one."""
    changed = {
        name: statement.excluded[name]
        for name in mpl.c.keys()
        if name not in ("message_guid", "correlation_id")
    }
    return statement.on_conflict_do_update(index_elements=[mpl.c.message_guid], set_=changed)


def _keep(dialect: str) -> Any:
    """INSERT of attachments; one already written (a batch tried again) stays as it is."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(attachments).on_conflict_do_nothing(index_elements=[attachments.c.id])


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

    The event loop only turns a batch into one JSON text; the thread binds that single
    parameter and SQLite inserts every row of it in one statement (``json_each``), with
    the GIL released for the whole statement. Binding row by row on another thread would
    hand the GIL back and forth with the event loop for each row, which cost far more
    than the write.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="partnergate-messagelog")
        dialect = sqlite.dialect()
        self._entry_columns = _Columns(mpl, tuple(mpl.c.keys()))
        self._entries = _from_json(self._entry_columns.names)
        compiled = _keep("sqlite").compile(dialect=dialect, column_keys=list(attachments.c.keys()))
        self._attachments = str(compiled)
        self._attachment_columns = _Columns(attachments, tuple(compiled.positiontup or ()))

    async def write(self, entries: list[dict[str, object]], kept: list[dict[str, object]]) -> None:
        """One transaction; the caller holds the store's write lock."""
        batch = json.dumps(self._entry_columns.values(entries), separators=(",", ":"))
        attached = [tuple(v) for v in self._attachment_columns.values(kept)]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._write, batch, attached)

    def _write(self, batch: str, attached: list[tuple[object, ...]]) -> None:
        if self._connection is None:
            self._connection = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False
            )
            self._connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor = self._connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(self._entries, (batch,))
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


def _from_json(columns: Sequence[str]) -> str:
    """The upsert of :func:`_upsert` over the rows of one JSON array of arrays (the only
    parameter), each array's items in the order of ``columns``."""
    dialect = sqlite.dialect()
    rows = func.json_each(bindparam("batch", type_=Text)).table_valued("value")
    items = [
        func.json_extract(rows.c.value, literal_column(f"'$[{i}]'")).label(name)
        for i, name in enumerate(columns)
    ]
    # WHERE true: SQLite's grammar needs it between INSERT … SELECT and ON CONFLICT
    source = select(*items).select_from(rows).where(true())
    upsert = _replacing(sqlite.insert(mpl).from_select(list(columns), source))
    return str(upsert.compile(dialect=dialect))


_TO_TEXT: Any = DateTime().dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
"""SQLAlchemy's conversion of a ``datetime`` to what it stores on SQLite."""


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
                    items[i] = _TO_TEXT(items[i])
            values.append(items)
        return values


class StoreMessageLog:
    def __init__(
        self,
        engine: AsyncEngine,
        interval: float = FLUSH_INTERVAL,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.max_pending = max_pending
        self._pending: dict[str, MessageLogEntry] = {}
        self._lock = asyncio.Lock()
        self._upsert = _upsert(engine.dialect.name)
        self._keep = _keep(engine.dialect.name)
        self._sqlite_path = sqlite_file(engine)
        self._sqlite: _SqliteWriter | None = None
        self.siblings: Siblings | None = None
        """The other workers of this server, told when entries wait here (``serve``
        with several workers)."""
        self._told_waiting = False

    async def started(self, entry: MessageLogEntry) -> None:
        await self._put(entry)

    async def finished(self, entry: MessageLogEntry) -> None:
        await self._put(entry)

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

    async def _write(self, batch: list[MessageLogEntry]) -> None:
        if self._sqlite_path is None:
            kept = _attachments_of(batch)
            async with begin(self.engine) as conn:
                await conn.execute(self._upsert, [_row(e) for e in batch])
                if kept:
                    await conn.execute(self._keep, kept)
            return
        if self._sqlite is None:
            self._sqlite = _SqliteWriter(self._sqlite_path)
        for start in range(0, len(batch), ROWS_PER_TRANSACTION):
            part = batch[start : start + ROWS_PER_TRANSACTION]
            async with write_lock(self.engine):
                await self._sqlite.write([_row(e) for e in part], _attachments_of(part))

    def close(self) -> None:
        """Close the SQLite writer's connection (after the last flush)."""
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    async def run(self) -> None:
        """Flush every ``interval`` seconds until cancelled; then flush what is left."""
        try:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    await self.flush()
                except Exception:
                    log.exception(
                        "message processing log: %d entries not yet written; retrying",
                        len(self._pending),
                    )
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
        """Delete entries that started more than ``keep_days`` ago; return how many."""
        await self.flush()
        old = mpl.c.log_start < now() - timedelta(days=keep_days)
        async with begin(self.engine) as conn:
            await conn.execute(
                delete(attachments).where(
                    attachments.c.message_guid.in_(select(mpl.c.message_guid).where(old))
                )
            )
            result = await conn.execute(delete(mpl).where(old))
        return int(result.rowcount or 0)

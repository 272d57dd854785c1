"""Reads of the API in one hop: a statement in, its rows out, on the driver itself.

Through SQLAlchemy's async engine, one read costs several trips between the event loop
and the database: a connection out of the pool (a ping first on PostgreSQL), ``BEGIN``,
the statement, fetching, closing the cursor, the rollback that returns the connection
(on SQLite each of them a hop to aiosqlite's thread). A read needs none of that
ceremony: here a statement is compiled once per shape (SQLAlchemy's cache key) and run
in one trip, on SQLite in a reader thread with a connection of its own, on PostgreSQL
on an asyncpg connection kept for reads.

Reads here are always bounded by the ``query_time_limit`` of :mod:`.database`: on
SQLite by the connection's progress handler, on PostgreSQL by ``statement_timeout`` on
the read connections. What the database refuses for the query's sake is the same
:class:`~.database.QueryTimeLimit` or :class:`~.database.QueryTooLarge` as elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Select, sqltypes

from . import database

Row = Sequence[Any]

SQLITE_BUSY = 5
SQLITE_LOCKED = 6


@dataclass(frozen=True)
class Compiled:
    """A statement's SQL for one driver, the order of its parameters and columns."""

    sql: str
    names: tuple[str, ...]
    """Result column names, in order."""
    params: Callable[[Any], list[Any]]
    """The positional parameters from a cache key's extracted bind parameters."""
    convert: tuple[Callable[[Any], Any] | None, ...]
    """Result processors per column (SQLite's text datetimes); all ``None`` if none."""
    plain: bool


def _converter(column_type: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The column's result processor; for times (SQLite keeps them as text) one that
    remembers its recent answers, since rows written together share their times."""
    convert = column_type._cached_result_processor(dialect, None)
    if convert is None or not isinstance(column_type, sqltypes.DateTime):
        return convert
    return functools.lru_cache(maxsize=1024)(convert)


_UNSHAPED = object()
"""A shape read through its own statement each time (:meth:`Reads.shaped`)."""


class Reads:
    """Runs read-only statements in one trip each."""

    def __init__(self, dialect: Dialect, limit: float) -> None:
        self.dialect = dialect
        self.limit = limit
        self._compiled: dict[Any, Compiled] = {}
        self._prepared: dict[Hashable, Compiled] = {}
        self._shaped: dict[Hashable, Any] = {}

    def compile(self, statement: Select) -> tuple[Compiled, list[Any]]:
        key = statement._generate_cache_key()
        assert key is not None, "every read statement is cacheable"
        compiled = self._compiled.get(key.key)
        if compiled is None:
            compiled = self._compile(statement, key)
            if len(self._compiled) > 2000:
                self._compiled.clear()
            self._compiled[key.key] = compiled
        return compiled, compiled.params(key.bindparams)

    def _compile(self, statement: Select, key: Any, named: bool = False) -> Compiled:
        dialect = self.dialect
        compiler = dialect.statement_compiler(dialect, statement, cache_key=key)
        order = tuple(compiler.positiontup or ())
        binds = compiler._bind_processors

        def params(given: Any) -> list[Any]:
            values = given if named else compiler.construct_params(extracted_parameters=given)
            out = []
            for name in order:
                value = values[name]
                process = binds.get(name)
                out.append(value if process is None else process(value))
            return out

        columns = compiler._result_columns
        convert = tuple(_converter(c[3], dialect) for c in columns)
        names = tuple(c[0] for c in columns)
        return Compiled(compiler.string, names, params, convert, not any(convert))

    async def rows(self, statement: Select) -> tuple[tuple[str, ...], list[Row]]:
        compiled, params = self.compile(statement)
        return await self._rows(compiled, params)

    async def shaped(
        self,
        name: Hashable,
        build: Callable[[], Select],
        stand_ins: Sequence[str],
        values: Sequence[str],
        statement: Callable[[], Select],
        *,
        near: bool = False,
    ) -> tuple[tuple[str, ...], list[Row]]:
        """Rows of ``statement()``, which is ``build()`` with ``values`` in place of the
        ``stand_ins`` (each a parameter's whole value, unprocessed): the statement of the
        shape that ``name`` stands for is built and compiled once, and each read only
        binds its values. A shape whose stand-ins cannot all be found this way is read
        through ``statement()``. ``near``: the caller knows the read walks one short
        range of an index (see :meth:`by_key`)."""
        found = self._shaped.get(name)
        if found is None:
            found = self._shape(build(), stand_ins)
            if len(self._shaped) > 2000:
                self._shaped.clear()
            self._shaped[name] = found
        if found is _UNSHAPED:
            return await self.rows(statement())
        compiled, params, slots = found
        params = list(params)
        for position, index in slots:
            params[position] = values[index]
        return await self._rows(compiled, params, self._run_near if near else None)

    def _shape(self, statement: Select, stand_ins: Sequence[str]) -> Any:
        compiled, params = self.compile(statement)
        slots = []
        for index, stand_in in enumerate(stand_ins):
            positions = [i for i, value in enumerate(params) if value == stand_in]
            if len(positions) != 1:
                return _UNSHAPED
            slots.append((positions[0], index))
        return compiled, params, tuple(slots)

    async def by_key(
        self, name: Hashable, build: Callable[[], Select], values: dict[str, Any]
    ) -> tuple[tuple[str, ...], list[Row]]:
        """Rows of a read by primary key that ``name`` stands for, built once, with
        ``values`` for its named bind parameters: no SQL expression is built per read.
        Such a read touches a few pages of one index, however large the table."""
        compiled = self._prepared.get(name)
        if compiled is None:
            statement = build()
            key = statement._generate_cache_key()
            compiled = self._prepared[name] = self._compile(statement, key, named=True)
        return await self._rows(compiled, compiled.params(values), self._run_near)

    async def _rows(
        self, compiled: Compiled, params: list[Any], run: Callable[..., Any] | None = None
    ) -> tuple[tuple[str, ...], list[Row]]:
        rows = await (run or self._run)(compiled.sql, params)
        if not compiled.plain:
            converted = [(i, f) for i, f in enumerate(compiled.convert) if f is not None]
            out = []
            for row in rows:
                values = list(row)
                for i, f in converted:
                    values[i] = f(values[i])
                out.append(values)
            rows = out
        return compiled.names, rows

    async def _run(self, sql: str, params: list[Any]) -> list[Row]:
        raise NotImplementedError

    async def _run_near(self, sql: str, params: list[Any]) -> list[Row]:
        return await self._run(sql, params)

    async def close(self) -> None:
        pass


class SQLiteReads(Reads):
    """Reader threads, each with its own connection to the store's file (WAL: readers
    never wait for the writer).

    A reader thread takes every read that waits when it wakes and hands all their
    answers back to the event loop at once, so that under load a wake-up on each side
    serves many reads instead of one.
    """

    THREADS = 2

    def __init__(self, engine: AsyncEngine, path: str, limit: float) -> None:
        super().__init__(engine.dialect, limit)
        self.path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        """The connection for reads by key of the thread that runs them (the loop's)."""
        self._inline: list[sqlite3.Connection] = []

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self.THREADS:
                thread = threading.Thread(target=self._serve, name="partnergate-read", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _connect(self, busy_timeout: int = 30000) -> tuple[sqlite3.Connection, database._Deadline]:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={busy_timeout}")
        conn.execute("PRAGMA query_only=1")
        deadline = database._Deadline()
        conn.set_progress_handler(deadline, database.PROGRESS_STEPS)
        return conn, deadline

    def _serve(self) -> None:
        conn, deadline = self._connect()
        try:
            stopping = False
            while not stopping:
                first = self._jobs.get()
                jobs: list[_Job] = []
                while first is not None:
                    jobs.append(first)
                    try:
                        first = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                if first is None:
                    stopping = True
                    self._jobs.put(None)  # the stop is for the other threads too
                done = [(job, *self._fetch(conn, deadline, job)) for job in jobs]
                by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
                for item in done:
                    by_loop.setdefault(item[0].loop, []).append(item)
                for loop, items in by_loop.items():
                    with contextlib.suppress(RuntimeError):  # a loop that has closed
                        loop.call_soon_threadsafe(_deliver, items)
        finally:
            conn.close()

    def _fetch(
        self, conn: sqlite3.Connection, deadline: database._Deadline, job: _Job
    ) -> tuple[list[Row] | None, BaseException | None]:
        deadline.at = time.monotonic() + self.limit
        try:
            return conn.execute(job.sql, job.params).fetchall(), None
        except sqlite3.Error as exc:
            refusal = database.refusal(exc, self.limit, deadline)
            return None, exc if refusal is None else refusal
        except Exception as exc:
            return None, exc
        finally:
            deadline.at = float("inf")

    async def _run_near(self, sql: str, params: list[Any]) -> list[Row]:
        """A read of one short index range (by key, or a page of one partner), right
        here on the event loop's thread: a few pages of one B-tree cost less than the two
        hops to a reader thread and back. Should the file
        be busy for a moment (SQLite's WAL recovery), a reader thread, which waits, runs it.
        """
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None:
            conn, local.deadline = self._connect(busy_timeout=0)
            local.conn = conn
            self._inline.append(conn)
        deadline = local.deadline
        deadline.at = time.monotonic() + self.limit
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED):
                return await self._run(sql, params)
            refusal = database.refusal(exc, self.limit, deadline)
            if refusal is None:
                raise
            raise refusal from exc
        finally:
            deadline.at = float("inf")

    async def _run(self, sql: str, params: list[Any]) -> list[Row]:
        if not self._threads:
            self._start()
        loop = asyncio.get_running_loop()
        job = _Job(sql, params, loop, loop.create_future())
        self._jobs.put(job)
        return await job.future

    async def close(self) -> None:
        inline, self._inline = self._inline, []
        self._local = threading.local()
        for conn in inline:
            conn.close()
        threads, self._threads = self._threads, []
        if threads:
            self._jobs.put(None)
            for thread in threads:
                await asyncio.to_thread(thread.join)


@dataclass
class _Job:
    sql: str
    params: list[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[Row]]


def _deliver(items: list[tuple[_Job, list[Row] | None, BaseException | None]]) -> None:
    for job, rows, error in items:
        if job.future.done():  # the reader was cancelled
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(rows or [])


class PostgreSQLReads(Reads):
    """A few asyncpg connections kept for reads, outside any transaction, each with the
    time budget as its ``statement_timeout``."""

    SIZE = 8

    def __init__(self, engine: AsyncEngine, limit: float) -> None:
        super().__init__(engine.dialect, limit)
        url = engine.url.set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(self.SIZE)
        self._open: set[Any] = set()

    async def _connect(self) -> Any:
        import asyncpg

        milliseconds = str(max(1, round(self.limit * 1000)))
        conn = await asyncpg.connect(self.dsn, server_settings={"statement_timeout": milliseconds})
        self._open.add(conn)
        return conn

    async def _run(self, sql: str, params: list[Any]) -> list[Row]:
        import asyncpg

        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            keep = False
            try:
                rows = await conn.fetch(sql, *params)
                keep = True
                return rows
            except asyncpg.PostgresError as exc:
                keep = not conn.is_closed()
                refusal = database.refusal(exc, self.limit, None)
                if refusal is None:
                    raise
                raise refusal from exc
            finally:
                if keep and not conn.is_closed():
                    self._idle.append(conn)
                else:
                    self._open.discard(conn)
                    conn.terminate()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            self._open.discard(conn)
            await conn.close()
        for conn in list(self._open):
            conn.terminate()
        self._open.clear()


def open_reads(engine: AsyncEngine) -> Reads | None:
    """Fast reads for the engine's store; ``None`` where the engine's own path stays
    (an in-memory SQLite database, which only the engine's connection can see)."""
    limit = database.query_time_limit(engine)
    if engine.dialect.name == "postgresql":
        return PostgreSQLReads(engine, limit)
    path = database.sqlite_file(engine)
    if path is None:
        return None
    return SQLiteReads(engine, path, limit)

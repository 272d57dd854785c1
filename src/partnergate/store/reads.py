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
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Select

from . import database

Row = Sequence[Any]


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


class Reads:
    """Runs read-only statements in one trip each."""

    def __init__(self, dialect: Dialect, limit: float) -> None:
        self.dialect = dialect
        self.limit = limit
        self._compiled: dict[Any, Compiled] = {}

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

    def _compile(self, statement: Select, key: Any) -> Compiled:
        dialect = self.dialect
        compiler = dialect.statement_compiler(dialect, statement, cache_key=key)
        order = tuple(compiler.positiontup or ())
        binds = compiler._bind_processors

        def params(extracted: Any) -> list[Any]:
            values = compiler.construct_params(extracted_parameters=extracted)
            out = []
            for name in order:
                value = values[name]
                process = binds.get(name)
                out.append(value if process is None else process(value))
            return out

        columns = compiler._result_columns
        convert = tuple(c[3]._cached_result_processor(dialect, None) for c in columns)
        names = tuple(c[0] for c in columns)
        return Compiled(compiler.string, names, params, convert, not any(convert))

    async def rows(self, statement: Select) -> tuple[tuple[str, ...], list[Row]]:
        compiled, params = self.compile(statement)
        rows = await self._run(compiled.sql, params)
        if not compiled.plain:
            convert = compiled.convert
            rows = [
                tuple(v if f is None else f(v) for f, v in zip(convert, row, strict=True))
                for row in rows
            ]
        return compiled.names, rows

    async def _run(self, sql: str, params: list[Any]) -> list[Row]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class SQLiteReads(Reads):
    """Reader threads, each with its own connection to the store's file (WAL: readers
    never wait for the writer)."""

    THREADS = 2

    def __init__(self, engine: AsyncEngine, path: str, limit: float) -> None:
        super().__init__(engine.dialect, limit)
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._pool = ThreadPoolExecutor(self.THREADS, thread_name_prefix="partnergate-read")

    def _connection(self) -> tuple[sqlite3.Connection, database._Deadline]:
        found = getattr(self._local, "connection", None)
        if found is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA query_only=1")
            deadline = database._Deadline()
            conn.set_progress_handler(deadline, database.PROGRESS_STEPS)
            self._connections.append(conn)
            found = self._local.connection = (conn, deadline)
        return found

    def _fetch(self, sql: str, params: list[Any]) -> list[Row]:
        conn, deadline = self._connection()
        deadline.at = time.monotonic() + self.limit
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            refusal = database.refusal(exc, self.limit, deadline)
            if refusal is None:
                raise
            raise refusal from exc
        finally:
            deadline.at = float("inf")

    async def _run(self, sql: str, params: list[Any]) -> list[Row]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._fetch, sql, params)

    async def close(self) -> None:
        self._pool.shutdown(wait=True)
        for conn in self._connections:
            conn.close()
        self._connections.clear()


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

"""The database connection: URL forms, SQLite pragmas, the time budget of reads, and
applying migrations at start."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..model.errors import DirectoryError

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseURLError(ValueError):
    """The database URL names no database we can use."""


def async_url(url: str) -> str:
    """Give a plain ``sqlite:///`` or ``postgresql://`` URL its async driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseURLError(f"'{url}' is not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite").render_as_string(False))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(False)
    raise DatabaseURLError(
        f"database '{backend}' is not supported; use sqlite:///FILE or postgresql://..."
    )


def _sqlite_pragmas(dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    deadline = _Deadline()
    record.info[_DEADLINE] = deadline
    dbapi_connection.run_async(lambda raw: raw.set_progress_handler(deadline, PROGRESS_STEPS))


# -- the time budget of reads --------------------------------------------------------------

DEFAULT_QUERY_TIME_LIMIT = 5.0
"""Seconds a bounded read may take (the ``query_time_limit`` setting)."""

PROGRESS_STEPS = 100_000
"""SQLite virtual-machine steps between two looks at the deadline: a few milliseconds of
work, so that the check (which takes the GIL) costs nothing measurable."""

_DEADLINE = "partnergate_deadline"
_TIME_LIMITS: weakref.WeakKeyDictionary[AsyncEngine, float] = weakref.WeakKeyDictionary()


class _Deadline:
    """A SQLite connection's progress handler: a true answer interrupts the statement.

    Set from the event loop's thread, read on the driver's; a float attribute is replaced
    whole, so the two need no lock. Infinite outside :func:`bounded_read`.
    """

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = math.inf

    def __call__(self) -> bool:
        return time.monotonic() > self.at


class QueryTimeLimit(DirectoryError):
    """A read ran past the ``query_time_limit`` setting and was stopped.

    503, not 4xx: whether a query fits the budget depends on how much data there is and
    how busy the database is at that moment, not only on what the client asked; the
    refusals that depend on the query alone (its size, depth, string lengths, cost) are
    400s from ``odata.filter`` before any SQL runs. The message names the limit so that
    the client knows to narrow the query rather than retry it unchanged.
    """

    status = 503
    code = "Query Time Limit Exceeded"


class QueryTooLarge(DirectoryError):
    """The database refused a client's query as beyond one of its own limits (a string or
    blob too big, an expression too deep): the query's fault, so a 400, never a 500."""

    code = "Query Too Large"


_SQLITE_LIMITS = (
    "string or blob too big",
    "expression tree is too large",
    "parser stack overflow",
    "too many sql variables",
    "too many terms",
    "too many arguments",
    "pattern too complex",
)
"""SQLite's messages for a statement beyond one of its compile-time limits."""

_PG_QUERY_CANCELED = "57014"
_PG_QUERY_CLASSES = ("22", "54")
"""PostgreSQL SQLSTATE classes ``data_exception`` (a value out of range, …) and
``program_limit_exceeded`` (statement too complex, …): in a read, the query's doing."""


def set_query_time_limit(engine: AsyncEngine, seconds: float) -> None:
    """Give the engine's bounded reads a budget other than the default."""
    _TIME_LIMITS[engine] = seconds


def query_time_limit(engine: AsyncEngine) -> float:
    """Seconds a bounded read of this engine may take."""
    return _TIME_LIMITS.get(engine, DEFAULT_QUERY_TIME_LIMIT)


@asynccontextmanager
async def bounded_read(conn: AsyncConnection) -> AsyncIterator[None]:
    """Run the reads inside under the engine's time budget; a client's query the database
    cannot finish in time or at all is a :class:`QueryTimeLimit` or a
    :class:`QueryTooLarge`, never a server error.

    SQLite: the connection's progress handler interrupts a statement past the deadline,
    one deadline for all the statements inside. PostgreSQL: each statement inside has the
    budget, as ``statement_timeout`` for the rest of the transaction (``SET LOCAL``), set
    back to the session's default afterwards when the transaction goes on (a ``$batch``
    change set), so that writes are never cut short.
    """
    limit = query_time_limit(conn.engine)
    postgresql = conn.dialect.name == "postgresql"
    shared = conn.in_transaction()
    deadline: _Deadline | None = None
    if postgresql:
        milliseconds = str(max(1, round(limit * 1000)))
        await conn.execute(
            text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": milliseconds}
        )
    else:
        raw = await conn.get_raw_connection()
        deadline = raw.info.get(_DEADLINE)
        if deadline is not None:
            deadline.at = time.monotonic() + limit
    try:
        yield
    except DBAPIError as exc:
        refused = refusal(exc.orig, limit, deadline)
        if refused is None:
            raise
        raise refused from exc
    except asyncio.CancelledError:
        # Cancelled mid-statement, the connection is invalidated but its statement goes on
        # in the driver's thread: the deadline stays to stop it. (asyncpg cancels its own.)
        if conn.invalidated:
            deadline = None
        raise
    finally:
        if deadline is not None:
            deadline.at = math.inf
    if postgresql and shared:
        await conn.execute(text("SET LOCAL statement_timeout TO DEFAULT"))


def refusal(orig: BaseException, limit: float, deadline: _Deadline | None) -> DirectoryError | None:
    """What a driver's error in a bounded read tells the client, if it is the query's and
    not the server's."""
    state = str(getattr(orig, "sqlstate", "") or getattr(orig, "pgcode", "") or "")
    message = str(orig).lower()
    timed_out = state == _PG_QUERY_CANCELED or (
        deadline is not None and "interrupted" in message and time.monotonic() > deadline.at
    )
    if timed_out:
        return QueryTimeLimit(
            f"The query ran longer than the limit of {limit:g} s (query_time_limit) and "
            "was stopped; narrow $filter or $orderby, or ask for fewer entries with $top"
        )
    if state[:2] in _PG_QUERY_CLASSES or any(text in message for text in _SQLITE_LIMITS):
        return QueryTooLarge(
            f"The database cannot evaluate this query: {(str(orig).splitlines() or [''])[0][:200]}"
        )
    return None


_WRITE_LOCKS: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = weakref.WeakKeyDictionary()


def write_lock(engine: AsyncEngine) -> asyncio.Lock:
    """SQLite has one writer at a time: within a process, writers queue on this lock
    instead of failing with "database is locked" after the busy timeout."""
    return _WRITE_LOCKS.setdefault(engine, asyncio.Lock())


@asynccontextmanager
async def begin(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction; on SQLite, one at a time (:func:`write_lock`)."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    async with write_lock(engine), engine.begin() as conn:
        yield conn


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The file of a SQLite store; None for PostgreSQL and in-memory SQLite."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return database
    return None


@functools.cache
def _sqlite_has_json() -> bool:
    """The message processing log writes its batches through SQLite's JSON functions."""
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as probe:
            probe.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.OperationalError:
        return False
    return True


def create_engine(url: str, *, query_time_limit: float | None = None) -> AsyncEngine:
    """An engine for the URL; ``query_time_limit`` is the budget of :func:`bounded_read`."""
    engine = _create_engine(url)
    if query_time_limit is not None:
        set_query_time_limit(engine, query_time_limit)
    return engine


def _create_engine(url: str) -> AsyncEngine:
    full = async_url(url)
    if full.startswith("sqlite"):
        if not _sqlite_has_json():
            raise DatabaseURLError(
                f"this Python's SQLite ({sqlite3.sqlite_version}) lacks the JSON functions "
                "partnergate needs (built in since SQLite 3.38); use a Python with a newer "
                "SQLite, or PostgreSQL"
            )
        database = make_url(full).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(full)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(full, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Apply every pending migration (idempotent; run at each start)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)

"""The database connection: URL forms, SQLite pragmas, and applying migrations at start."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


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


def create_engine(url: str) -> AsyncEngine:
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

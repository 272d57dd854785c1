"""Local users, OAuth clients and server keys: who may call partnergate, and with what.

Passwords and client secrets are stored only as argon2 hashes. Roles are a space-separated
list, e.g. ``AuthGroup_TenantPartnerDirectoryConfigurator ESBMessaging.send``.

Senders authenticate on every message, so each table keeps the accounts it has read in
memory, for as long as nothing says they changed: a write through this process forgets
them at once; a write by another process (the ``partnergate users`` CLI, another node)
shows on SQLite as a new ``PRAGMA data_version`` (asked at most every 5 ms: each asking
takes SQLite's file locks) and on PostgreSQL as a ``NOTIFY`` that the change listener
delivers to :meth:`AccountCache.invalidate`, within milliseconds either way. While the
listener is not connected, nothing is trusted from memory.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..model.errors import AlreadyExists, InvalidValue, NotFound
from ..runtime.changes import CLIENTS, SESSIONS, USERS, Changes
from ..security.accounts import StoredAccount
from ..security.passwords import hash_password
from . import audit
from .changes import Change, publish
from .database import begin, sqlite_file
from .directory import now
from .tables import local_users, oauth_clients, server_keys, sessions

MAX_NAME = 150
DATA_VERSION_SECONDS = 0.005
"""How long a SQLite ``data_version`` answer is taken as current."""
__all__ = ["CLIENTS", "SESSIONS", "USERS", "AccountCache", "Clients", "Users", "server_key"]


@dataclass(frozen=True)
class Account:
    name: str
    roles: tuple[str, ...]


def _roles(text: str) -> tuple[str, ...]:
    return tuple(r for r in text.split() if r)


def _check_name(kind: str, name: str) -> None:
    if not name or len(name) > MAX_NAME or any(c.isspace() or c == ":" for c in name):
        raise InvalidValue(
            f"{kind} name must be 1 to {MAX_NAME} characters without spaces or ':'", field="name"
        )


Current = StoredAccount | None
"""An account with its secret's hash, or None for no such account."""

_UNREAD = object()


class AccountCache:
    """Accounts as last read from the store, by (entity set, name), each with the version
    of the store it was read at; an entry counts only while that version is current.

    On a SQLite file the version is ``PRAGMA data_version`` of a read-only connection of
    the cache's own, which changes whenever any other connection commits: a changed
    version costs one synchronous primary-key read (microseconds, and a reader never
    waits for a writer in WAL mode). Elsewhere it is a counter that every invalidation
    advances, and ``live`` says whether remote writes are heard at all.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._entries: dict[tuple[str, str], tuple[int, object]] = {}
        self._generation = 0
        self._sqlite: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._asked = 0.0
        self.live: Callable[[], bool] = lambda: True
        """Whether remote writes are being heard; the PostgreSQL listener replaces it."""
        self.changes: Changes | None = None
        """Where this process's account writes are published after their commit."""
        database = sqlite_file(engine)
        if database is not None:
            self._sqlite = sqlite3.connect(
                f"file:{database}?mode=ro", uri=True, check_same_thread=False, timeout=0.1
            )

    def version(self) -> int | None:
        """The store's version now; None when nothing may be trusted from memory."""
        if self._sqlite is None:
            return self._generation if self.live() else None
        now = time.monotonic()
        if self._data_version is None or now - self._asked >= DATA_VERSION_SECONDS:
            try:
                (found,) = self._sqlite.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error:
                self._data_version = None
                return None
            self._data_version, self._asked = int(found), now
        return self._data_version + (self._generation << 32)

    def get(self, entity_set: str, name: str, version: int | None) -> tuple[bool, object]:
        """``(True, value)`` when ``value`` was read at ``version``, else ``(False, None)``."""
        entry = self._entries.get((entity_set, name))
        if version is None or entry is None or entry[0] != version:
            return False, None
        return True, entry[1]

    def put(self, entity_set: str, name: str, value: object, version: int | None) -> None:
        if version is None:
            return
        if len(self._entries) >= 100_000:
            self._entries.clear()
        self._entries[(entity_set, name)] = (version, value)

    def read_now(self, sql: str, name: str) -> object:  # a row, None, or _UNREAD
        """The row of ``sql`` for ``name``, read synchronously from SQLite; ``_UNREAD``
        where that is not possible (PostgreSQL, or SQLite refused)."""
        if self._sqlite is None:
            return _UNREAD
        try:
            return self._sqlite.execute(sql, (name,)).fetchone()
        except sqlite3.Error:
            return _UNREAD

    def invalidate(self, changes: Sequence[Change]) -> None:
        if any(change.entity_set in (USERS, CLIENTS, SESSIONS) for change in changes):
            self.clear()

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None


class _AccountTable:
    kind = ""
    entity_set = ""
    table: Table
    key: str
    secret: str

    def __init__(self, engine: AsyncEngine, cache: AccountCache | None = None) -> None:
        self.engine = engine
        self.cache = cache

    async def _changed(
        self,
        conn: AsyncConnection,
        name: str,
        before: audit.Snapshot | None = None,
        after: audit.Snapshot | None = None,
        actor: str | None = None,
    ) -> None:
        """Inside the writing transaction: other nodes hear of it when it commits, and the
        change history records it (secrets only as "changed").

        A user whose password or roles change, or who is removed, is signed out
        everywhere: the sessions go in the same transaction.
        """
        if self.entity_set == USERS:
            await conn.execute(delete(sessions).where(sessions.c.user == name))
        if before is not None or after is not None:
            key = {self.key: name}
            await audit.record_one(conn, self.entity_set, key, name, before, after, actor, now())
        await publish(conn, [Change(self.entity_set, {"name": name}, None)])

    def _forget(self, name: str) -> None:
        """After the commit: forget the accounts remembered here, and tell the runtime."""
        if self.cache is not None:
            self.cache.clear()
            if self.cache.changes is not None:
                self.cache.changes.publish([Change(self.entity_set, {"name": name}, None)])

    async def add(
        self, name: str, secret: str, roles: list[str], actor: str | None = None
    ) -> Account:
        _check_name(self.kind, name)
        if not secret:
            raise InvalidValue(f"the {self.kind}'s secret must not be empty", field="secret")
        stamp = now()
        row = {
            self.key: name,
            self.secret: await asyncio.to_thread(hash_password, secret),
            "roles": " ".join(roles),
            "created_time": stamp,
            "changed_time": stamp,
        }
        try:
            async with begin(self.engine) as conn:
                await conn.execute(insert(self.table).values(**row))
                state = {"Roles": row["roles"], "Secret": audit.PASSWORD_KEPT}
                await self._changed(conn, name, None, state, actor)
        except IntegrityError:
            raise AlreadyExists(f"{self.kind} '{name}' already exists") from None
        self._forget(name)
        return Account(name, tuple(roles))

    async def list(self) -> list[Account]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(self.table).order_by(self.table.c[self.key]))
            return [Account(r._mapping[self.key], _roles(r.roles)) for r in rows]

    async def get(self, name: str) -> Account | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(self.table).where(self.table.c[self.key] == name))
            ).first()
        return None if row is None else Account(name, _roles(row.roles))

    async def remove(self, name: str, actor: str | None = None) -> None:
        async with begin(self.engine) as conn:
            roles = await self._roles_in(conn, name)
            result = await conn.execute(delete(self.table).where(self.table.c[self.key] == name))
            gone = None if roles is None else {"Roles": roles, "Secret": audit.PASSWORD_KEPT}
            await self._changed(conn, name, gone, None, actor)
        self._forget(name)
        if result.rowcount == 0:
            raise NotFound(f"{self.kind} '{name}' does not exist")

    async def set_secret(self, name: str, secret: str, actor: str | None = None) -> None:
        if not secret:
            raise InvalidValue(f"the {self.kind}'s secret must not be empty", field="secret")
        hashed = await asyncio.to_thread(hash_password, secret)  # argon2: tens of ms of CPU
        async with begin(self.engine) as conn:
            result = await conn.execute(
                update(self.table)
                .where(self.table.c[self.key] == name)
                .values({self.secret: hashed, "changed_time": now()})
            )
            if result.rowcount:
                before = {"Secret": audit.PASSWORD_KEPT}
                after = {"Secret": audit.PASSWORD_CHANGED}
                await self._changed(conn, name, before, after, actor)
            else:
                await self._changed(conn, name)
        self._forget(name)
        if result.rowcount == 0:
            raise NotFound(f"{self.kind} '{name}' does not exist")

    async def set_roles(self, name: str, roles: list[str], actor: str | None = None) -> None:
        async with begin(self.engine) as conn:
            old = await self._roles_in(conn, name)
            result = await conn.execute(
                update(self.table)
                .where(self.table.c[self.key] == name)
                .values(roles=" ".join(roles), changed_time=now())
            )
            if old is not None:
                after = {"Roles": " ".join(roles)}
                await self._changed(conn, name, {"Roles": old}, after, actor)
            else:
                await self._changed(conn, name)
        self._forget(name)
        if result.rowcount == 0:
            raise NotFound(f"{self.kind} '{name}' does not exist")

    async def _roles_in(self, conn: AsyncConnection, name: str) -> str | None:
        """An account's roles as the transaction sees them; None if there is no account."""
        query = select(self.table.c.roles).where(self.table.c[self.key] == name)
        row = (await conn.execute(query)).first()
        return None if row is None else str(row.roles)

    async def fingerprint(self, name: str) -> str | None:
        """Changes whenever the secret or roles change: keys a cache of verified logins."""
        current = await self.stored(name)
        return None if current is None else current.fingerprint

    async def stored(self, name: str) -> Current:
        """The account as stored, from memory while the store has not changed."""
        cache = self.cache
        if cache is None:
            return await self._read_current(name)
        version = cache.version()
        found, remembered = cache.get(self.entity_set, name, version)
        if found:
            return remembered if isinstance(remembered, StoredAccount) else None
        row = cache.read_now(self._sync_query, name)
        if row is _UNREAD:
            value = await self._read_current(name)
        else:
            value = None if row is None else _current(name, (str(row[0]), str(row[1])))
        cache.put(self.entity_set, name, value, version)
        return value

    @property
    def _sync_query(self) -> str:
        return f'SELECT "{self.secret}", roles FROM {self.table.name} WHERE "{self.key}" = ?'

    async def _read_current(self, name: str) -> Current:
        row = await self._read_row(name)
        return None if row is None else _current(name, row)

    async def _read_row(self, name: str) -> tuple[str, str] | None:
        """``(secret hash, roles)`` as stored."""
        columns = (self.table.c[self.secret], self.table.c.roles)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(*columns).where(self.table.c[self.key] == name))
            ).first()
        return None if row is None else (str(row[0]), str(row[1]))


def _current(name: str, row: tuple[str, str]) -> StoredAccount:
    hashed, roles = row
    return StoredAccount(name, _roles(roles), hashed)


class Users(_AccountTable):
    kind = "user"
    entity_set = USERS
    table = local_users
    key = "name"
    secret = "password_hash"


class Clients(_AccountTable):
    kind = "OAuth client"
    entity_set = CLIENTS
    table = oauth_clients
    key = "client_id"
    secret = "secret_hash"


async def server_key(engine: AsyncEngine, name: str, size: int = 32) -> bytes:
    """A random key kept in the store, made on first use, the same for every node."""
    async with begin(engine) as conn:
        row = (
            await conn.execute(select(server_keys.c.value).where(server_keys.c.name == name))
        ).first()
        if row is not None:
            return bytes(row[0])
    value = secrets.token_bytes(size)
    try:
        async with begin(engine) as conn:
            await conn.execute(
                insert(server_keys).values(name=name, value=value, created_time=now())
            )
    except IntegrityError:
        async with engine.connect() as conn:
            row = (
                await conn.execute(select(server_keys.c.value).where(server_keys.c.name == name))
            ).first()
            assert row is not None
            return bytes(row[0])
    return value

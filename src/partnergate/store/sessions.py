"""Signed-in sessions in the store: the :class:`~partnergate.security.sessions.SessionBook`.

A session is read on every request that carries its cookie, so it is kept in the
:class:`~.accounts.AccountCache` while the store is unchanged, like an account. Ending a
session publishes a change, so every node forgets it at once; account changes that end a
user's sessions delete them in their own transaction (:mod:`.accounts`). Touching a
session (its last use, at most once a minute) publishes nothing: a node that finds a
session idle in memory reads it afresh before refusing it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..security.sessions import SessionRecord
from .accounts import _UNREAD, SESSIONS, AccountCache
from .changes import Change, publish
from .database import begin
from .directory import now
from .tables import sessions

_SYNC_QUERY = 'SELECT "user", created_time, last_seen, expires FROM sessions WHERE id_hash = ?'


def _time(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _record(row: tuple[object, ...]) -> SessionRecord:
    user, created, last_seen, expires = row
    return SessionRecord(str(user), _time(created), _time(last_seen), _time(expires))


class Sessions:
    def __init__(self, engine: AsyncEngine, cache: AccountCache | None = None) -> None:
        self.engine = engine
        self.cache = cache

    async def create(self, key: str, user: str, lifetime: int) -> None:
        stamp = now()
        async with begin(self.engine) as conn:
            await conn.execute(
                insert(sessions).values(
                    id_hash=key,
                    user=user,
                    created_time=stamp,
                    last_seen=stamp,
                    expires=stamp + timedelta(seconds=lifetime),
                )
            )

    async def get(self, key: str, fresh: bool = False) -> SessionRecord | None:
        cache = self.cache
        if cache is None or fresh:
            return await self._read(key)
        version = cache.version()
        found, remembered = cache.get(SESSIONS, key, version)
        if found:
            return remembered if isinstance(remembered, SessionRecord) else None
        row = cache.read_now(_SYNC_QUERY, key)
        if row is _UNREAD:
            record = await self._read(key)
        else:
            record = None if row is None else _record(tuple(row))  # type: ignore[arg-type]
        cache.put(SESSIONS, key, record, version)
        return record

    async def _read(self, key: str) -> SessionRecord | None:
        t = sessions
        query = select(t.c.user, t.c.created_time, t.c.last_seen, t.c.expires)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query.where(t.c.id_hash == key))).first()
        return None if row is None else _record(tuple(row))

    async def touch(self, key: str) -> None:
        async with begin(self.engine) as conn:
            await conn.execute(
                update(sessions).where(sessions.c.id_hash == key).values(last_seen=now())
            )
        if self.cache is not None:
            version = self.cache.version()
            self.cache.put(SESSIONS, key, await self._read(key), version)

    async def end(self, key: str) -> None:
        async with begin(self.engine) as conn:
            await conn.execute(delete(sessions).where(sessions.c.id_hash == key))
            await publish(conn, [Change(SESSIONS, {"id": key[:16]}, None)])
        if self.cache is not None:
            self.cache.clear()
            if self.cache.changes is not None:
                self.cache.changes.publish([Change(SESSIONS, {"id": key[:16]}, None)])

    async def purge(self, idle: int) -> int:
        """Remove sessions past their lifetime or idle limit; how many went."""
        stamp = now()
        async with begin(self.engine) as conn:
            result = await conn.execute(
                delete(sessions).where(
                    or_(
                        sessions.c.expires <= stamp,
                        sessions.c.last_seen < stamp - timedelta(seconds=idle),
                    )
                )
            )
        return int(result.rowcount or 0)

"""Telling every process over the store what a write changed, so each drops it from its
caches (the runtime's :class:`~partnergate.runtime.changes.Changes` stream).

Every writing transaction records its changes before it commits, so they are told if and
only if it commits:

- PostgreSQL: a ``NOTIFY`` on the channel ``partnergate_changes`` (sent by PostgreSQL on
  commit); every process LISTENs (:class:`ChangeListener`) and publishes what others
  changed. A process that loses its listening connection forgets everything once it is
  back, since it may have missed notifications; until then it trusts nothing from memory.
  Each notification carries its sender's notice number, which the workers of one
  ``serve`` also leave in their shared page (:class:`SiblingNotices`): a worker whose
  next message arrives before a sibling's notification forgets everything rather than
  serve it from before that write.
- SQLite: a row in ``change_log``, whose ``seq`` grows in commit order (SQLite has one
  writer at a time). Several processes share one WAL file (the workers of ``serve``, the
  CLI); each reads the rows it has not seen (:class:`SqliteChangeLog`) before each message.
  That costs one ``PRAGMA data_version`` on a read-only connection while nothing was
  committed, and one indexed read when something was.

Each process skips its own rows and notifications: it published them after its commit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mmap
import os
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from ..runtime.changes import Change
from . import siblings
from .tables import change_log

__all__ = [
    "CHANNEL",
    "Change",
    "ChangeListener",
    "SiblingNotices",
    "SqliteChangeLog",
    "node",
    "publish",
]

log = logging.getLogger("partnergate.store")

CHANNEL = "partnergate_changes"
MAX_PAYLOAD = 7000
"""PostgreSQL's NOTIFY payload limit is 8000 bytes; larger change lists say "everything"."""
KEEP_ROWS = 10_000
"""Rows ``change_log`` keeps; a process further behind than that forgets everything."""

_node: tuple[int, str] = (0, "")
_notices = 0
"""Change notifications this process has sent (each one's number)."""


def node() -> str:
    """This process, so it can skip its own changes; a forked worker gets its own."""
    global _node
    pid = os.getpid()
    if _node[0] != pid:
        _node = (pid, uuid.uuid4().hex[:12])
    return _node[1]


def _items(changes: Sequence[Change]) -> list[dict[str, Any]]:
    return [
        {"s": c.entity_set, "k": {k: str(v) for k, v in c.key.items()}, "p": c.pid} for c in changes
    ]


def _changes(items: list[dict[str, Any]]) -> list[Change]:
    return [Change(i["s"], i["k"], i["p"]) for i in items]


def encode(changes: Sequence[Change], notice: int = 0) -> str:
    payload = json.dumps({"n": node(), "q": notice, "c": _items(changes)}, separators=(",", ":"))
    if len(payload.encode()) > MAX_PAYLOAD:
        payload = json.dumps({"n": node(), "q": notice, "all": True})
    return payload


def decode(payload: str) -> tuple[str, int, list[Change] | None]:
    """The sending process, its notice number and its changes; ``None`` means "drop
    everything"."""
    data = json.loads(payload)
    notice = int(data.get("q", 0))
    if data.get("all"):
        return data["n"], notice, None
    return data["n"], notice, _changes(data["c"])


def _sender(name: str) -> int:
    return int(name, 16)


async def publish(conn: AsyncConnection, changes: Sequence[Change]) -> None:
    """Record the changes inside the writing transaction (told on commit)."""
    if not changes:
        return
    if conn.dialect.name == "postgresql":
        global _notices
        _notices += 1
        notice = _notices
        await conn.execute(select(func.pg_notify(CHANNEL, encode(changes, notice))))
        page = siblings.current()
        if page is not None:
            page.notified(_sender(node()), notice)
        return
    text = json.dumps(_items(changes), separators=(",", ":"))
    stamp = datetime.now(UTC).replace(tzinfo=None)
    result = await conn.execute(
        insert(change_log).values(node=node(), changes=text, created_time=stamp)
    )
    seq = result.inserted_primary_key[0] if result.inserted_primary_key else None
    if seq is not None and seq % 100 == 0:
        await conn.execute(delete(change_log).where(change_log.c.seq <= seq - KEEP_ROWS))


class SqliteChangeLog:
    """The rows of ``change_log`` other processes committed: a ``ChangeSource``.

    Asked before every message, so the question "did anyone commit?" must cost next to
    nothing. SQLite answers it with ``PRAGMA data_version``, which takes a read lock
    (tens of microseconds); here the first 48 bytes of the WAL index (the ``-shm`` file,
    sqlite.org/walformat.html) are compared instead, which every commit rewrites (its
    frame count, or its salt when the log restarts) before it returns. A torn or unusual
    read only looks like a change, and costs the real read; without the WAL index (not
    in WAL mode, or not mapped) every poll asks ``data_version``.
    """

    HEADER = 48

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=1.0
        )
        self._version = self._data_version()  # also opens the WAL index, if there is one
        self._file, self._index = _map_wal_index(path + "-shm", self.HEADER)
        self._header = self._index[: self.HEADER] if self._index is not None else b""
        found = self._conn.execute("SELECT max(seq) FROM change_log").fetchone()
        self._seq = int(found[0] or 0)

    def _data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def poll(self) -> list[Change] | None:
        if self._index is not None:
            header = self._index[: self.HEADER]
            if header == self._header:
                return []
            self._header = header
        else:
            version = self._data_version()
            if version == self._version:
                return []
            self._version = version
        rows = self._conn.execute(
            "SELECT seq, node, changes FROM change_log WHERE seq > ? ORDER BY seq", (self._seq,)
        ).fetchall()
        if not rows:
            return []
        gap = rows[0][0] != self._seq + 1
        self._seq = int(rows[-1][0])
        if gap:
            return None
        me = node()
        found: list[Change] = []
        for _, writer, text in rows:
            if writer != me:
                found += _changes(json.loads(text))
        return found

    def close(self) -> None:
        """After every other SQLite connection of this process to the store is closed:
        closing the WAL index's file ends this process's locks on it (see
        :func:`_map_wal_index`)."""
        self._conn.close()
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._file is not None:
            os.close(self._file)
            self._file = None


def _map_wal_index(path: str, size: int) -> tuple[int | None, mmap.mmap | None]:
    """The WAL index's file, opened, and its first ``size`` bytes mapped; both stay open
    until :meth:`SqliteChangeLog.close`.

    POSIX ends all of a process's locks on a file when the process closes any descriptor
    of it (sqlite.org/howtocorrupt.html, 2.2). Closing this one at once dropped the lock
    by which this process's SQLite connections tell others they use the index; the next
    process to open the store then took itself for the first, truncated the index and
    rebuilt it under them (a worker died of SIGBUS reading its mapping).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None, None
    try:
        if os.fstat(fd).st_size >= size:
            return fd, mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        pass
    return fd, None  # kept open all the same: it was opened, and closing it drops the locks


class SiblingNotices:
    """A ``ChangeSource`` for the workers of one ``serve`` on PostgreSQL: "everything may
    have changed" while a sibling has sent a notice the listener has not heard yet.

    A sibling announces a notice in the shared page before it commits, so the notice may
    also be one that is still to commit or that rolled back: forgetting everything once
    covers both, and the notice counts as heard from then on.
    """

    def __init__(self, page: siblings.Siblings, listener: ChangeListener) -> None:
        self.page = page
        self.heard = listener.heard

    def poll(self) -> list[Change] | None:
        behind = False
        for sender, notice in self.page.notices():
            if self.heard.get(sender, 0) < notice:
                self.heard[sender] = notice
                behind = True
        return None if behind else []


class ChangeListener:
    """LISTENs on PostgreSQL and hands other processes' changes to ``on_changes``."""

    def __init__(
        self,
        url: str,
        on_changes: Callable[[list[Change]], Any],
        on_gap: Callable[[], Any],
    ) -> None:
        parsed = make_url(url)
        self.dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self.on_changes = on_changes
        self.on_gap = on_gap
        self.ready = asyncio.Event()
        self.heard: dict[int, int] = {}
        """The last notice number heard from each sender."""

    def _receive(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            sender, notice, changes = decode(payload)
            number = _sender(sender)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed change notification")
            return
        if sender == node():
            return
        if notice > self.heard.get(number, 0):
            self.heard[number] = notice
        if changes is None:
            self.on_gap()
        else:
            self.on_changes(changes)

    async def run(self) -> None:
        import asyncpg

        first = True
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("change listener cannot connect (%s); retrying", exc)
                await asyncio.sleep(2)
                continue
            try:
                await conn.add_listener(CHANNEL, self._receive)
                if not first:
                    self.on_gap()
                first = False
                self.ready.set()
                while not conn.is_closed():
                    await asyncio.sleep(5)
                    await conn.execute("SELECT 1")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("change listener lost its connection (%s); reconnecting", exc)
            finally:
                self.ready.clear()
                if not conn.is_closed():
                    await conn.close()
            await asyncio.sleep(1)

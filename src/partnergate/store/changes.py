"""Telling every node of a fleet what a write changed, so each drops it from its cache.

On PostgreSQL a committed transaction carries a ``NOTIFY`` (sent by PostgreSQL only if and
when the transaction commits) on the channel ``partnergate_changes``; every node LISTENs
and invalidates what other nodes changed. A node that loses its listening connection clears
its whole cache once it is back, since it may have missed notifications. SQLite is one
node: the in-process listeners suffice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger("partnergate.store")

CHANNEL = "partnergate_changes"
MAX_PAYLOAD = 7000
"""PostgreSQL's NOTIFY payload limit is 8000 bytes; larger change lists say "everything"."""

NODE = uuid.uuid4().hex[:12]
"""This process, so it can skip its own notifications (it already invalidated)."""


@dataclass(frozen=True)
class Change:
    """An entity that a committed transaction created, changed or deleted."""

    entity_set: str
    key: dict[str, object]
    pid: str | None


def encode(changes: list[Change]) -> str:
    items = [
        {"s": c.entity_set, "k": {k: str(v) for k, v in c.key.items()}, "p": c.pid} for c in changes
    ]
    payload = json.dumps({"n": NODE, "c": items}, separators=(",", ":"))
    if len(payload.encode()) > MAX_PAYLOAD:
        payload = json.dumps({"n": NODE, "all": True})
    return payload


def decode(payload: str) -> tuple[str, list[Change] | None]:
    """The sending node and its changes; ``None`` means "drop everything"."""
    data = json.loads(payload)
    if data.get("all"):
        return data["n"], None
    return data["n"], [Change(i["s"], i["k"], i["p"]) for i in data["c"]]


async def publish(conn: AsyncConnection, changes: list[Change]) -> None:
    """Queue the notification inside the writing transaction (delivered on commit)."""
    if conn.dialect.name == "postgresql" and changes:
        await conn.execute(select(func.pg_notify(CHANNEL, encode(changes))))


class ChangeListener:
    """LISTENs on PostgreSQL and hands other nodes' changes to ``on_changes``."""

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

    def _receive(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            node, changes = decode(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed change notification")
            return
        if node == NODE:
            return
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

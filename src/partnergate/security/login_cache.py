"""Remembers successful password checks for a short time, so a sender that logs in with
HTTP Basic on every message does not pay for argon2 on every message.

The cache key is a keyed BLAKE2b hash (a MAC, RFC 7693 §2.5) of (kind, name, secret)
under a per-process random key: the secret itself is never kept. Each hit is still
confirmed against the account's current fingerprint (password hash and roles), so a
changed password, changed roles or a removed account take effect within milliseconds, on
every node. Senders that open many connections at once with the same credentials share
one check (:meth:`LoginCache.once`) instead of queueing one argon2 run each.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Entry(Generic[T]):
    value: T
    fingerprint: str
    expires: float


class LoginCache(Generic[T]):
    def __init__(self, ttl: float = 60.0, max_entries: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl = ttl
        self._max = max_entries
        self._entries: OrderedDict[bytes, Entry[T]] = OrderedDict()
        self._running: dict[bytes, asyncio.Future[Any]] = {}

    def _digest(self, kind: str, name: str, secret: str) -> bytes:
        message = "\0".join((kind, name, secret)).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(message, key=self._key, digest_size=32).digest()

    def lookup(self, kind: str, name: str, secret: str) -> Entry[T] | None:
        digest = self._digest(kind, name, secret)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry.expires < time.monotonic():
            del self._entries[digest]
            return None
        return entry

    def remember(self, kind: str, name: str, secret: str, value: T, fingerprint: str) -> None:
        digest = self._digest(kind, name, secret)
        self._entries[digest] = Entry(value, fingerprint, time.monotonic() + self._ttl)
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def forget(self, kind: str, name: str, secret: str) -> None:
        self._entries.pop(self._digest(kind, name, secret), None)

    async def once(self, kind: str, name: str, secret: str, check: Callable[[], Awaitable[R]]) -> R:
        """Run ``check``, or join the run already under way for the same credentials."""
        digest = self._digest(kind, name, secret)
        running = self._running.get(digest)
        if running is None:
            running = asyncio.ensure_future(check())
            self._running[digest] = running
            running.add_done_callback(lambda _: self._running.pop(digest, None))
        result: R = await asyncio.shield(running)
        return result

"""Remembers successful password checks for a short time, so a sender that logs in with
HTTP Basic on every message does not pay for argon2 on every message.

The cache key is an HMAC of (kind, name, secret) under a per-process random key: the
secret itself is never kept. Each hit is still confirmed against the account's current
fingerprint (password hash and roles), so a changed password, changed roles or a removed
account take effect at once, on every node.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


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

    def _digest(self, kind: str, name: str, secret: str) -> bytes:
        message = "\0".join((kind, name, secret)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

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

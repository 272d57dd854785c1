"""Failed logins, counted per user and address, per address, and per user.

Lives here: when a password check is not even tried. Must not know: HTTP, the store.

Within a sliding ``window`` (seconds) a node refuses, without checking the password:
- a user from one address after ``per_user_address`` failures of that user from there
  (guessing one user's password);
- any user from one address after ``per_address`` failures from there (spraying many
  users with common passwords);
- a user from anywhere after ``per_user`` failures of that user (guessing from many
  addresses). This one is higher, since it also locks the user's own attempts out;
  credentials the node remembers as correct (:mod:`.login_cache`) still pass.

Checks under way count as failures until they end, so a burst of concurrent guesses
cannot overshoot a limit. Failures live in the node's memory, or, with several worker
processes, in a small SQLite file they share (:class:`SharedFailures`), so that a guesser
gets no more tries by opening more connections; each node of a fleet counts its own, and
a restart forgets them. Checks under way are counted per process.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger("partnergate.security")

MAX_KEYS = 100_000
FAILURES_FILE = "logins.sqlite"
"""The name of :class:`SharedFailures`' file in the directory the workers share."""


@dataclass(frozen=True)
class Limits:
    per_user_address: int = 10
    per_address: int = 100
    per_user: int = 100
    window: int = 300


class Failures(Protocol):
    """Timestamps (``time.monotonic``, the same clock in every process) of failures by key."""

    def count(self, key: str, since: float) -> int: ...

    def oldest(self, key: str, since: float) -> float | None: ...

    def add(self, keys: list[str], now: float, since: float) -> None: ...

    def forget(self, key: str) -> None: ...


class MemoryFailures:
    """One process's failures, at most ``MAX_KEYS`` keys (the least recent go first)."""

    def __init__(self) -> None:
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def _since(self, key: str, since: float) -> deque[float] | None:
        times = self._times.get(key)
        if times is not None:
            while times and times[0] < since:
                times.popleft()
            if not times:
                del self._times[key]
                return None
        return times

    def count(self, key: str, since: float) -> int:
        times = self._since(key, since)
        return len(times) if times else 0

    def oldest(self, key: str, since: float) -> float | None:
        times = self._since(key, since)
        return times[0] if times else None

    def add(self, keys: list[str], now: float, since: float) -> None:
        for key in keys:
            times = self._times.get(key)
            if times is None:
                times = self._times[key] = deque()
                while len(self._times) > MAX_KEYS:
                    self._times.popitem(last=False)
            times.append(now)

    def forget(self, key: str) -> None:
        self._times.pop(key, None)


class SharedFailures:
    """Failures in a SQLite file that the worker processes of one server share.

    Failed logins are rare next to messages, and a check asks one indexed question, so
    the file (on the supervisor's temporary directory, in WAL mode, never synced) costs
    tens of microseconds where a password check costs tens of milliseconds. Should the
    file fail, the process counts in its own memory and says so once.
    """

    PRUNE_EVERY = 1000

    def __init__(self, path: str | Path) -> None:
        self._memory = MemoryFailures()
        self._broken = False
        self._added = 0
        try:
            self._db = self._open(path)
        except sqlite3.Error as exc:
            self._failed(exc)

    @staticmethod
    def _open(path: str | Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 1000")
        db.execute("PRAGMA synchronous = OFF")
        return db

    @classmethod
    def prepare(cls, path: str | Path) -> None:
        """Make the file, once, before the processes that share it start (a journal mode
        changes only without other connections)."""
        db = cls._open(path)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("CREATE TABLE IF NOT EXISTS failures (key TEXT NOT NULL, at REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS failures_key_at ON failures (key, at)")
        finally:
            db.close()

    def _failed(self, exc: sqlite3.Error) -> None:
        if not self._broken:
            self._broken = True
            log.error("shared login failure counts unavailable (%s); counting per process", exc)

    def count(self, key: str, since: float) -> int:
        if not self._broken:
            try:
                sql = "SELECT COUNT(*) FROM failures WHERE key = ? AND at >= ?"
                return int(self._db.execute(sql, (key, since)).fetchone()[0])
            except sqlite3.Error as exc:
                self._failed(exc)
        return self._memory.count(key, since)

    def oldest(self, key: str, since: float) -> float | None:
        if not self._broken:
            try:
                sql = "SELECT MIN(at) FROM failures WHERE key = ? AND at >= ?"
                found = self._db.execute(sql, (key, since)).fetchone()[0]
                return float(found) if found is not None else None
            except sqlite3.Error as exc:
                self._failed(exc)
        return self._memory.oldest(key, since)

    def add(self, keys: list[str], now: float, since: float) -> None:
        if not self._broken:
            try:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.executemany(
                        "INSERT INTO failures (key, at) VALUES (?, ?)", [(k, now) for k in keys]
                    )
                    self._added += 1
                    if self._added % self.PRUNE_EVERY == 0:
                        self._db.execute("DELETE FROM failures WHERE at < ?", (since,))
                return
            except sqlite3.Error as exc:
                self._failed(exc)
        self._memory.add(keys, now, since)

    def forget(self, key: str) -> None:
        if not self._broken:
            try:
                self._db.execute("DELETE FROM failures WHERE key = ?", (key,))
                return
            except sqlite3.Error as exc:
                self._failed(exc)
        self._memory.forget(key)


@dataclass(frozen=True)
class Throttled:
    retry_after: int
    reason: str


class LoginThrottle:
    def __init__(self, limits: Limits | None = None, failures: Failures | None = None) -> None:
        self.limits = limits or Limits()
        self._failures: Failures = failures if failures is not None else MemoryFailures()
        self._running: dict[str, int] = {}
        """Checks under way in this process, by key."""

    def _keys(self, kind: str, name: str, address: str) -> list[tuple[str, int, str]]:
        limits = self.limits
        return [
            (f"ua\0{kind}\0{name}\0{address}", limits.per_user_address, "this user from here"),
            (f"a\0{address}", limits.per_address, "this address"),
            (f"u\0{kind}\0{name}", limits.per_user, "this user"),
        ]

    def check(self, kind: str, name: str, address: str) -> Throttled | None:
        """Whether a login of ``name`` from ``address`` is to be refused untried."""
        now = time.monotonic()
        window = self.limits.window
        since = now - window
        for key, limit, what in self._keys(kind, name, address):
            if self._failures.count(key, since) + self._running.get(key, 0) >= limit:
                oldest = self._failures.oldest(key, since)
                retry = max(1, math.ceil(oldest + window - now)) if oldest is not None else 1
                return Throttled(
                    retry, f"too many failed logins for {what} ({limit} in {window} s)"
                )
        return None

    def start(self, kind: str, name: str, address: str) -> None:
        for key, _, _ in self._keys(kind, name, address):
            self._running[key] = self._running.get(key, 0) + 1

    def finish(
        self, kind: str, name: str, address: str, succeeded: bool, counted: bool = True
    ) -> None:
        """A check ended; ``counted=False``: it never ran (refused as busy, cancelled)."""
        now = time.monotonic()
        keys = self._keys(kind, name, address)
        for key, _, _ in keys:
            left = self._running.get(key, 0) - 1
            if left > 0:
                self._running[key] = left
            else:
                self._running.pop(key, None)
        if not counted:
            return
        if succeeded:
            self._failures.forget(keys[0][0])
        else:
            self._failures.add([key for key, _, _ in keys], now, now - self.limits.window)

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
cannot overshoot a limit. Counts live in the node's memory: each node of a fleet counts
its own, and a restart forgets them.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

MAX_KEYS = 100_000


@dataclass(frozen=True)
class Limits:
    per_user_address: int = 10
    per_address: int = 100
    per_user: int = 100
    window: int = 300


class _Counter:
    """Timestamps of failures by key, oldest first, and checks under way."""

    def __init__(self) -> None:
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.running: dict[str, int] = {}

    def count(self, key: str, since: float) -> int:
        times = self.failures.get(key)
        if times is not None:
            while times and times[0] < since:
                times.popleft()
            if not times:
                del self.failures[key]
        return (len(times) if times else 0) + self.running.get(key, 0)

    def retry_after(self, key: str, window: int, now: float) -> int:
        times = self.failures.get(key)
        return max(1, math.ceil(times[0] + window - now)) if times else 1

    def add(self, key: str, now: float) -> None:
        times = self.failures.get(key)
        if times is None:
            times = self.failures[key] = deque()
            while len(self.failures) > MAX_KEYS:
                self.failures.popitem(last=False)
        times.append(now)

    def forget(self, key: str) -> None:
        self.failures.pop(key, None)

    def start(self, key: str) -> None:
        self.running[key] = self.running.get(key, 0) + 1

    def stop(self, key: str) -> None:
        left = self.running.get(key, 0) - 1
        if left > 0:
            self.running[key] = left
        else:
            self.running.pop(key, None)


@dataclass(frozen=True)
class Throttled:
    retry_after: int
    reason: str


class LoginThrottle:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._counter = _Counter()

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
        since = now - self.limits.window
        for key, limit, what in self._keys(kind, name, address):
            if self._counter.count(key, since) >= limit:
                return Throttled(
                    self._counter.retry_after(key, self.limits.window, now),
                    f"too many failed logins for {what} ({limit} in {self.limits.window} s)",
                )
        return None

    def start(self, kind: str, name: str, address: str) -> None:
        for key, _, _ in self._keys(kind, name, address):
            self._counter.start(key)

    def finish(
        self, kind: str, name: str, address: str, succeeded: bool, counted: bool = True
    ) -> None:
        """A check ended; ``counted=False``: it never ran (refused as busy, cancelled)."""
        now = time.monotonic()
        keys = self._keys(kind, name, address)
        for key, _, _ in keys:
            self._counter.stop(key)
        if not counted:
            return
        if succeeded:
            self._counter.forget(keys[0][0])
        else:
            for key, _, _ in keys:
                self._counter.add(key, now)

"""Running argon2 checks fairly: a bounded queue per source address, served in turn.

A password check costs tens of milliseconds and 64 MiB by design, so only two run at a
time (:data:`~partnergate.security.passwords` workers). Without a queue discipline, a
hundred wrong guesses from one address queue a correct login from another address behind
all of them. Here each source has its own queue of at most ``per_source`` checks, the
workers take one check from each waiting source in turn, and a check that does not fit
is refused at once with :class:`Busy` (the caller answers 429) rather than held. Logins
remembered by :mod:`.login_cache` never get here.

An unknown account is checked against :func:`dummy_hash`, made with today's parameters,
so it costs what a wrong password costs and its answer time tells nothing.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass

from .passwords import hash_password, verify_password_off_loop

MAX_PENDING = 512
"""Checks waiting on the whole node before every new one is refused."""


class Busy(Exception):
    """Too many password checks are waiting for this source (or for the node)."""


@functools.cache
def dummy_hash() -> str:
    """A hash of a random password with today's parameters, for accounts that do not exist."""
    return hash_password(secrets.token_urlsafe(24))


@dataclass
class _Check:
    hashed: str
    password: str
    done: asyncio.Future[bool]


class PasswordChecks:
    def __init__(self, per_source: int = 16, workers: int = 2) -> None:
        self.per_source = per_source
        self.workers = workers
        self._queues: OrderedDict[str, deque[_Check]] = OrderedDict()
        self._pending = 0
        self._running = 0

    async def prepare(self) -> None:
        """Make the dummy hash off the event loop, before the first login needs it."""
        await asyncio.get_running_loop().run_in_executor(None, dummy_hash)

    async def verify(self, hashed: str | None, password: str, source: str) -> bool:
        """Whether ``password`` matches ``hashed``; None (no such account) is always False,
        after the same work. Raises :class:`Busy` when the check cannot be queued."""
        queue = self._queues.get(source)
        if (queue is not None and len(queue) >= self.per_source) or self._pending >= MAX_PENDING:
            raise Busy(source)
        if queue is None:
            queue = self._queues[source] = deque()
        check = _Check(hashed or dummy_hash(), password, asyncio.get_running_loop().create_future())
        queue.append(check)
        self._pending += 1
        self._pump()
        matched = await check.done
        return matched and hashed is not None

    def _pump(self) -> None:
        while self._running < self.workers and self._queues:
            source, queue = next(iter(self._queues.items()))
            check = queue.popleft()
            self._pending -= 1
            if queue:
                self._queues.move_to_end(source)
            else:
                del self._queues[source]
            if check.done.done():  # the caller went away
                continue
            self._running += 1
            task = asyncio.ensure_future(verify_password_off_loop(check.hashed, check.password))
            task.add_done_callback(functools.partial(self._finished, check))

    def _finished(self, check: _Check, task: asyncio.Future[bool]) -> None:
        self._running -= 1
        if not check.done.done():
            if task.cancelled():
                check.done.cancel()
            elif (exc := task.exception()) is not None:
                check.done.set_exception(exc)
            else:
                check.done.set_result(task.result())
        self._pump()


__all__ = ["Busy", "PasswordChecks", "dummy_hash"]

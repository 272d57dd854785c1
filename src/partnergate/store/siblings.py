"""The worker processes of one ``serve``: what each must know of the others' memory.

Each worker writes its message processing log behind its messages, in batches; a read of
the store must still see every message any worker has answered (``DirectoryStore``'s
``before_read``). So each worker says in a shared page whether entries wait in its
memory, and counts the batches it starts and finishes; a reader that finds a sibling
with entries waiting signals it (SIGUSR1) to write them now, and waits until a batch
that started after the read began has been written. When no sibling has entries
waiting, as between bursts, a read costs a look at the page.

On PostgreSQL each worker also says here which change notification it sent last, so a
sibling that has not heard it yet, when its next message arrives, forgets what it holds
instead of serving that message from what the write changed (``NOTIFY`` is delivered at
commit, but a loop busy with a message reads it later).

The page is anonymous shared memory made by the supervisor before it forks the workers.
Each field has one writer, its worker; an aligned 8-byte store is atomic here.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import signal
import struct
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("partnergate.store")

_SLOT = struct.Struct("=qqqqqqqq")
"""pid, entries waiting (0/1), batches started, batches written, serving (0/1), metric
syncs done, this process's change-notification sender (a number), its last notice"""
WAIT_SECONDS = 2.0
"""How long a read waits for a sibling's log at most (a stuck sibling delays no more)."""
FLUSH_SIGNAL = signal.SIGUSR1
SYNC_SIGNAL = signal.SIGUSR2
"""Asks a worker to hand the metric values it holds in memory to the shared files now."""
SYNC_SECONDS = 1.0

_current: Siblings | None = None


class Siblings:
    def __init__(self, count: int, directory: str | None = None) -> None:
        self.count = count
        self.directory = directory
        """A directory of the supervisor's that every worker may write files to."""
        self._page = mmap.mmap(-1, _SLOT.size * count)
        self.index: int | None = None

    def attach(self, index: int) -> None:
        """In the worker ``index``, after the fork: this is us."""
        global _current
        self.index = index
        _SLOT.pack_into(self._page, _SLOT.size * index, os.getpid(), 0, 0, 0, 0, 0, 0, 0)
        _current = self

    def clear(self, index: int) -> None:
        """In the supervisor: worker ``index`` has ended."""
        _SLOT.pack_into(self._page, _SLOT.size * index, 0, 0, 0, 0, 0, 0, 0, 0)

    def serving(self) -> None:
        """This worker has started and listens."""
        self._set(4, 1)

    def has_served(self, index: int) -> bool:
        """In the supervisor: whether worker ``index`` got as far as listening."""
        return bool(self._slot(index)[4])

    def _slot(self, index: int) -> tuple[int, ...]:
        return _SLOT.unpack_from(self._page, _SLOT.size * index)

    def _set(self, field: int, value: int) -> None:
        assert self.index is not None
        struct.pack_into("=q", self._page, _SLOT.size * self.index + 8 * field, value)

    # -- this worker's log ---------------------------------------------------------------

    def waiting(self, flag: bool) -> None:
        self._set(1, int(flag))

    def batch_started(self) -> None:
        self._set(2, self._slot(self.index)[2] + 1)  # type: ignore[arg-type]

    def batch_written(self) -> None:
        started = self._slot(self.index)[2]  # type: ignore[arg-type]
        self._set(3, started)

    # -- reading the others' ---------------------------------------------------------------

    async def flush_others(self) -> None:
        """Return once every entry a sibling held when this was called is written."""
        marks: list[tuple[int, int]] = []
        for index in range(self.count):
            if index == self.index:
                continue
            pid, waiting, started = self._slot(index)[:3]
            if not waiting or pid <= 0:
                continue
            try:
                os.kill(pid, FLUSH_SIGNAL)
            except ProcessLookupError:
                continue
            marks.append((index, started))
        deadline = time.monotonic() + WAIT_SECONDS
        for index, started in marks:
            while True:
                pid, waiting, _, written = self._slot(index)[:4]
                if not waiting or written > started:
                    break
                if time.monotonic() > deadline:
                    log.warning("worker %d did not write its message log in time", index)
                    return
                await asyncio.sleep(0.0005)

    def listen(self, flush: Callable[[], Awaitable[None]]) -> None:
        """In this worker's event loop: a sibling's signal writes the log at once."""
        loop = asyncio.get_running_loop()

        async def run() -> None:
            try:
                await flush()
            except Exception:
                log.exception("message processing log: writing on request failed")

        loop.add_signal_handler(FLUSH_SIGNAL, lambda: loop.create_task(run()))

    # -- change notifications --------------------------------------------------------------

    def notified(self, sender: int, notice: int) -> None:
        """This worker has sent (or is about to commit) change notice ``notice``."""
        self._set(6, sender)
        self._set(7, notice)

    def notices(self) -> list[tuple[int, int]]:
        """Each sibling's sender number and the last notice it sent."""
        found = []
        for index in range(self.count):
            if index != self.index:
                slot = self._slot(index)
                if slot[0] > 0 and slot[7]:
                    found.append((slot[6], slot[7]))
        return found

    # -- metrics ---------------------------------------------------------------------------

    async def sync_others(self) -> None:
        """Return once every serving sibling has handed over its metric values (a scrape
        answered by one worker counts what all of them did), or after ``SYNC_SECONDS``."""
        marks: list[tuple[int, int]] = []
        for index in range(self.count):
            if index == self.index:
                continue
            pid, _, _, _, serving, synced = self._slot(index)[:6]
            if pid <= 0 or not serving:
                continue
            try:
                os.kill(pid, SYNC_SIGNAL)
            except ProcessLookupError:
                continue
            marks.append((index, synced))
        deadline = time.monotonic() + SYNC_SECONDS
        for index, synced in marks:
            while self._slot(index)[5] == synced and self._slot(index)[0] > 0:
                if time.monotonic() > deadline:
                    log.warning("worker %d did not hand over its metrics in time", index)
                    return
                await asyncio.sleep(0.0005)

    def listen_sync(self, sync: Callable[[], None]) -> None:
        """In this worker's event loop: a sibling's signal runs ``sync`` at once."""
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                sync()
            finally:
                self._set(5, self._slot(self.index)[5] + 1)  # type: ignore[index]

        loop.add_signal_handler(SYNC_SIGNAL, run)


def current() -> Siblings | None:
    """This worker's siblings; None in a server of one process."""
    return _current

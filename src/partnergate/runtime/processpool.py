"""A few spawned worker processes for work that cannot be trusted to end or to let go.

Why processes: SaxonC holds the GIL for the whole of a transformation (measured: a 13 s
transform let a ticking thread run once) and offers no way to interrupt one, so a
stylesheet that loops would stop the event loop, or at best occupy a thread for ever.
A worker process that overruns its time limit is killed and a fresh one takes its place
on the next call; the event loop only waits on a pipe, from a thread of its own.

Lives here: starting, calling, killing and replacing workers. Must not know: Saxon,
flows. The worker's ``target(conn, *args)`` sends one message when it is ready, then
answers each request it receives with one reply, until the pipe closes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

START_TIMEOUT = 120.0
"""How long a new worker may take to start (Python, imports, Saxon's first processor)."""


class WorkerTimeout(Exception):
    """The call ran past its time limit; its worker was killed."""


class WorkerLost(Exception):
    """The worker ended without answering (crashed, or could not start)."""


class _Worker:
    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, *args), name=name, daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(START_TIMEOUT):
            self.kill()
            raise WorkerLost(f"{name} did not start within {START_TIMEOUT:g} s")
        try:
            self.conn.recv()
        except (EOFError, OSError):
            self.kill()
            raise WorkerLost(f"{name} ended while starting") from None

    def call(self, request: Any) -> Any:
        try:
            self.conn.send(request)
            return self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            raise WorkerLost("the worker ended without answering") from None

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class ProcessPool:
    """Up to ``size`` worker processes, started when first needed.

    :meth:`call` sends one request to an idle worker and waits for its reply for at most
    ``timeout`` seconds; a worker that overruns, crashes or whose caller is cancelled is
    killed, so no call ever leaves a worker busy with somebody else's message.
    """

    def __init__(
        self, target: Callable[..., None], args: tuple[Any, ...], *, size: int, name: str
    ) -> None:
        self.target = target
        self.args = args
        self.size = size
        self.name = name
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None
        self._threads = ThreadPoolExecutor(size, thread_name_prefix=name)
        self._closed = False

    async def call(self, request: Any, timeout: float) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        loop = asyncio.get_running_loop()
        async with self._slots:
            worker = self._take()
            if worker is None:
                worker = await loop.run_in_executor(self._threads, self._start)
            try:
                reply = await asyncio.wait_for(
                    loop.run_in_executor(self._threads, worker.call, request), timeout
                )
            except TimeoutError:
                await loop.run_in_executor(None, worker.kill)
                raise WorkerTimeout(f"no answer within {timeout:g} s") from None
            except BaseException:
                await asyncio.shield(loop.run_in_executor(None, worker.kill))
                raise
            self._give_back(worker)
            return reply

    def close(self) -> None:
        """Stop every idle worker (busy ones end when their pipe closes)."""
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> _Worker:
        return _Worker(self.target, self.args, self.name)

    def _take(self) -> _Worker | None:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.process.is_alive():
                    return worker
                worker.kill()
        return None

    def _give_back(self, worker: _Worker) -> None:
        if self._closed:
            worker.kill()
            return
        with self._lock:
            self._idle.append(worker)

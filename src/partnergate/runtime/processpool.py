"""A few spawned worker processes for work that cannot be trusted to end or to let go.

Why processes: SaxonC holds the GIL for the whole of a transformation (measured: a 13 s
transform let a ticking thread run once) and offers no way to interrupt one, so a
stylesheet that loops would stop the event loop, or at best occupy a thread for ever.
A worker process that overruns its time limit is killed and a fresh one takes its place
on the next call; the event loop only waits on a pipe, from a thread of its own.

Lives here: starting, calling, killing and replacing workers. Must not know: Saxon,
flows. The worker's ``target(conn, *args)`` sends one message when it is ready, then
answers each request it receives with one reply, until the pipe closes.

A worker is a fresh interpreter (``python -c``) that imports the target by name, not a
``multiprocessing`` child: spawn would run the parent's ``__main__`` script again in the
child, which breaks any program that embeds the runtime without a ``__main__`` guard.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

START_TIMEOUT = 120.0
"""How long a new worker may take to start (Python, imports, Saxon's first processor)."""


PR_SET_PDEATHSIG = 1
_BOOT = "from partnergate.runtime.processpool import worker_main; worker_main()"


def worker_main() -> None:
    """A worker interpreter's entry: the pipe's descriptor and the server's pid are its
    arguments; the target's module, name and arguments come as the first message."""
    conn = Connection(int(sys.argv[1]))
    die_with_parent(int(sys.argv[2]))
    module, name, args = conn.recv()
    getattr(importlib.import_module(module), name)(conn, *args)


def die_with_parent(parent: int) -> None:
    """Called first in a worker: the kernel kills it when the server process goes, even
    by ``kill -9``, so that no orphan keeps running a transform that never ends (Linux;
    elsewhere a worker ends when it next reads from its closed pipe)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the server already went while this worker started
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops workers itself


class WorkerTimeout(Exception):
    """The call ran past its time limit; its worker was killed."""


class WorkerLost(Exception):
    """The worker ended without answering (crashed, or could not start)."""


class _Worker:
    """One worker process. Started on the event loop's thread (the main thread), whose
    end is what ``PR_SET_PDEATHSIG`` watches; :meth:`wait_ready` blocks, on a thread."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        self.name = name
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
            self.conn = Connection(ours.detach())
        self.conn.send((target.__module__, target.__qualname__, args))

    def wait_ready(self) -> _Worker:
        name = self.name
        if not self.conn.poll(START_TIMEOUT):
            self.kill()
            raise WorkerLost(f"{name} did not start within {START_TIMEOUT:g} s")
        try:
            self.conn.recv()
        except (EOFError, OSError):
            self.kill()
            raise WorkerLost(f"{name} ended while starting") from None
        return self

    def call(self, request: Any) -> Any:
        try:
            self.conn.send(request)
            return self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            raise WorkerLost("the worker ended without answering") from None

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
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
        self._all: set[_Worker] = set()
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
                worker = self._start()
                try:
                    await loop.run_in_executor(self._threads, worker.wait_ready)
                except BaseException:
                    self._forget(worker)
                    raise
            try:
                reply = await asyncio.wait_for(
                    loop.run_in_executor(self._threads, worker.call, request), timeout
                )
            except TimeoutError:
                await loop.run_in_executor(None, self._forget, worker)
                raise WorkerTimeout(f"no answer within {timeout:g} s") from None
            except BaseException:
                await asyncio.shield(loop.run_in_executor(None, self._forget, worker))
                raise
            self._give_back(worker)
            return reply

    def close(self) -> None:
        """Stop every worker, busy ones too."""
        self._closed = True
        with self._lock:
            workers, self._all, self._idle = list(self._all), set(), []
        for worker in workers:
            worker.kill()
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> _Worker:
        worker = _Worker(self.target, self.args, self.name)
        with self._lock:
            self._all.add(worker)
        return worker

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()

    def _take(self) -> _Worker | None:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                self._all.discard(worker)
                worker.kill()
        return None

    def _give_back(self, worker: _Worker) -> None:
        if self._closed:
            self._forget(worker)
            return
        with self._lock:
            self._idle.append(worker)

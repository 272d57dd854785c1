"""What every benchmark needs: processes on free ports, a canned twin, a bounded load.

A figure only means something next to a baseline measured in the same run on the same
machine, so each benchmark starts the real server and a *canned twin*: a bare Starlette
app under the same uvicorn setup that answers with bytes captured from the real server.
The ratio between the two is what the benchmark is about; it says how much of the time
goes into partnergate itself rather than into uvicorn, the event loop and the client.

Run as a script, this module serves a canned twin (the benchmarks start it that way):
``python bench/common.py canned --http HOST:PORT --manifest FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import aiohttp
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from yarl import URL

ADMIN_ROLE = "AuthGroup_TenantPartnerDirectoryConfigurator"
LOOPBACK = "127.0.0.1"
T = TypeVar("T")


def free_port() -> int:
    """A port nobody listens on right now, on the loopback interface only."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@contextmanager
def interruptible() -> Iterator[None]:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt, so ``finally`` blocks clean up.

    SIGINT too, because a shell starts background jobs with SIGINT ignored.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- processes ---------------------------------------------------------------------------


@dataclass
class Service:
    """A server process that this run started, with its log."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time the process has used so far (Linux ``/proc``)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def start_service(
    stack: ExitStack,
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    health: str = "/health",
    timeout: float = 120.0,
) -> Service:
    """Start ``argv``, register its shutdown on ``stack``, and wait until ``health`` answers."""
    log_path = log_dir / f"{name}.log"
    log_file = stack.enter_context(open(log_path, "wb"))
    process = subprocess.Popen(
        list(argv), env=dict(env or os.environ), stdout=log_file, stderr=subprocess.STDOUT
    )
    service = Service(name, f"http://{LOOPBACK}:{port}", process, log_path)
    stack.callback(service.stop)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{service.log_tail()}")
        try:
            if httpx.get(service.url + health, timeout=1).status_code == 200:
                return service
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{name} did not answer within {timeout:.0f} s:\n{service.log_tail()}"
            )
        time.sleep(0.1)


def partnergate_cli(
    *args: str, env: Mapping[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``partnergate`` command as an operator would; fail loudly if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "partnergate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"partnergate {' '.join(args)} failed:\n{done.stderr}")
    return done


# -- the canned twin ---------------------------------------------------------------------


@dataclass(frozen=True)
class Canned:
    """One captured answer, served for requests whose method and path match."""

    method: str
    path: str
    """A regular expression that must match the whole (decoded) request path."""
    status: int
    headers: dict[str, str]
    body_file: str


KEPT_HEADERS = frozenset({"content-type", "dataserviceversion", "location"})
"""Captured headers the twin repeats; the rest (date, length) uvicorn and Starlette add."""


def capture(response: httpx.Response, method: str, path: str, body_file: Path) -> Canned:
    """Keep a real response's status, payload headers and exact body bytes for the twin."""
    body_file.write_bytes(response.content)
    headers = {k: v for k, v in response.headers.items() if k.lower() in KEPT_HEADERS}
    return Canned(method, path, response.status_code, headers, str(body_file))


def write_manifest(path: Path, answers: Sequence[Canned]) -> None:
    path.write_text(json.dumps([a.__dict__ for a in answers], indent=1))


def start_canned(stack: ExitStack, manifest: Path, log_dir: Path) -> Service:
    """Start the canned twin described by ``manifest`` as its own process."""
    port = free_port()
    argv = [sys.executable, __file__, "canned", "--http", f"{LOOPBACK}:{port}"]
    return start_service(
        stack, "baseline", [*argv, "--manifest", str(manifest)], port=port, log_dir=log_dir
    )


def canned_app(answers: Sequence[Canned]) -> Starlette:
    """A bare Starlette app: one catch-all route, a regex per answer, bytes from memory.

    It reads each request body completely, as any real endpoint must, and nothing else.
    """
    table = [
        (a.method, re.compile(a.path), a.status, a.headers, Path(a.body_file).read_bytes())
        for a in answers
    ]

    async def endpoint(request: Request) -> Response:
        await request.body()
        path = request.url.path
        for method, pattern, status, headers, body in table:
            if method == request.method and pattern.fullmatch(path):
                return Response(body, status, headers)
        return Response(b"no canned answer", 404)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    methods = sorted({a.method for a in answers} | {"GET"})
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/{path:path}", endpoint, methods=methods),
    ]
    return Starlette(routes=routes)


def serve_canned(http: str, manifest: Path) -> None:
    """Serve the twin as ``partnergate serve`` serves: the options of its uvicorn config,
    one process, uvicorn's choice of event loop (uvloop where installed), access log on."""
    host, _, port = http.rpartition(":")
    answers = [Canned(**item) for item in json.loads(manifest.read_text())]
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    config = uvicorn.Config(
        canned_app(answers),
        host=host,
        port=int(port),
        log_level="info",
        proxy_headers=False,
        server_header=False,
        access_log=True,
    )
    uvicorn.Server(config).run()


# -- load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request of a load: the target is sent exactly as written (already encoded)."""

    method: str
    target: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    expect: int = 200
    verify: Callable[[bytes], bool] | None = None
    """Checks the body too, where the status alone cannot tell success (``$batch``)."""


@dataclass
class Run:
    """What a load achieved within its bounds."""

    requests: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float | None = None
    """CPU time the server used meanwhile, when the platform tells."""
    client_cpu_seconds: float = 0.0
    """CPU time this process (the client) used meanwhile: near ``seconds`` means the
    client, not the server, set the pace."""

    @classmethod
    def combine(cls, runs: Sequence[Run]) -> Run:
        """Rounds of one load as a single run: totals, and every latency."""
        cpu = [r.cpu_seconds for r in runs]
        return cls(
            sum(r.requests for r in runs),
            sum(r.seconds for r in runs),
            [t for r in runs for t in r.latencies],
            None if None in cpu else sum(c for c in cpu if c is not None),
            sum(r.client_cpu_seconds for r in runs),
        )

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    def percentile_ms(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.cpu_seconds is None or not self.requests:
            return None
        return self.cpu_seconds * 1000 / self.requests


class UnexpectedAnswer(RuntimeError):
    """A measured server answered otherwise than the call expects."""


async def load(
    service: Service,
    make_call: Callable[[int], Call],
    *,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    warmup: int = 0,
) -> Run:
    """Send calls ``make_call(0)``, ``make_call(1)``… over ``concurrency`` keep-alive connections.

    The first ``warmup`` calls open the connections and warm the caches, uncounted; then
    ``max_requests`` calls or ``max_seconds``, whichever ends first, are measured. Any
    unexpected answer aborts the run: a rate of error answers would measure nothing.
    """
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=max(60.0, max_seconds * 2))
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:

        async def one(call: Call) -> float:
            url = URL(service.url + call.target, encoded=True)
            started = time.perf_counter()
            async with session.request(
                call.method, url, headers=dict(call.headers), data=call.body
            ) as response:
                body = await response.read()
            elapsed = time.perf_counter() - started
            if response.status != call.expect or (call.verify and not call.verify(body)):
                await asyncio.sleep(1)  # uvicorn logs a traceback after the 500 went out
                raise UnexpectedAnswer(
                    f"{service.name}: {call.method} {call.target[:120]} answered "
                    f"{response.status}, not {call.expect}: {body[:300]!r}\n"
                    f"{service.name}'s log ends:\n{service.log_tail()}"
                )
            return elapsed

        async def drive(start: int, stop: int, deadline: float, sink: list[float]) -> None:
            indexes = iter(range(start, stop))  # shared: each index goes to one worker

            async def worker() -> None:
                for index in indexes:
                    if loop.time() >= deadline:
                        return
                    sink.append(await one(make_call(index)))

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        if warmup:
            await drive(0, warmup, loop.time() + max_seconds, [])
        latencies: list[float] = []
        cpu_before = service.cpu_seconds()
        client_before = time.process_time()
        started = time.perf_counter()
        await drive(warmup, warmup + max_requests, loop.time() + max_seconds, latencies)
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - client_before
        cpu_after = service.cpu_seconds()
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Run(len(latencies), seconds, latencies, cpu, client_cpu)


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is there (uvicorn[standard] brings it): a cheaper client."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


# -- reporting ---------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with the numbers right-aligned: readable in a terminal and a README."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = (
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join([first, *rest]) + " |"

    rule = "|:" + "-" * (widths[0] + 1) + "|" + "|".join("-" * (w + 1) + ":" for w in widths[1:])
    return "\n".join([line(header), rule + "|", *(line(row) for row in rows)])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    canned = commands.add_parser("canned", help="serve canned answers (the baseline twin)")
    canned.add_argument("--http", required=True, metavar="HOST:PORT")
    canned.add_argument("--manifest", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.command == "canned":
        serve_canned(args.http, args.manifest)


if __name__ == "__main__":
    main()

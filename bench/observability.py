"""What observing a message costs: the metrics recorded for one routed message, and an
access log line, uvicorn's against ours. CPU time in this process, in the same run as a
baseline that does the same work unobserved.

``bench/route.py --setting log_level=info`` measures the same end to end, but on a
machine shared with other work its server CPU per message moves by more than these few
microseconds; this measures only what observing adds.

    .venv/bin/python bench/observability.py
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from partnergate import logs, metrics

STEPS = 5
"""Steps of the seed's sender flow."""
LOOKUPS = 3
"""Partner Directory reads of one message: the sender's partner, ADDRESS, USER."""


class _Step:
    def __init__(self, n: int) -> None:
        self.label = f"step {n} 'seed step {n}'"

    async def run(self, exchange: object, services: object) -> None:
        return None


class _Response:
    status = 200


class _Log:
    def __init__(self) -> None:
        self._pending: dict[str, object] = {}

    async def put(self, entry: str) -> None:
        self._pending[entry] = entry


class _Counted(_Log):
    put = metrics.queued_log_entry(_Log.put)  # type: ignore[assignment]


async def _call() -> _Response:
    return _Response()


_timed_call = metrics.timed_receiver_call(_call)


async def plain_message(steps: list[_Step], log: _Log, n: int) -> None:
    for step in steps:
        await step.run(None, None)
    await _call()
    await log.put(f"{n}")
    await log.put(f"{n}")
    if n % 64 == 0:
        log._pending.clear()


async def observed_message(steps: list[_Step], log: _Log, n: int) -> None:
    logs.bind_message(f"{n}", "Partner Directory sender", "Sender_BASIC")
    for step in steps:
        await metrics.run_step(step, "Partner Directory sender", None, None)
    for _ in range(LOOKUPS):
        metrics.directory_cache(True)
    await _timed_call()
    await log.put(f"{n}")
    await log.put(f"{n}")
    if n % 64 == 0:
        log._pending.clear()
    metrics.message_finished("Partner Directory sender", "COMPLETED")


def cpu_per_call(run: Callable[[int], Awaitable[None]], count: int) -> float:
    async def loop() -> float:
        started = time.process_time()
        for n in range(count):
            await run(n)
        return time.process_time() - started

    return asyncio.run(loop()) / count * 1e6


def uvicorn_access(stream_path: Path) -> logging.Logger:
    """uvicorn's access logger as ``serve`` configured it: its dictConfig, to a file."""
    from uvicorn.config import LOGGING_CONFIG

    logging.config.dictConfig(LOGGING_CONFIG)
    logger = logging.getLogger("uvicorn.access")
    handler = logger.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(stream_path, "w"))  # noqa: SIM115 - a benchmark's file
    logger.setLevel(logging.INFO)
    return logger


def access_cpu(emit: Callable[[], None], count: int) -> float:
    async def loop() -> float:  # our writer flushes on the event loop
        started = time.process_time()
        for _ in range(count):
            emit()
        return time.process_time() - started

    return asyncio.run(loop()) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    steps = [_Step(n) for n in range(1, STEPS + 1)]
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pg-obs-") as work:
        uv = uvicorn_access(Path(work) / "uvicorn.log")
        scope = {"client": ("127.0.0.1", 50000), "method": "POST", "path": "/http/x"}
        text_fd = os.open(Path(work) / "text.log", os.O_WRONLY | os.O_CREAT)
        json_fd = os.open(Path(work) / "json.log", os.O_WRONLY | os.O_CREAT)
        ours_text, ours_json = (
            logs.AccessWriter("text", text_fd),
            logs.AccessWriter("json", json_fd),
        )

        def uvicorn_line() -> None:
            # uvicorn's httptools protocol, on each response (get_client_addr, path, version)
            uv.info(
                '%s - "%s %s HTTP/%s" %d',
                "127.0.0.1:50000",
                "POST",
                "/http/partner_directory",
                "1.1",
                200,
            )

        def our_line(writer: logs.AccessWriter = ours_text) -> None:
            writer.write(scope["client"][0], scope["method"], scope["path"], 200, 1.234)

        for _ in range(args.rounds):
            plain = cpu_per_call(lambda n: plain_message(steps, _Log(), n), args.messages)
            counted_log = _Counted()
            observed = cpu_per_call(
                lambda n, log=counted_log: observed_message(steps, log, n), args.messages
            )
            results.setdefault("message, unobserved", []).append(plain)
            results.setdefault("message, metrics and log context", []).append(observed)
            lines = args.messages // 4
            results.setdefault("uvicorn access line", []).append(access_cpu(uvicorn_line, lines))
            results.setdefault("our access line, text", []).append(access_cpu(our_line, lines))
            results.setdefault("our access line, json", []).append(
                access_cpu(lambda writer=ours_json: our_line(writer), lines)
            )
    # the least disturbed round: other work on the machine only ever adds CPU time
    best = {name: min(values) for name, values in results.items()}
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, best of {args.rounds}")
    print("| what | CPU µs |")
    print("|---|---:|")
    for name, value in best.items():
        print(f"| {name} | {value:.2f} |")
    added = best["message, metrics and log context"] - best["message, unobserved"]
    print(f"\nmetrics per message: {added:.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

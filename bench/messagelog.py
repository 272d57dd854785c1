"""What the per-message processing log costs: the seed's sender flow at each log level.

The flow is the one of ``bench/route.py`` (Basic sender, Partner Directory lookups, a
call to a minimal receiver), run with its log level set to ``NONE`` (the entry only, the
baseline), ``INFO`` (the default: the entry and one line per step, with what it looked up
or called) and ``TRACE`` (also each step's headers and body before and after it). The
levels alternate within each round, so that other work on the machine weighs on each
as evenly as it can; the table shows each level's median round and divides its server
CPU per message by that of ``NONE`` measured in the same run.

    .venv/bin/python bench/messagelog.py                      # about two minutes
    .venv/bin/python bench/messagelog.py --seconds 5 --rounds 1
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx
from common import interruptible, start_service, table
from route import (
    LOOPBACK,
    SEND,
    Bounds,
    Measurement,
    Target,
    add_accounts,
    configure,
    free_port,
    greeting,
    measure,
    median_run,
    seed_environment,
    start_own_server,
)

FLOW = "Partner Directory sender"
LEVELS = ("NONE", "INFO", "TRACE")


def set_level(url: str, admin: str, level: str) -> None:
    with httpx.Client(base_url=url, auth=("admin", admin), timeout=60) as api:
        token = api.get("/api/v1/", headers={"X-CSRF-Token": "Fetch"}).headers["x-csrf-token"]
        done = api.put(
            f"/api/v1/FlowLogLevels('{FLOW}')",
            json={"LogLevel": level},
            headers={"X-CSRF-Token": token},
        )
        if done.status_code != 204:
            raise RuntimeError(f"setting {level} answered {done.status_code}: {done.text}")


def run(args: argparse.Namespace, work: Path, stack: ExitStack) -> str:
    load_before = os.getloadavg()[0]
    receiver = start_own_server(stack, "receiver", [], work)
    port = free_port()
    env, cert, _ = seed_environment(work, f"{LOOPBACK}:{port}", f"{LOOPBACK}:{free_port()}")
    words = add_accounts(env)
    argv = [sys.executable, "-m", "partnergate", "serve"]
    server = start_service(stack, "partnergate", argv, port=port, log_dir=work, env=env)
    configure(server, receiver, words, cert)
    basic = base64.b64encode(f"user_for_sender_basic:{words['user_for_sender_basic']}".encode())
    target = Target(
        "sender flow, Basic",
        "wrk",
        server,
        server.url + SEND,
        greeting("Sender_BASIC"),
        {"Authorization": "Basic " + basic.decode()},
    )
    bounds = Bounds(args.connections, args.seconds, args.warmup, 500_000)
    runs: dict[str, list[Measurement]] = {level: [] for level in LEVELS}
    for number in range(1, args.rounds + 1):
        print(f"round {number} of {args.rounds}", flush=True)
        for level in LEVELS:
            set_level(server.url, words["admin"], level)
            result = measure(target, bounds, work)
            runs[level].append(result)
            print(f"  {level:<6} {result.rate:9,.0f} msgs/s  {result.cpu_us or 0:7.1f} µs/msg")
    set_level(server.url, words["admin"], "INFO")
    medians = {level: median_run(found) for level, found in runs.items()}
    base = medians["NONE"].cpu_us or 0.0
    rows = []
    for level in LEVELS:
        m = medians[level]
        cpu = m.cpu_us or 0.0
        rows.append(
            [
                level,
                f"{m.rate:,.0f}",
                f"{m.p50_ms:.2f}",
                f"{cpu:.0f}",
                f"{cpu - base:+.0f}",
                f"{cpu / base:.2f}" if base else "-",
            ]
        )
    title = (
        f"{args.connections} kept-alive connections, {args.seconds:g} s per level, "
        f"medians of {args.rounds} rounds; {os.cpu_count()} cores, load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after"
    )
    header = ["log level", "msgs/s", "p50 ms", "server CPU µs/msg", "vs NONE µs", "÷ NONE"]
    return title + "\n\n" + table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    try:
        with interruptible(), ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pg-mpl-")))
            print(run(args, work, stack))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Mutual TLS on partnergate's TLS listener, next to a bare Python ``ssl`` + asyncio server.

Makes a development PKI, starts ``partnergate serve --https … --client-cert required`` and,
as the baseline, a plain asyncio server with the same certificate, key, CA bundle and
verification that answers every request with the bytes of ``GET /health``. Both run on
uvloop where it is installed, as ``partnergate serve`` does. Then, for each server in turn:

- full handshakes: a new connection per request (TCP, mutual TLS handshake without
  session resumption, ``GET /health``, close);
- kept-alive requests: ``GET /health`` over already open mutual TLS connections.

Each figure is printed with the server's CPU time per operation and the ratio
partnergate / baseline. Loopback only, bounded by ``--seconds``; everything it starts
and writes goes away at the end.

    .venv/bin/python bench/tls.py
    .venv/bin/python bench/tls.py --seconds 10 --key-type rsa
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from common import (
    LOOPBACK,
    Service,
    free_port,
    interruptible,
    partnergate_cli,
    run_async,
    start_service,
    table,
)

from partnergate.security import pki

REQUEST = f"GET /health HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\n".encode()
BODY = b'{"status":"ok"}'


@dataclass(frozen=True)
class Files:
    ca: Path
    server_chain: Path
    server_key: Path
    client_chain: Path
    client_key: Path


def make_pki(directory: Path, key_type: str) -> Files:
    kind = cast(pki.KeyType, key_type)
    ca = pki.init_ca(directory / "ca", key_type=kind)
    server = pki.issue_server(ca, directory / "out", [LOOPBACK], key_type=kind)
    client = pki.issue_client(ca, directory / "out", "bench", password="bench", key_type=kind)
    return Files(
        ca.cert_path, server.chain_path, server.key_path, client.chain_path, client.key_path
    )


# --- the baseline ---------------------------------------------------------------------------


def serve_baseline(port: int, files: Files) -> None:
    """A bare asyncio TLS server: partnergate's TLS settings, no HTTP framework."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0
    context.load_cert_chain(files.server_chain, files.server_key)
    context.load_verify_locations(files.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-type: application/json\r\n\r\n" % len(
        BODY
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(head + BODY)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(answer, LOOPBACK, port, ssl=context, backlog=2048)
        async with server:
            await server.serve_forever()

    run_async(main())


def start_baseline(stack: ExitStack, port: int, files: Files, work: Path) -> Service:
    argv = [sys.executable, __file__, "baseline", "--port", str(port), "--dir", str(work)]
    log_path = work / "baseline.log"
    log_file = stack.enter_context(open(log_path, "wb"))
    process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    service = Service("baseline", f"https://{LOOPBACK}:{port}", process, log_path)
    stack.callback(service.stop)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"baseline exited:\n{service.log_tail()}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return service
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"baseline did not start:\n{service.log_tail()}") from None
            time.sleep(0.05)


# --- the load -------------------------------------------------------------------------------


def client_context(files: Files) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=files.ca)
    context.load_cert_chain(files.client_chain, files.client_key)
    return context


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"unexpected answer: {head!r}")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    if await reader.readexactly(length) != BODY:
        raise RuntimeError("unexpected body")


async def connect(
    port: int, context: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host = LOOPBACK if context else None
    return await asyncio.open_connection(LOOPBACK, port, ssl=context, server_hostname=host)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, ssl.SSLError):
        pass


def handshake_worker(
    port: int, context: ssl.SSLContext | None
) -> Callable[[float], Awaitable[int]]:
    async def work(deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            reader, writer = await connect(port, context)
            await exchange(reader, writer)
            await close(writer)
            done += 1
        return done

    return work


def keepalive_worker(
    port: int, context: ssl.SSLContext | None
) -> Callable[[float], Awaitable[int]]:
    async def work(deadline: float) -> int:
        reader, writer = await connect(port, context)
        done = 0
        try:
            while time.perf_counter() < deadline:
                await exchange(reader, writer)
                done += 1
        finally:
            await close(writer)
        return done

    return work


@dataclass(frozen=True)
class Figure:
    per_second: float
    cpu_per_op: float | None
    """Server CPU seconds per operation, from /proc."""
    client_cpu_per_op: float
    """This process's CPU seconds per operation: when it nears 1 / rate, the client is
    the bottleneck."""


async def measure(
    worker: Callable[[float], Awaitable[int]],
    service: Service,
    concurrency: int,
    seconds: float,
    warmup: float,
) -> Figure:
    await asyncio.gather(*(worker(time.perf_counter() + warmup) for _ in range(concurrency)))
    cpu_before = service.cpu_seconds()
    client_before = time.process_time()
    started = time.perf_counter()
    counts = await asyncio.gather(*(worker(started + seconds) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    cpu_after = service.cpu_seconds()
    total = sum(counts)
    cpu = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / total
    return Figure(total / elapsed, cpu, client_cpu / total)


# --- the run --------------------------------------------------------------------------------


def start_partnergate(stack: ExitStack, files: Files, work: Path) -> tuple[Service, int]:
    http_port, https_port = free_port(), free_port()
    env = {**os.environ, "PARTNERGATE_DATA_DIR": str(work / "data")}
    db = f"sqlite:///{work / 'partnergate.db'}"
    partnergate_cli("--db", db, "db", "upgrade", env=env)
    argv = [
        sys.executable,
        "-m",
        "partnergate",
        "serve",
        "--db",
        db,
        "--http",
        f"{LOOPBACK}:{http_port}",
        "--https",
        f"{LOOPBACK}:{https_port}",
        "--tls-cert",
        str(files.server_chain),
        "--tls-key",
        str(files.server_key),
        "--client-ca",
        str(files.ca),
        "--client-cert",
        "required",
    ]
    service = start_service(stack, "partnergate", argv, port=http_port, log_dir=work, env=env)
    return service, https_port


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_cpu(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e6:,.0f} µs"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


@dataclass(frozen=True)
class Measure:
    label: str
    worker: Callable[[int, ssl.SSLContext | None], Callable[[float], Awaitable[int]]]
    tls: bool = True


MEASURES = [
    Measure("full mTLS handshakes/s (connect, GET /health, close)", handshake_worker),
    Measure("requests/s over kept-alive mTLS connections", keepalive_worker),
    Measure("requests/s over kept-alive plain HTTP (--http)", keepalive_worker, tls=False),
]


def run(args: argparse.Namespace, work: Path, stack: ExitStack) -> str:
    load = os.getloadavg()[0]
    files = make_pki(work, args.key_type)
    partnergate, https_port = start_partnergate(stack, files, work)
    http_port = int(partnergate.url.rsplit(":", 1)[1])
    baseline_port = free_port()
    baseline = start_baseline(stack, baseline_port, files, work)
    context = client_context(files)

    async def figures(measure_: Measure) -> tuple[Figure, Figure | None]:
        bounds = (args.concurrency, args.seconds, min(1.0, args.seconds))
        if not measure_.tls:
            return await measure(measure_.worker(http_port, None), partnergate, *bounds), None
        ours = await measure(measure_.worker(https_port, context), partnergate, *bounds)
        theirs = await measure(measure_.worker(baseline_port, context), baseline, *bounds)
        return ours, theirs

    rows = []
    for item in MEASURES:
        ours, theirs = run_async(figures(item))
        rows.append(row(item.label, ours.per_second, theirs and theirs.per_second, fmt_rate))
        rows.append(
            row(
                "  server CPU per operation", ours.cpu_per_op, theirs and theirs.cpu_per_op, fmt_cpu
            )
        )
        rows.append(
            row(
                "  client CPU per operation",
                ours.client_cpu_per_op,
                theirs and theirs.client_cpu_per_op,
                fmt_cpu,
            )
        )
    header = ["", "partnergate", "asyncio ssl server", "ratio"]
    note = (
        f"{args.key_type.upper()} keys, TLS {tls_version(https_port, context)}, "
        f"{args.concurrency} concurrent connections, {args.seconds:g} s per figure; "
        f"{os.cpu_count()} CPUs, load average {load:.1f} before the run; "
        f"Python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}"
    )
    return f"{table(header, rows)}\n\n{note}"


def row(
    label: str, ours: float | None, theirs: float | None, fmt: Callable[[float | None], str]
) -> list[str]:
    if theirs is None:
        return [label, fmt(ours), "-", "-"]
    return [label, fmt(ours), fmt(theirs), ratio(ours, theirs)]


def tls_version(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection((LOOPBACK, port)) as raw:
        with context.wrap_socket(raw, server_hostname=LOOPBACK) as tls:
            return str(tls.version()).replace("TLSv", "")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    baseline = commands.add_parser("baseline", help="serve the baseline (the benchmark does)")
    baseline.add_argument("--port", type=int, required=True)
    baseline.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=5.0, help="per figure; default 5")
    parser.add_argument("--concurrency", type=int, default=8, help="connections; default 8")
    parser.add_argument("--key-type", choices=["ec", "rsa"], default="ec")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "baseline":
        serve_baseline(args.port, baseline_files(args.dir))
        return
    with interruptible(), ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tls-")))
        print(run(args, work, stack))


def baseline_files(work: Path) -> Files:
    """The files :func:`make_pki` wrote to ``work``."""
    out = work / "out"
    return Files(
        work / "ca" / pki.CA_CERT,
        out / "server-chain.pem",
        out / "server.key",
        out / "bench-chain.pem",
        out / "bench.key",
    )


if __name__ == "__main__":
    main()

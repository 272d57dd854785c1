"""Partner Directory API throughput over SAP's 3,000,000 string parameters per tenant.

Fills a store through the real schema, starts ``partnergate serve`` and a canned twin
(a bare Starlette app under the same uvicorn setup, serving bytes captured from
partnergate), and drives both with the same requests: GET by key, a filtered page of one
partner's 100 parameters, and ``$batch`` change sets of 1000 creates. Each figure is
printed next to the twin's, so the ratio says what partnergate itself costs. partnergate
runs one worker, so that its CPU time per request is that of one process, as the twin's.

    .venv/bin/python bench/api.py                 # 3,000,000 rows, about three minutes
    .venv/bin/python bench/api.py --rows 100000   # a quick look
    .venv/bin/python bench/api.py --store postgresql   # a database of its own, dropped after
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from pathlib import Path
from urllib.parse import quote

import httpx
from common import (
    ADMIN_ROLE,
    LOOPBACK,
    Call,
    Canned,
    Run,
    Service,
    capture,
    free_port,
    interruptible,
    load,
    partnergate_cli,
    run_async,
    start_canned,
    start_service,
    table,
    write_manifest,
)
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from partnergate.store import database
from partnergate.store.tables import string_parameters

API = "/api/v1/"
FILL_CHUNK = 50_000
STAMP = datetime(2026, 1, 1, 12, 0, 0)
BATCH_PID = "BatchPartner_template"
"""Placeholder Pid in the ``$batch`` body template; each batch replaces it with a fresh one."""


@dataclass(frozen=True)
class Shape:
    """The filled data: ``rows`` parameters, ``per_partner`` of them under each Pid.

    Keys are zero-padded so that generation order is key order: the fill appends to the
    primary-key B-tree instead of splitting pages all over it.
    """

    rows: int
    per_partner: int

    @property
    def partners(self) -> int:
        return -(-self.rows // self.per_partner)

    @property
    def full_partners(self) -> int:
        """Partners that hold all ``per_partner`` parameters (a filtered page is full)."""
        return max(1, self.rows // self.per_partner)

    def pid(self, partner: int) -> str:
        return f"Partner_{partner:06d}"

    def key(self, row: int) -> tuple[str, str]:
        partner, index = divmod(row, self.per_partner)
        return self.pid(partner), f"Param_{index:04d}"

    def value(self, row: int) -> str:
        partner, index = divmod(row, self.per_partner)
        return f"https://partner{partner:06d}.example.com/cxf/receiver/param{index:04d}"


# -- filling the store -------------------------------------------------------------------


def fill_rows(shape: Shape, start: int, stop: int) -> list[dict[str, object]]:
    rows = []
    for n in range(start, stop):
        pid, ident = shape.key(n)
        rows.append(
            {
                "pid": pid,
                "id": ident,
                "value": shape.value(n),
                "created_by": "bench",
                "created_time": STAMP,
                "last_modified_by": "bench",
                "last_modified_time": STAMP,
            }
        )
    return rows


async def fill(url: str, shape: Shape) -> None:
    """Migrate the store, then bulk-insert the parameters through SQLAlchemy Core.

    Uses partnergate's own engine factory and migrations, so the schema and indexes are
    exactly those the server reads. On SQLite the fill's connection skips fsync: losing a
    half-filled benchmark store to a power cut costs nothing.
    """
    engine = database.create_engine(url)
    try:
        await database.upgrade(engine)
        async with engine.connect() as conn:
            if (await conn.execute(select(string_parameters.c.pid).limit(1))).first():
                raise SystemExit(f"{url} already holds string parameters; give an empty store")
            if engine.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA synchronous=OFF")
                await conn.exec_driver_sql("PRAGMA cache_size=-262144")
            statement = insert(string_parameters)
            for start in range(0, shape.rows, FILL_CHUNK):
                stop = min(shape.rows, start + FILL_CHUNK)
                await conn.execute(statement, fill_rows(shape, start, stop))
                await conn.commit()
            if engine.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                await conn.exec_driver_sql("ANALYZE string_parameters")
                await conn.commit()
    finally:
        await engine.dispose()


# -- requests ----------------------------------------------------------------------------


def entity_target(pid: str, ident: str) -> str:
    return f"{API}StringParameters(Pid='{pid}',Id='{ident}')?$format=json"


def page_target(pid: str) -> str:
    condition = quote(f"Pid eq '{pid}'")
    return f"{API}StringParameters?$filter={condition}&$format=json"


def batch_template(size: int) -> tuple[bytes, str]:
    """A ``$batch`` body with one change set of ``size`` creates under :data:`BATCH_PID`."""
    boundary, changeset = "batch_bench", "changeset_bench"
    lines = [f"--{boundary}", f"Content-Type: multipart/mixed; boundary={changeset}", ""]
    for index in range(size):
        body = (
            f'{{"Pid":"{BATCH_PID}","Id":"Param_{index:04d}",'
            f'"Value":"https://batch.example.com/cxf/receiver/param{index:04d}"}}'
        )
        lines += [
            f"--{changeset}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "POST StringParameters HTTP/1.1",
            "Content-Type: application/json",
            "Accept: application/json",
            "",
            body,
            "",
        ]
    lines += [f"--{changeset}--", "", f"--{boundary}--", ""]
    return "\r\n".join(lines).encode(), f"multipart/mixed; boundary={boundary}"


def batch_pid(n: int) -> str:
    return f"BatchPartner_{n:07d}"


def batch_succeeded(size: int) -> Callable[[bytes], bool]:
    """A failed change set still answers 202, with one error part: count the creates."""
    return lambda body: body.count(b"HTTP/1.1 201 Created") == size


@dataclass(frozen=True)
class Scenario:
    """One load, sent identically to partnergate and to the twin."""

    name: str
    unit: str
    calls: Callable[[], Callable[[int], Call]]
    """A fresh call factory per server, so both get the same sequence."""
    concurrency: int
    max_requests: int
    warmup: int
    per_request: int = 1
    """How many units one request is worth (creates per batch)."""
    latency: bool = False
    """Report the median latency in ms instead of a rate."""


def scenarios(args: argparse.Namespace, shape: Shape, bearer: str, basic: str) -> list[Scenario]:
    def keys(seed: int, n: int) -> list[tuple[str, str]]:
        rng = random.Random(seed)
        return [shape.key(rng.randrange(shape.rows)) for _ in range(n)]

    def pids(seed: int, n: int) -> list[str]:
        rng = random.Random(seed)
        return [shape.pid(rng.randrange(shape.full_partners)) for _ in range(n)]

    def by_key(auth: str, seed: int) -> Callable[[], Callable[[int], Call]]:
        picked = keys(seed, args.requests + 1000)
        headers = {"Authorization": auth}
        return lambda: lambda i: Call("GET", entity_target(*picked[i % len(picked)]), headers)

    def page(seed: int, n: int) -> Callable[[], Callable[[int], Call]]:
        picked = pids(seed, n)
        headers = {"Authorization": bearer}
        return lambda: lambda i: Call("GET", page_target(picked[i % len(picked)]), headers)

    template, content_type = batch_template(args.batch_size)
    batch_headers = {"Authorization": bearer, "Content-Type": content_type}
    numbers = count()
    check = batch_succeeded(args.batch_size)

    def batches() -> Callable[[int], Call]:
        def call(_: int) -> Call:
            body = template.replace(BATCH_PID.encode(), batch_pid(next(numbers)).encode())
            return Call("POST", API + "$batch", batch_headers, body, 202, check)

        return call

    c = args.concurrency
    return [
        Scenario("GET by key, bearer", "req/s", by_key(bearer, 1), c, args.requests, 300),
        Scenario("GET by key, Basic", "req/s", by_key(basic, 2), c, args.requests, 300),
        Scenario(
            f"filtered page ({shape.per_partner} rows)",
            "req/s",
            page(3, args.requests + 1000),
            c,
            args.requests,
            200,
        ),
        Scenario(
            "filtered page, 1 client",
            "median ms",
            page(4, args.latency_samples + 100),
            1,
            args.latency_samples,
            50,
            latency=True,
        ),
        Scenario(
            f"$batch of {args.batch_size} creates, {args.batch_concurrency} at a time",
            "batches/s",
            batches,
            args.batch_concurrency,
            args.max_batches,
            1,
            per_request=args.batch_size,
        ),
    ]


# -- running -----------------------------------------------------------------------------


@dataclass
class Result:
    scenario: Scenario
    partnergate: Run
    baseline: Run


def describe(run: Run) -> str:
    """One line per run, with the CPU each side spent: who was the bottleneck."""
    text = (
        f"{run.rate:9.1f} req/s, median {run.median_ms:.2f} ms, "
        f"p99 {run.percentile_ms(99):.2f} ms, {run.requests} requests in {run.seconds:.1f} s; "
        f"CPU ms/request: client {run.client_cpu_seconds * 1000 / max(run.requests, 1):.2f}"
    )
    cpu = run.cpu_ms_per_request
    return text + (f", server {cpu:.2f}" if cpu is not None else "")


def figure(run: Run, scenario: Scenario) -> float:
    return run.median_ms if scenario.latency else run.rate


async def measure(
    scenario: Scenario, servers: Sequence[Service], seconds: float, rounds: int
) -> dict[str, Run]:
    """Take turns: each server gets ``rounds`` slices of the load, alternating, so that
    other work on the machine weighs on both alike. Later slices continue the sequence of
    calls instead of repeating it, and only the first one warms up."""
    limit = -(-scenario.max_requests // rounds)
    stride = limit + scenario.warmup
    factories = {server.name: scenario.calls() for server in servers}
    slices: dict[str, list[Run]] = {server.name: [] for server in servers}
    for turn in range(rounds):
        for server in servers:
            factory = factories[server.name]
            run = await load(
                server,
                lambda i, factory=factory, offset=turn * stride: factory(i + offset),
                concurrency=scenario.concurrency,
                max_requests=limit,
                max_seconds=seconds / rounds,
                warmup=scenario.warmup if turn == 0 else 0,
            )
            slices[server.name].append(run)
    runs = {name: Run.combine(parts) for name, parts in slices.items()}
    for name, run in runs.items():
        print(f"  {name:<12} {describe(run)}", flush=True)
    return runs


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def report(results: Sequence[Result], shape: Shape, store: str, load_before: float) -> str:
    """The summary table; the CPU columns stay comparable when other work shares the machine."""
    header = ["load", "unit", "partnergate", "baseline", "ratio", "CPU ms/req", "baseline CPU"]
    rows = []
    for result in results:
        s, ours, theirs = result.scenario, result.partnergate, result.baseline
        mine, base = figure(ours, s), figure(theirs, s)
        cpu = [ours.cpu_ms_per_request, theirs.cpu_ms_per_request]
        rows.append(
            [s.name, s.unit, fmt(mine), fmt(base), f"{mine / base:.3g}"]
            + ["-" if c is None else fmt(c) for c in cpu]
        )
        if s.per_request != 1:
            each = [fmt(mine * s.per_request), fmt(base * s.per_request)]
            rows.append(["", "creates/s", *each, "", "", ""])
    machine = (
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the loads"
    )
    title = f"{shape.rows:,} string parameters ({shape.partners:,} partners), {store}, {machine}"
    return f"{title}\n\n{table(header, rows)}\n\nratio: partnergate / baseline"


def token(service: Service, client_id: str, secret: str) -> str:
    response = httpx.post(
        service.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=60,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def capture_answers(
    service: Service, shape: Shape, headers: dict[str, str], batch_size: int, work: Path
) -> list[Canned]:
    """One real answer of each kind, the exact bytes the twin will serve."""
    with httpx.Client(base_url=service.url, headers=headers, timeout=300) as client:
        pid, ident = shape.key(shape.rows // 2)
        entity = client.get(entity_target(pid, ident))
        page = client.get(page_target(pid))
        template, content_type = batch_template(batch_size)
        body = template.replace(BATCH_PID.encode(), b"CapturePartner")
        batch = client.post(API + "$batch", content=body, headers={"Content-Type": content_type})
    for response in (entity, page):
        if response.status_code != 200:
            raise RuntimeError(f"capturing {response.request.url}: {response.status_code}")
    if batch.status_code != 202 or not batch_succeeded(batch_size)(batch.content):
        raise RuntimeError(f"capturing $batch: {batch.status_code} {batch.text[:500]}")
    return [
        capture(entity, "GET", r"/api/v1/StringParameters\(.*\)", work / "entity.json"),
        capture(page, "GET", r"/api/v1/StringParameters", work / "page.json"),
        capture(batch, "POST", r"/api/v1/\$batch", work / "batch.multipart"),
    ]


@contextmanager
def postgresql_database(server: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server at ``server``, dropped afterwards."""
    import asyncpg

    name = f"pg_bench_api_{secrets.token_hex(4)}"
    admin = make_url(server).set(drivername="postgresql", database="postgres")
    dsn = admin.render_as_string(hide_password=False)

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run(args: argparse.Namespace, work: Path, stack: ExitStack) -> str:
    shape = Shape(args.rows, args.per_partner)
    url = args.db
    if url is None and args.store == "postgresql":
        url = stack.enter_context(postgresql_database(args.pg_server))
    url = url or f"sqlite:///{work / 'partnergate.db'}"
    store = make_url(url).get_backend_name()
    print(f"filling {shape.rows:,} string parameters into {store} ...", flush=True)
    started = time.perf_counter()
    asyncio.run(fill(url, shape))
    took = time.perf_counter() - started
    print(f"filled in {took:.1f} s ({shape.rows / took:,.0f} rows/s)", flush=True)

    port = free_port()
    env = {
        **os.environ,
        "PARTNERGATE_DB": url,
        "PARTNERGATE_HTTP": f"{LOOPBACK}:{port}",
        "PARTNERGATE_DATA_DIR": str(work / "data"),
        "PARTNERGATE_WORKERS": "1",
    }
    user, password = "bench_admin", secrets.token_urlsafe(12)
    client_id, secret = "bench_client", secrets.token_urlsafe(18)
    partnergate_cli(
        "users", "add", user, "--role", ADMIN_ROLE, "--password-stdin",
        env=env, stdin=password + "\n",
    )  # fmt: skip
    partnergate_cli(
        "clients", "add", client_id, "--role", ADMIN_ROLE, "--secret-stdin",
        env=env, stdin=secret + "\n",
    )  # fmt: skip
    argv = [sys.executable, "-m", "partnergate", "serve"]
    server = start_service(stack, "partnergate", argv, port=port, log_dir=work, env=env)
    bearer = "Bearer " + token(server, client_id, secret)
    basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    answers = capture_answers(server, shape, {"Authorization": bearer}, args.batch_size, work)
    manifest = work / "canned.json"
    write_manifest(manifest, answers)
    baseline = start_canned(stack, manifest, work)

    load_before = os.getloadavg()[0]
    results = []
    for scenario in scenarios(args, shape, bearer, basic):
        print(f"{scenario.name} ({scenario.concurrency} connections)", flush=True)
        runs = run_async(measure(scenario, [server, baseline], args.seconds, args.rounds))
        results.append(Result(scenario, runs["partnergate"], runs["baseline"]))
    return report(results, shape, store, load_before)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Partner Directory API requests/s against a canned twin in the same run."
    )
    parser.add_argument("--rows", type=int, default=3_000_000, help="string parameters to fill")
    parser.add_argument("--per-partner", type=int, default=100, help="parameters per Pid")
    parser.add_argument("--db", metavar="URL", help="an empty store; default a temporary SQLite")
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="without --db: a temporary SQLite file, or a database of its own on --pg-server",
    )
    parser.add_argument(
        "--pg-server",
        metavar="URL",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server for --store postgresql",
    )
    parser.add_argument("--seconds", type=float, default=12.0, help="time limit per load")
    parser.add_argument(
        "--rounds", type=int, default=3, help="turns each server takes within a load"
    )
    parser.add_argument("--requests", type=int, default=50_000, help="request limit per load")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    parser.add_argument(
        "--latency-samples", type=int, default=500, help="requests of the single-client load"
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="creates per change set")
    parser.add_argument(
        "--batch-concurrency",
        type=int,
        default=1,
        help="change sets in flight; a store has one writer at a time, so 1 measures it",
    )
    parser.add_argument("--max-batches", type=int, default=1000, help="request limit of $batch")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.per_partner < 1:
        parser.error("--rows and --per-partner must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        with interruptible(), ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pg-bench-")))
            summary = run(args, work, stack)
    except KeyboardInterrupt:
        sys.exit("interrupted; servers stopped and temporary files removed")
    print()
    print(summary)


if __name__ == "__main__":
    main()

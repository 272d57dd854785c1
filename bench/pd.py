"""Partner Directory as code at SAP's scale: export and import against a plain bulk insert.

For each size (partners × string parameters), four phases run, each in a process of its
own so its peak memory is its own:

* ``insert``: the baseline, the same rows written with one multi-row ``INSERT`` per chunk
  into an empty store, in one transaction (what the store costs at the least);
* ``history``: a second baseline, the same bulk insert plus one change-history entry per
  row, written as the store writes them (what any import that keeps history costs at the
  least);
* ``export``: ``pd export`` of the first store into a folder (one read transaction);
* ``import``: ``pd import`` of the folder into another empty store (one write transaction,
  every row through the store's own write functions, rules and history).

Times are printed as ratios to the baselines measured in the same run, wall clock and the
process's CPU time (which on SQLite includes the database's work; on a shared machine it
moves less than the wall clock). Peak memory (RSS) per phase, for every size, shows
whether memory grows with the directory.

    .venv/bin/python bench/pd.py                           # 3,000 and 30,000 partners × 100
    .venv/bin/python bench/pd.py --sizes 300,3000          # smaller: is memory flat?
    .venv/bin/python bench/pd.py --db postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import insert

from partnergate.security.secretbox import SecretBox
from partnergate.store import audit, database
from partnergate.store.directory import DirectoryStore
from partnergate.store.tables import string_parameters

CHUNK = 10_000
STAMP = datetime(2026, 1, 1, 12, 0, 0)


def rows(partners: int, params: int):  # type: ignore[no-untyped-def]
    for p in range(partners):
        pid = f"Partner_{p:06d}"
        for i in range(params):
            yield {
                "pid": pid,
                "id": f"PARAM_{i:03d}",
                "value": f"https://receiver-{p}.example/cxf/{i}?q=ü",
                "created_by": "bench",
                "created_time": STAMP,
                "last_modified_by": "bench",
                "last_modified_time": STAMP,
            }


async def phase_insert(db: str, partners: int, params: int, history: bool = False) -> None:
    engine = database.create_engine(db)
    await database.upgrade(engine)
    try:
        async with database.begin(engine) as conn:
            recorder = audit.Recorder()
            batch: list[dict[str, object]] = []
            for row in rows(partners, params):
                batch.append(row)
                if len(batch) == CHUNK:
                    await _write(conn, batch, recorder if history else None)
                    batch = []
            if batch:
                await _write(conn, batch, recorder if history else None)
    finally:
        await engine.dispose()


async def _write(  # type: ignore[no-untyped-def]
    conn, batch: list[dict[str, object]], recorder: audit.Recorder | None
) -> None:
    await conn.execute(insert(string_parameters), batch)
    if recorder is None:
        return
    for row in batch:
        key = {"Pid": row["pid"], "Id": row["id"]}
        after = audit.snapshot("StringParameters", {**key, "Value": row["value"]})
        recorder.record("StringParameters", key, None, after, "bench")
    await recorder.spill(conn, STAMP)


def _store(engine, key: Path) -> DirectoryStore:  # type: ignore[no-untyped-def]
    return DirectoryStore(engine, SecretBox.from_key_file(key))


async def phase_export(db: str, folder: Path, key: Path) -> None:
    from partnergate.pdcode import local

    engine = database.create_engine(db)
    try:
        await local.export(_store(engine, key), folder)
    finally:
        await engine.dispose()


async def phase_import(db: str, folder: Path, key: Path) -> None:
    from partnergate.pdcode import local

    engine = database.create_engine(db)
    await database.upgrade(engine)
    try:
        outcome = await local.import_(_store(engine, key), folder, keep_ops=False)
        assert outcome.counts["create"] > 0
    finally:
        await engine.dispose()


def run_phase(args: argparse.Namespace) -> None:
    started, cpu = time.perf_counter(), time.process_time()
    if args.phase in ("insert", "history"):
        asyncio.run(phase_insert(args.db, args.partners, args.params, args.phase == "history"))
    elif args.phase == "export":
        asyncio.run(phase_export(args.db, Path(args.dir), Path(args.key)))
    else:
        asyncio.run(phase_import(args.db, Path(args.dir), Path(args.key)))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": peak / 1024}))


def _fresh_db(base: str | None, tmp: Path) -> tuple[str, str | None]:
    if base is None or base.startswith("sqlite"):
        return f"sqlite:///{tmp / (uuid.uuid4().hex[:8] + '.db')}", None
    name = f"pd_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(base, f'CREATE DATABASE "{name}"'))
    return f"{base.rsplit('/', 1)[0]}/{name}", name


async def _pg(base: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _child(*args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="3000,30000", help="partner counts, comma-separated")
    parser.add_argument("--params", type=int, default=100, help="string parameters each")
    parser.add_argument("--db", help="PostgreSQL URL of a database to create stores from")
    phases = ["insert", "history", "export", "import"]
    parser.add_argument("--phase", choices=phases, help=argparse.SUPPRESS)
    parser.add_argument("--partners", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run_phase(args)
        return
    print(
        f"{'rows':>10} {'phase':<8} {'seconds':>8} {'× insert':>9} {'× history':>9} "
        f"{'CPU s':>7} {'CPU × insert':>12} {'CPU × history':>13} {'peak MiB':>9}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="pd-bench-") as tmp_name:
            tmp = Path(tmp_name)
            key = tmp / "credentials.key"
            made: list[str] = []
            figures: dict[str, dict[str, float]] = {}
            try:
                stores = {}
                for name in ("source", "history", "target"):
                    stores[name], pg_name = _fresh_db(args.db, tmp)
                    made += [pg_name] if pg_name else []
                common = ["--key", str(key), "--dir", str(tmp / "pd")]
                shape = ["--partners", str(size), "--params", str(args.params)]
                figures["insert"] = _child("--phase", "insert", "--db", stores["source"], *shape)
                figures["history"] = _child("--phase", "history", "--db", stores["history"], *shape)
                figures["export"] = _child("--phase", "export", "--db", stores["source"], *common)
                figures["import"] = _child("--phase", "import", "--db", stores["target"], *common)
            finally:
                for name in made:
                    asyncio.run(_pg(args.db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            total = size * args.params
            base, hist = figures["insert"], figures["history"]
            for phase, f in figures.items():
                print(
                    f"{total:>10,} {phase:<8} {f['seconds']:>8.1f} "
                    f"{f['seconds'] / base['seconds']:>9.2f} "
                    f"{f['seconds'] / hist['seconds']:>9.2f} {f['cpu']:>7.1f} "
                    f"{f['cpu'] / base['cpu']:>12.2f} {f['cpu'] / hist['cpu']:>13.2f} "
                    f"{f['peak_mib']:>9.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""Partner Directory as code at SAP's scale: export and import against a plain bulk insert.

For each size (partners × string parameters), three phases run, each in a process of its
own so its peak memory is its own:

* ``insert``: the baseline, the same rows written with one multi-row ``INSERT`` per chunk
  into an empty store, in one transaction (what the store costs at the least);
* ``export``: ``pd export`` of that store into a folder (one read transaction);
* ``import``: ``pd import`` of the folder into another empty store (one write transaction,
  every row through the store's own write functions and rules).

Times are printed as ratios to the baseline measured in the same run; peak memory (RSS)
per phase, for every size, shows whether memory grows with the directory.

    .venv/bin/python bench/pd.py                           # 30,000 × 100 (3,000,000 rows)
    .venv/bin/python bench/pd.py --sizes 1000,3000         # two sizes: is memory flat?
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
from partnergate.store import database
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


async def phase_insert(db: str, partners: int, params: int) -> None:
    engine = database.create_engine(db)
    await database.upgrade(engine)
    try:
        async with database.begin(engine) as conn:
            batch: list[dict[str, object]] = []
            for row in rows(partners, params):
                batch.append(row)
                if len(batch) == CHUNK:
                    await conn.execute(insert(string_parameters), batch)
                    batch = []
            if batch:
                await conn.execute(insert(string_parameters), batch)
    finally:
        await engine.dispose()


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
    started = time.perf_counter()
    if args.phase == "insert":
        asyncio.run(phase_insert(args.db, args.partners, args.params))
    elif args.phase == "export":
        asyncio.run(phase_export(args.db, Path(args.dir), Path(args.key)))
    else:
        asyncio.run(phase_import(args.db, Path(args.dir), Path(args.key)))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024}))


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
    parser.add_argument("--sizes", default="30000", help="partner counts, comma-separated")
    parser.add_argument("--params", type=int, default=100, help="string parameters each")
    parser.add_argument("--db", help="PostgreSQL URL of a database to create stores from")
    parser.add_argument("--phase", choices=["insert", "export", "import"], help=argparse.SUPPRESS)
    parser.add_argument("--partners", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run_phase(args)
        return
    print(f"{'rows':>10} {'phase':<7} {'seconds':>9} {'× insert':>9} {'rows/s':>9} {'peak MiB':>9}")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="pd-bench-") as tmp_name:
            tmp = Path(tmp_name)
            key = tmp / "credentials.key"
            made: list[str] = []
            try:
                source, name = _fresh_db(args.db, tmp)
                made += [name] if name else []
                target, name = _fresh_db(args.db, tmp)
                made += [name] if name else []
                common = ["--key", str(key), "--dir", str(tmp / "pd")]
                figures = {
                    "insert": _child(
                        "--phase",
                        "insert",
                        "--db",
                        source,
                        "--partners",
                        str(size),
                        "--params",
                        str(args.params),
                    ),  # fmt: skip
                    "export": _child("--phase", "export", "--db", source, *common),
                    "import": _child("--phase", "import", "--db", target, *common),
                }
            finally:
                for name in made:
                    asyncio.run(_pg(args.db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            total = size * args.params
            base = figures["insert"]["seconds"]
            for phase, f in figures.items():
                print(
                    f"{total:>10,} {phase:<7} {f['seconds']:>9.1f} {f['seconds'] / base:>9.2f} "
                    f"{total / f['seconds']:>9,.0f} {f['peak_mib']:>9.0f}"
                )


if __name__ == "__main__":
    main()

"""What recording the change history costs a write, at the store.

Runs the same small writes (create, then update, of a string parameter: one transaction
each) through ``DirectoryStore`` with the history recorded and with its one INSERT left
out, alternating, in one run, and prints the ratio of the best rounds. Figures from a busy
machine swing widely; compare ratios, not seconds.

    .venv/bin/python bench/history.py                         # SQLite in a temporary file
    .venv/bin/python bench/history.py --db postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time

from partnergate.security.secretbox import SecretBox
from partnergate.store import audit, database
from partnergate.store.directory import DirectoryStore


async def _round(store: DirectoryStore, writes: int, recorded: bool) -> float:
    original = audit.Recorder.write
    if not recorded:

        async def skip(self: audit.Recorder, conn: object, stamp: object) -> None:
            return None

        audit.Recorder.write = skip  # type: ignore[method-assign]
    pid = "Bench_" + secrets.token_hex(4)
    try:
        start = time.perf_counter()
        for i in range(writes // 2):
            key = {"Pid": pid, "Id": f"P{i}"}
            await store.create("StringParameters", {**key, "Value": "v"}, "bench")
            await store.update("StringParameters", key, {"Value": "w"}, "bench")
        return time.perf_counter() - start
    finally:
        audit.Recorder.write = original  # type: ignore[method-assign]


async def main(db: str, writes: int, rounds: int) -> None:
    engine = database.create_engine(db)
    await database.upgrade(engine)
    store = DirectoryStore(engine, SecretBox(secrets.token_bytes(32)))
    best = {False: float("inf"), True: float("inf")}
    try:
        for _ in range(rounds):
            for recorded in (False, True):
                best[recorded] = min(best[recorded], await _round(store, writes, recorded))
    finally:
        await engine.dispose()
    print(f"{engine.dialect.name}: {writes} writes, best of {rounds} rounds")
    print(f"  without history: {best[False] * 1e6 / writes:8.0f} µs a write")
    print(f"  with history:    {best[True] * 1e6 / writes:8.0f} µs a write")
    print(f"  ratio:           {best[True] / best[False]:8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=f"sqlite:///{tempfile.mkdtemp()}/history.db")
    parser.add_argument("--writes", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.db, args.writes, args.rounds))

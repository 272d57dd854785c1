"""A worker's look at SQLite's WAL index keeps SQLite's locks on it.

POSIX ends all of a process's locks on a file when the process closes any descriptor of
it. Each process using a SQLite store in WAL mode holds a read lock on one byte of the
index (the "DMS" byte); a process that finds nobody holding it takes itself for the
first, truncates the index and rebuilds it, under the feet of connections that still use
it (a worker died of SIGBUS that way). The change log maps the index's header to ask
cheaply whether another process committed; doing so must leave the lock in place.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from partnergate.store import database

DMS = 128
"""The WAL index's dead-man-switch byte (sqlite.org/walformat.html, 2.3.1)."""
FLOCK = "hhqqi"
"""``struct flock`` on Linux: type, whence, start, length, pid."""

HOLDER = """
import sqlite3, sys
from partnergate.store.changes import SqliteChangeLog
path = sys.argv[1]
conn = sqlite3.connect(path)
conn.execute("SELECT count(*) FROM change_log").fetchone()  # opens the WAL index
changes = SqliteChangeLog(path)
print("ready", flush=True)
sys.stdin.readline()
assert changes.poll() == []
conn.close()
changes.close()
"""


def _holder(index: Path) -> int | None:
    """The process holding a lock on the DMS byte, as another process sees it."""
    fd = os.open(index, os.O_RDONLY)
    try:
        asked = struct.pack(FLOCK, fcntl.F_WRLCK, os.SEEK_SET, DMS, 1, 0)
        kind, _, _, _, pid = struct.unpack(FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, asked))
        return None if kind == fcntl.F_UNLCK else pid
    finally:
        os.close(fd)


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's struct flock")
def test_the_change_log_keeps_the_lock_of_its_process_on_the_wal_index(tmp_path: Path) -> None:
    path = tmp_path / "store.db"

    async def make() -> None:
        engine = database.create_engine(f"sqlite:///{path}")
        try:
            await database.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(make())
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert _holder(Path(f"{path}-shm")) == holder.pid
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0

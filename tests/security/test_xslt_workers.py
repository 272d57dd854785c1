"""Saxon runs in worker processes that cannot outlive or stall the server.

A transform that never ends is stopped at its step's time limit (see test_xml_door); here:
the server stops promptly on SIGTERM while one runs, and after ``kill -9`` of the server
its workers do not keep spinning.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ..conftest import Server, start_server
from .test_xml_door import LOOP_XSL

LOOP_FLOW = "endpoint: /http/spin\ntime-limit: {limit}\nsteps:\n  - xslt: loop.xsl\n"


def children(pid: int) -> set[int]:
    """Every process below ``pid``: a server's worker processes and their Saxon workers."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    below = {pid}
    while below:
        below = {child for child, parent in parents.items() if parent in below} - found
        found |= below
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spinning_workers(pid: int) -> set[int]:
    """Children of ``pid`` that used at least 0.2 s of CPU in the last second."""
    before = {child: cpu_seconds(child) for child in children(pid)}
    time.sleep(1)
    return {child for child, cpu in before.items() if cpu_seconds(child) - cpu >= 0.2}


def wait_until(condition: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def spinning(
    tmp_path: Path, store_url: str, request: pytest.FixtureRequest
) -> Iterator[tuple[Server, set[int]]]:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "spin.yaml").write_text(LOOP_FLOW.format(limit=request.param))
    (folder / "loop.xsl").write_text(LOOP_XSL)
    srv = start_server(tmp_path, store_url, {"PARTNERGATE_FLOWS": str(folder)})
    sender = (f"spin_{secrets.token_hex(4)}", secrets.token_urlsafe(10))
    srv.add_user(*sender, "ESBMessaging.send")
    pool = ThreadPoolExecutor(1)
    pool.submit(httpx.post, srv.url + "/http/spin", content=b"<r/>", auth=sender, timeout=120)
    workers: set[int] = set()
    try:

        def found() -> bool:
            workers.update(spinning_workers(srv.process.pid))
            return bool(workers)

        assert wait_until(found, 60), srv.log()  # a worker runs the endless transform
        assert httpx.get(srv.url + "/health", timeout=30).status_code == 200
        yield srv, workers
    finally:
        if srv.process.poll() is None:
            srv.process.kill()
        for pid in workers:
            if alive(pid):  # a failed test leaves no spinning process behind
                os.kill(pid, signal.SIGKILL)
        pool.shutdown(wait=False, cancel_futures=True)


@pytest.mark.parametrize("spinning", [20], indirect=True)
def test_sigterm_stops_the_server_and_its_busy_worker(spinning: tuple[Server, set[int]]) -> None:
    """The server finishes its messages first: the transform's, at its time limit."""
    srv, workers = spinning
    srv.process.send_signal(signal.SIGTERM)
    srv.process.wait(timeout=60)
    assert wait_until(lambda: not any(alive(pid) for pid in workers)), workers


@pytest.mark.parametrize("spinning", [600], indirect=True)
def test_kill_9_of_the_server_takes_its_workers_along(spinning: tuple[Server, set[int]]) -> None:
    srv, workers = spinning
    os.kill(srv.process.pid, signal.SIGKILL)
    srv.process.wait(timeout=30)
    assert wait_until(lambda: not any(alive(pid) for pid in workers)), workers

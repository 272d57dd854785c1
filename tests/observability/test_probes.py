"""``/health`` is liveness; ``/ready`` is 200 only while the store answers, the flows are
loaded and the server is not shutting down. Real servers, real stores that stop
answering."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import STORE, Server, _pg_admin, start_server, stop_server, store_of_its_own

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "partner-directory"


def ready(server: Server) -> httpx.Response:
    return httpx.get(server.url + "/ready", timeout=10)


def until(check, seconds: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def own_store(tmp_path: Path) -> Iterator[str]:
    """A store of this test's own, which it may take away."""
    with store_of_its_own(tmp_path / "own", "partnergate_ready") as url:
        yield url


def test_ready_follows_the_store(tmp_path: Path, own_store: str) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(EXAMPLES, flows)
    server = start_server(tmp_path, own_store, {"PARTNERGATE_FLOWS": str(flows)})
    try:
        r = ready(server)
        assert r.status_code == 200 and r.json() == {"status": "ready"}
        with store_away(own_store):
            assert until(lambda: ready(server).status_code == 503)
            r = ready(server)
            assert "the store does not answer" in r.json()["reason"], r.text
            assert httpx.get(server.url + "/health").status_code == 200  # still alive
        assert until(lambda: ready(server).status_code == 200), ready(server).text
        # the flows folder gone: not ready either
        flows.rename(tmp_path / "flows-away")
        r = ready(server)
        assert r.status_code == 503 and "flows folder" in r.json()["reason"]
        (tmp_path / "flows-away").rename(flows)
        assert ready(server).status_code == 200
    finally:
        stop_server(server)


class store_away:  # noqa: N801 - used like a function
    """SQLite: the database file moved away; PostgreSQL: the database closed to
    connections and the server's connections ended."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        if STORE == "sqlite":
            self.path = Path(self.url.removeprefix("sqlite:///"))
            self.path.rename(self.path.with_suffix(".away"))
            return
        name = self.url.rsplit("/", 1)[1]
        asyncio.run(_pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        asyncio.run(
            _pg_admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
        )

    def __exit__(self, *exc: object) -> None:
        if STORE == "sqlite":
            self.path.with_suffix(".away").rename(self.path)
            return
        name = self.url.rsplit("/", 1)[1]
        asyncio.run(_pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))


def test_not_ready_while_draining_after_sigterm(tmp_path: Path, store_url: str) -> None:
    server = start_server(tmp_path, store_url, {"PARTNERGATE_DRAIN_SECONDS": "3"})
    try:
        assert ready(server).status_code == 200
        with httpx.Client(base_url=server.url, timeout=10) as kept:
            assert kept.get("/ready").status_code == 200
            server.process.send_signal(signal.SIGTERM)
            assert until(lambda: kept.get("/ready").status_code == 503, 2)
            r = ready(server)  # a new connection is still served while draining
            assert r.status_code == 503 and r.json()["reason"] == "shutting down"
            assert kept.get("/health").status_code == 200
        server.process.wait(timeout=15)
        assert "draining for 3 s" in server.log()
    finally:
        stop_server(server)


def test_ready_without_drain_is_answered_until_the_listeners_close(
    tmp_path: Path, store_url: str
) -> None:
    """Without ``drain_seconds`` a SIGTERM closes the listeners at once: a probe finds
    the port closed, which a platform reads as not ready."""
    server = start_server(tmp_path, store_url)
    try:
        assert ready(server).status_code == 200
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=15)
        with pytest.raises(httpx.TransportError):
            ready(server)
    finally:
        stop_server(server)

"""Test harness: a real ``partnergate serve`` on a free port over the store under test.

``PARTNERGATE_TEST_STORE`` picks the store: ``sqlite`` (default, a file in a temporary
directory) or ``postgresql`` (a database of its own on the server at
``PARTNERGATE_TEST_PG_URL``, dropped at the end).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ADMIN_ROLE = "AuthGroup_TenantPartnerDirectoryConfigurator"
STORE = os.environ.get("PARTNERGATE_TEST_STORE", "sqlite")
PG_URL = os.environ.get("PARTNERGATE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def store_of_its_own(directory: Path, prefix: str = "partnergate_test") -> Iterator[str]:
    """An empty store: a SQLite file in ``directory``, or a PostgreSQL database named
    ``prefix`` and a random part, dropped afterwards even if a test closed it to new
    connections."""
    if STORE == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{directory / 'partnergate.db'}"
        return
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_url(tmp_path: Path) -> Iterator[str]:
    """An empty store of the test's own."""
    with store_of_its_own(tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if STORE == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'partnergate.db'}"
        return
    if STORE != "postgresql":
        raise pytest.UsageError(f"PARTNERGATE_TEST_STORE must be sqlite or postgresql, not {STORE}")
    name = f"partnergate_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def cli(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "partnergate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@dataclass
class Server:
    url: str
    env: dict[str, str]
    admin: tuple[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return cli(*args, env=self.env, stdin=stdin)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def add_user(self, name: str, password: str, *roles: str) -> None:
        role_args = [a for r in roles for a in ("--role", r)]
        done = self.cli("users", "add", name, *role_args, "--password-stdin", stdin=password + "\n")
        assert done.returncode == 0, done.stderr

    def add_client(self, client_id: str, secret: str, *roles: str) -> None:
        role_args = [a for r in roles for a in ("--role", r)]
        done = self.cli(
            "clients", "add", client_id, *role_args, "--secret-stdin", stdin=secret + "\n"
        )
        assert done.returncode == 0, done.stderr


KEYS: dict[str, Path] = {}
"""The credentials key of the first server of each store: servers sharing a store share it,
as the nodes of a fleet do."""


def start_server(tmp: Path, db: str, extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "PARTNERGATE_DB": db,
        "PARTNERGATE_HTTP": f"127.0.0.1:{port}",
        "PARTNERGATE_DATA_DIR": str(tmp / "data"),
        **(extra_env or {}),
    }
    key = Path(env["PARTNERGATE_DATA_DIR"]) / "credentials.key"
    if db in KEYS and KEYS[db].exists() and not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(KEYS[db], key)
    password = secrets.token_urlsafe(12)
    admin = ("admin_" + uuid.uuid4().hex[:6], password)
    done = cli(
        "users",
        "add",
        admin[0],
        "--role",
        ADMIN_ROLE,
        "--password-stdin",
        env=env,
        stdin=password + "\n",
    )
    assert done.returncode == 0, done.stderr
    KEYS.setdefault(db, key)
    log_path = tmp / f"server-{port}.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "partnergate", "serve"],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log_path)
    except AssertionError:
        stop_process(process)
        raise
    return Server(url, env, admin, log_path, process)


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until ``/health`` answers 200; the server's log is the message if it exits or takes
    more than a minute."""
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"server exited: {log_path.read_text()}"
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"server did not start: {log_path.read_text()}"
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the process is still there after 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_server(server: Server) -> None:
    stop_process(server.process)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"), store_url)
    try:
        yield srv
    finally:
        stop_server(srv)


class Api(httpx.Client):
    """An admin's client: Basic auth, a CSRF token fetched once, JSON by default."""

    def __init__(self, server: Server, auth: tuple[str, str] | None = None) -> None:
        self.user = (auth or server.admin)[0]
        super().__init__(
            base_url=server.api + "/",
            auth=auth or server.admin,
            headers={"Accept": "application/json"},
            timeout=60,
        )
        fetched = self.get("", headers={"X-CSRF-Token": "Fetch"})
        assert fetched.status_code == 200, fetched.text
        self.headers["X-CSRF-Token"] = fetched.headers["x-csrf-token"]

    def __enter__(self) -> Api:  # already open: the CSRF fetch opened it
        return self


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    with Api(server) as client:
        yield client


@pytest.fixture
def pid() -> str:
    """A partner id no other test uses."""
    return "P_" + uuid.uuid4().hex[:10]

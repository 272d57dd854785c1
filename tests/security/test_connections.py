"""Connection hygiene: no connection holds a place on a listener for longer than its
deadlines allow, and a listener never takes more connections than its cap.

Two kinds of server: :class:`partnergate.server.Server` in this process (asyncio's loop)
around a small app, once per HTTP protocol (httptools, h11), with deadlines of a second
or two; and the real ``partnergate serve`` (uvloop) over the store under test. Every
assertion waits generously: what is proved is "closed, not held for ever" and "still
answers", never how fast.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from partnergate.config import Settings
from partnergate.security import pki
from partnergate.server import H11TLSProtocol, HttpToolsTLSProtocol
from partnergate.web.bodies import BodyTooLarge, read_body

from ..conftest import Server as Process
from ..conftest import free_port, start_server, stop_process, stop_server, wait_until_healthy
from ..tls.conftest import InProcess

WAIT = 30.0
"""How long a test waits for something that should happen after a second or two."""


# --- a client that can be slow on purpose --------------------------------------------------


@dataclass
class PKI:
    ca: Path
    chain: Path
    key: Path

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    root = tmp_path_factory.mktemp("conn-pki")
    ca = pki.init_ca(root / "ca")
    server = pki.issue_server(ca, root / "out", ["127.0.0.1", "localhost"])
    return PKI(ca.cert_path, server.chain_path, server.key_path)


class Client:
    """One connection, plain or TLS, speaking HTTP/1.1 by hand."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        try:
            self.sock = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
        except BaseException:
            raw.close()
            raise
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self, method: str = "GET", path: str = "/health", headers: dict[str, str] | None = None
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def get(
        self, path: str = "/health", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        self.send(self.request("GET", path, headers))
        return self.response()

    def response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(head.split(b" ", 2)[1]), body

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionAbortedError("the server closed the connection")
        self.buffer += data

    def closed_by_server(self) -> bytes:
        """Waits for the server to close the connection; what it sent before closing."""
        self.sock.settimeout(WAIT)
        received = self.buffer
        while True:
            try:
                data = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError):
                return received
            except TimeoutError:
                pytest.fail(f"the connection is still open after {WAIT} s")
            if not data:
                return received
            received += data

    def drip(self, data: bytes, every: float = 0.3) -> bytes:
        """Sends ``data`` a byte at a time until the server closes the connection; what
        it sent before closing. Fails if all of ``data`` went through."""
        self.sock.settimeout(every)
        received = b""
        for i in range(len(data)):
            try:
                self.sock.sendall(data[i : i + 1])
            except (ConnectionError, ssl.SSLError):
                return received
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except (ConnectionError, ssl.SSLError):
                return received
            if not chunk:
                return received
            received += chunk
        pytest.fail(f"the server took all {len(data)} bytes, one every {every} s")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refused(port: int, tls: ssl.SSLContext | None) -> bool:
    """Whether the server ends a new connection instead of answering ``GET /health``."""
    try:
        with Client(port, tls) as client:
            client.get()
    except (ConnectionError, ssl.SSLError, OSError):
        return True
    return False


def answered_408_or_closed(received: bytes) -> bool:
    return received == b"" or received.startswith(b"HTTP/1.1 408 ")


STALL = 0.5
"""Seconds ``GET /stall`` keeps the server's loop from reading."""

SLOW_HEADERS = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 400
"""A header block that never ends (and not too long to be refused as too long)."""


# --- the server in this process, per HTTP protocol -----------------------------------------


class App:
    """``GET /health``; ``POST /echo`` reads the body with the product's reader; ``GET
    /stall`` keeps the server's event loop busy for a moment."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.asgi = Starlette(
            routes=[
                Route("/health", self.health),
                Route("/echo", self.echo, methods=["POST"]),
                Route("/stall", self.stall),
            ]
        )

    async def stall(self, request: Request) -> Response:
        time.sleep(STALL)  # blocks the loop: what clients send meanwhile waits in the kernel
        return PlainTextResponse("stalled")

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def echo(self, request: Request) -> Response:
        try:
            body = await read_body(request, 1 << 20)
        except BodyTooLarge:
            return PlainTextResponse("too large", 413)
        self.bodies.append(body)
        return PlainTextResponse(f"{len(body)} bytes")


PROTOCOLS = [HttpToolsTLSProtocol, H11TLSProtocol]


@dataclass
class Running:
    server: InProcess
    app: App
    made: PKI

    @property
    def http(self) -> int:
        return self.server.ports[0]

    @property
    def https(self) -> int:
        return self.server.ports[1]

    def port(self, listener: str) -> tuple[int, ssl.SSLContext | None]:
        if listener == "https":
            return self.https, self.made.client()
        return self.http, None


def in_process(made: PKI, protocol: type, **limits: int) -> Iterator[Running]:
    settings = Settings(
        http="127.0.0.1:0",
        https="127.0.0.1:0",
        tls_cert=str(made.chain),
        tls_key=str(made.key),
        **limits,  # type: ignore[arg-type]
    )
    app = App()
    server = InProcess(app.asgi, settings)
    for config in server.server.configs:
        config.http = protocol
    with server:
        yield Running(server, app, made)


@pytest.fixture(scope="module", params=PROTOCOLS, ids=["httptools", "h11"])
def quick(request: pytest.FixtureRequest, made: PKI) -> Iterator[Running]:
    """Deadlines of a second or two, no cap to speak of."""
    yield from in_process(
        made, request.param, header_timeout=1, keepalive_timeout=1, body_timeout=2
    )


LISTENERS = ["http", "https"]


@pytest.mark.parametrize("listener", LISTENERS)
def test_idle_keep_alive_connection_is_closed(quick: Running, listener: str) -> None:
    with Client(*quick.port(listener)) as client:
        assert client.get() == (200, b'{"status":"ok"}')
        assert client.get()[0] == 200  # kept alive while in use
        assert client.closed_by_server() == b""


@pytest.mark.parametrize("listener", LISTENERS)
def test_connection_that_never_sends_a_request_is_closed(quick: Running, listener: str) -> None:
    with Client(*quick.port(listener)) as client:
        assert client.closed_by_server() == b""


@pytest.mark.parametrize("listener", LISTENERS)
def test_slowloris_headers_are_cut_at_the_header_deadline(quick: Running, listener: str) -> None:
    with Client(*quick.port(listener)) as client:
        assert answered_408_or_closed(client.drip(SLOW_HEADERS))


@pytest.mark.parametrize("listener", LISTENERS)
def test_slowloris_on_a_kept_alive_connection_is_cut(quick: Running, listener: str) -> None:
    """The deadline runs again from the first byte of each further request."""
    with Client(*quick.port(listener)) as client:
        assert client.get()[0] == 200
        assert answered_408_or_closed(client.drip(SLOW_HEADERS))


@pytest.mark.parametrize("listener", LISTENERS)
def test_slow_body_is_cut_at_the_body_deadline(quick: Running, listener: str) -> None:
    before = len(quick.app.bodies)
    with Client(*quick.port(listener)) as client:
        client.send(client.request("POST", "/echo", {"Content-Length": "400"}))
        assert answered_408_or_closed(client.drip(b"x" * 400))
    assert len(quick.app.bodies) == before  # the app never had the body


@pytest.mark.parametrize(
    "hello",
    [b"", b"\x16", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"],
    ids=["nothing", "one-byte", "part-of-a-client-hello"],
)
def test_tls_connection_without_a_whole_client_hello_is_closed(
    quick: Running, hello: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", quick.https), timeout=WAIT) as raw:
        raw.sendall(hello)
        try:
            assert raw.recv(65536) == b""
        except ConnectionResetError:
            pass


@pytest.mark.parametrize("listener", LISTENERS)
def test_requests_on_one_connection_are_all_answered(quick: Running, listener: str) -> None:
    with Client(*quick.port(listener)) as client:
        for _ in range(5):
            assert client.get()[0] == 200
        post = client.request("POST", "/echo", {"Content-Length": "5"}) + b"hello"
        client.send(post + client.request() + post)  # pipelined
        assert client.response() == (200, b"5 bytes")
        assert client.response()[0] == 200
        assert client.response() == (200, b"5 bytes")


@pytest.mark.parametrize("listener", LISTENERS)
def test_body_refused_before_it_was_read_keeps_the_connection(
    quick: Running, listener: str
) -> None:
    """The rest of a body answered 413 up front is that request's, not a next header block:
    a client that sends it anyway keeps its connection for the next request."""
    size = 3 << 20  # over max_body (1 MiB here) and far over max_header_bytes (64 KiB)
    with Client(*quick.port(listener)) as client:
        client.send(client.request("POST", "/echo", {"Content-Length": str(size)}))
        assert client.response() == (413, b"too large")
        client.send(b"x" * size + client.request())
        assert client.response()[0] == 200


@pytest.mark.parametrize("listener", LISTENERS)
def test_header_block_over_the_limit_is_refused(quick: Running, listener: str) -> None:
    """httptools keeps any amount of headers; the limit is max_header_bytes (64 KiB)."""
    with Client(*quick.port(listener)) as client:
        assert client.get(headers={"X-Big": "b" * 40_000})[0] == 200  # under the limit
        head = client.request("GET", "/health", {f"X-{i}": "a" * 1000 for i in range(200)})
        try:
            client.send(head)
        except (ConnectionError, ssl.SSLError):
            return  # closed before all of it went out: refused either way
        received = client.closed_by_server()
        assert received.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), received[:60]


@pytest.mark.parametrize("listener", LISTENERS)
def test_header_block_over_the_limit_arriving_whole_is_refused(
    quick: Running, listener: str
) -> None:
    """A header block the server reads in one go (its loop was busy while the block
    arrived, as under load) is bounded too: h11 bounds only one that arrives in parts."""
    with Client(*quick.port(listener)) as client, Client(*quick.port(listener)) as staller:
        assert client.get()[0] == 200  # connected (and on TLS, the handshake is done)
        staller.send(staller.request("GET", "/stall"))
        time.sleep(STALL / 5)  # the server's loop is asleep now
        client.send(client.request("GET", "/health", {f"X-{i}": "a" * 1000 for i in range(90)}))
        received = client.closed_by_server()
        assert received.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), received[:60]
        assert staller.response() == (200, b"stalled")


def test_timeouts_are_logged_with_the_peer_and_no_request_data(
    quick: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="partnergate.server")
    with Client(quick.http) as client:
        assert answered_408_or_closed(client.drip(SLOW_HEADERS))
        port = client.sock.getsockname()[1]
    lines = [r.getMessage() for r in caplog.records if f"127.0.0.1:{port}" in r.getMessage()]
    assert lines == [
        f"closed connection from 127.0.0.1:{port}: request headers not complete within 1 s"
    ]
    assert "X-Slow" not in caplog.text


# --- the cap -------------------------------------------------------------------------------

CAP = 20


@pytest.fixture(scope="module", params=PROTOCOLS, ids=["httptools", "h11"])
def capped(request: pytest.FixtureRequest, made: PKI) -> Iterator[Running]:
    yield from in_process(
        made, request.param, max_connections=CAP, header_timeout=6, keepalive_timeout=60
    )


def check_the_cap(port: int, tls: ssl.SSLContext | None, header_timeout: float) -> None:
    """With the cap reached by idle connections, a new connection is refused while one
    kept alive still answers; once the idle ones are closed, new connections work."""
    with Client(port, tls) as keeper:
        assert keeper.get()[0] == 200
        # more than the places left; on the TLS listener without a handshake
        idle = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(CAP)]
        try:
            assert refused(port, tls)
            assert keeper.get() == (200, b'{"status":"ok"}')
            deadline = time.monotonic() + header_timeout + WAIT
            while refused(port, tls):
                assert time.monotonic() < deadline, "new connections still refused"
                time.sleep(0.5)
            assert keeper.get()[0] == 200
        finally:
            for sock in idle:
                sock.close()


@pytest.mark.parametrize("listener", LISTENERS)
def test_cap_refuses_new_connections_and_keeps_existing_ones(
    capped: Running, listener: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="partnergate.server")
    check_the_cap(*capped.port(listener), header_timeout=6)
    assert "connections open, the limit (max_connections)" in caplog.text


@pytest.mark.parametrize("listener", LISTENERS)
def test_upgrade_requests_give_their_place_back(capped: Running, listener: str) -> None:
    """A WebSocket upgrade is answered as a plain request; its connection, closed, no
    longer counts against the cap."""
    port, tls = capped.port(listener)
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    for _ in range(CAP + 5):
        with Client(port, tls) as client:
            client.send(client.request("GET", "/health", upgrade))
            assert client.response()[0] == 200
    with Client(port, tls) as client:
        assert client.get()[0] == 200


def test_each_listener_has_its_own_cap(capped: Running) -> None:
    idle = [socket.create_connection(("127.0.0.1", capped.http), timeout=WAIT) for _ in range(CAP)]
    try:
        assert refused(capped.http, None)
        with Client(capped.https, capped.made.client()) as client:
            assert client.get()[0] == 200
    finally:
        for sock in idle:
            sock.close()


# --- settings ------------------------------------------------------------------------------


def test_defaults_are_safe() -> None:
    settings = Settings()
    assert 16 * 1024 <= settings.max_header_bytes <= 1024 * 1024
    assert 5 <= settings.keepalive_timeout <= 75
    assert 5 <= settings.header_timeout <= 60
    assert 30 <= settings.body_timeout <= 300
    assert settings.max_connections is None  # from ulimit -n at start-up


# --- the real server -----------------------------------------------------------------------


def start(tmp: Path, store_url: str, made: PKI, **env: str) -> tuple[Process, int]:
    https = free_port()
    extra = {
        "PARTNERGATE_HTTPS": f"127.0.0.1:{https}",
        "PARTNERGATE_TLS_CERT": str(made.chain),
        "PARTNERGATE_TLS_KEY": str(made.key),
        **{f"PARTNERGATE_{k.upper()}": v for k, v in env.items()},
    }
    return start_server(tmp, store_url, extra), https


def http_port(server: Process) -> int:
    return int(server.url.rsplit(":", 1)[1])


def test_real_server_cap_on_both_listeners(tmp_path: Path, store_url: str, made: PKI) -> None:
    limits = {"max_connections": str(CAP), "header_timeout": "6", "keepalive_timeout": "60"}
    limits["workers"] = "1"  # the cap counts per worker
    server, https = start(tmp_path, store_url, made, **limits)
    try:
        check_the_cap(http_port(server), None, header_timeout=6)
        check_the_cap(https, made.client(), header_timeout=6)
        assert "connections open, the limit (max_connections)" in server.log()
    finally:
        stop_server(server)


def test_real_server_slow_body_changes_nothing(
    tmp_path: Path, store_url: str, made: PKI, pid: str
) -> None:
    server, https = start(tmp_path, store_url, made, body_timeout="2")
    try:
        with httpx.Client(base_url=server.api + "/", auth=server.admin, timeout=WAIT) as api:
            fetched = api.get("", headers={"X-CSRF-Token": "Fetch"})
            token = fetched.headers["x-csrf-token"]
            cookie = "; ".join(f"{k}={v}" for k, v in api.cookies.items())
            body = json.dumps({"Pid": pid, "Id": "slow", "Value": "x" * 200}).encode()
            basic = base64.b64encode(":".join(server.admin).encode()).decode()
            for port, tls in ((http_port(server), None), (https, made.client())):
                with Client(port, tls) as client:
                    head = {
                        "Authorization": f"Basic {basic}",
                        "Cookie": cookie,
                        "X-CSRF-Token": token,
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                        "Content-Length": str(len(body)),
                    }
                    client.send(client.request("POST", "/api/v1/StringParameters", head))
                    assert answered_408_or_closed(client.drip(body))
            got = api.get(f"StringParameters(Pid='{pid}',Id='slow')")
            assert got.status_code == 404, got.text
            # the same body in one piece is stored: the refusal was the drip's
            created = api.post(
                "StringParameters",
                content=body,
                headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
            )
            assert created.status_code == 201, created.text
        log = server.log()
        assert log.count("request body not complete within 2 s") == 2
        assert "Traceback" not in log and "ERROR" not in log
    finally:
        stop_server(server)


def test_defaults_do_not_cut_a_normal_keep_alive_client(
    tmp_path: Path, store_url: str, made: PKI
) -> None:
    """Defaults, and a client that pauses between requests and sends a body in parts."""
    server, https = start(tmp_path, store_url, made)
    try:
        for port, tls in ((http_port(server), None), (https, made.client())):
            with Client(port, tls) as client:
                for _ in range(3):
                    assert client.get()[0] == 200
                    time.sleep(2)
                client.send(client.request("GET", "/health")[:20])
                time.sleep(2)
                client.send(client.request("GET", "/health")[20:])
                assert client.response()[0] == 200
        with httpx.Client(base_url=server.api + "/", auth=server.admin, timeout=WAIT) as api:
            for _ in range(3):
                assert api.get("Partners").status_code == 200
                time.sleep(2)
        assert "closed connection" not in server.log()
        assert "at most " in server.log()
    finally:
        stop_server(server)


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def test_idle_connections_cannot_take_every_file_descriptor(tmp_path: Path, store_url: str) -> None:
    """Finding 7: under ``ulimit -n 1024``, 1,100 idle connections made ``/health`` fail.
    Now the automatic cap keeps descriptors for the server: a kept-alive client still
    gets answers, a database request still works, and the idle ones are closed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300 and soft != resource.RLIM_INFINITY:
        pytest.skip(f"this test needs ulimit -n of 1300 or more, not {soft}")
    port = free_port()
    env = {
        **os.environ,
        "PARTNERGATE_DB": store_url,
        "PARTNERGATE_HTTP": f"127.0.0.1:{port}",
        "PARTNERGATE_DATA_DIR": str(tmp_path / "data"),
        "PARTNERGATE_WORKERS": "1",  # the descriptors counted are one process's
    }
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "partnergate", "serve"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_low_fd_limit,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, process, log_path)
        with Client(port) as keeper:
            assert keeper.get()[0] == 200
            idle = []
            try:
                for _ in range(1100):
                    idle.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
                assert refused(port, None)
                assert keeper.get() == (200, b'{"status":"ok"}')
                assert keeper.get("/api/v1/")[0] == 401  # the store is still reachable
            finally:
                for sock in idle:
                    sock.close()
            deadline = time.monotonic() + WAIT
            while refused(port, None):
                assert time.monotonic() < deadline, "new connections still refused"
                time.sleep(0.5)
        log = log_path.read_text()
        assert "Too many open files" not in log
        limit = int(log.split("at most ", 1)[1].split(" ", 1)[0])
        assert limit <= 1024 - 100
    finally:
        stop_process(process)


def test_sigterm_with_idle_connections_stops_promptly(
    tmp_path: Path, store_url: str, made: PKI
) -> None:
    """Deadlines far off, so the stop does not wait for them."""
    server, https = start(
        tmp_path,
        store_url,
        made,
        header_timeout="300",
        keepalive_timeout="300",
        body_timeout="300",
    )
    port = http_port(server)
    held: list[socket.socket | Client] = []
    try:
        held += [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        held += [socket.create_connection(("127.0.0.1", https)) for _ in range(10)]
        for listener_port, tls in ((port, None), (https, made.client())):
            for _ in range(5):
                kept = Client(listener_port, tls)
                assert kept.get()[0] == 200
                held.append(kept)
            for _ in range(3):
                partial = Client(listener_port, tls)
                partial.send(SLOW_HEADERS[:30])
                held.append(partial)
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {WAIT} s after SIGTERM:\n{server.log()}")
        # uvicorn ends by raising the signal it caught again, after a clean shutdown
        assert server.process.returncode in (0, -signal.SIGTERM), server.log()
        assert "Finished server process" in server.log()
    finally:
        for item in held:
            item.close()
        stop_server(server)


def test_serve_options_set_the_limits(tmp_path: Path, store_url: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PARTNERGATE_DB": store_url,
        "PARTNERGATE_DATA_DIR": str(tmp_path / "data"),
    }
    log_path = tmp_path / "serve.log"
    options = ["--max-connections", "7", "--header-timeout", "3", "--keepalive-timeout", "4"]
    options += ["--body-timeout", "5", "--max-header-bytes", "20000"]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "partnergate", "serve", "--http", f"127.0.0.1:{port}", *options],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "at most " not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        line = "at most 7 open connections per listener; idle 4 s, headers 3 s, body 5 s"
        assert line in log_path.read_text()
        with Client(port) as client:
            assert client.get(headers={"X-Big": "b" * 30_000})[0] == 431
    finally:
        process.terminate()
        process.wait(timeout=30)

"""Real TLS for the listener, proxy and reload tests: certificates made here, servers on
free loopback ports.

- ``made``: a development PKI (``partnergate.security.pki``): a root, an intermediate, a
  CA nobody trusts, a server certificate and one client certificate per case.
- :func:`tls_server`: the real ``partnergate serve`` with a TLS listener beside HTTP.
- :class:`InProcess`: :class:`partnergate.server.Server` in a thread, around an app of the
  test's, for what only the app can see (the ASGI ``tls`` extension).
- :func:`start_nginx`: Debian's nginx terminating mTLS in front of an upstream, with the
  configuration of ``docs/deploy-nginx.md``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from starlette.types import ASGIApp

from partnergate.config import Settings
from partnergate.security import pki
from partnergate.server import Server

from ..conftest import Server as Process
from ..conftest import free_port, start_server

PASSWORD = "keystore-pw"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture(scope="session")
def made(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("tls-pki")
    ca = pki.init_ca(root / "ca")
    intermediate = pki.issue_intermediate(ca, root / "intermediate")
    stranger = pki.init_ca(root / "stranger", "stranger CA")
    out = root / "out"
    now = datetime.now(UTC)

    def client(name: str, issuer: pki.CA = ca, **kw: object) -> pki.ClientBundle:
        return pki.issue_client(issuer, out, name, password=PASSWORD, **kw)  # type: ignore[arg-type]

    bundle = root / "root-and-intermediate.pem"
    bundle.write_bytes(ca.cert_path.read_bytes() + intermediate.cert_path.read_bytes())
    return SimpleNamespace(
        root=root,
        ca=ca,
        intermediate=intermediate,
        stranger=stranger,
        root_and_intermediate=bundle,
        server=pki.issue_server(ca, out, ["127.0.0.1", "localhost"]),
        good=client("Sender_CERT"),
        via_intermediate=client("via-intermediate", intermediate),
        no_eku=client("no-eku", eku=None),
        expired=client("expired", not_before=now - timedelta(days=30), days=2),
        not_yet_valid=client("not-yet-valid", not_before=now + timedelta(days=2), days=30),
        wrong_eku=client("wrong-eku", eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
        untrusted=client("untrusted", stranger),
    )


# --- clients --------------------------------------------------------------------------------


def client_context(
    made: SimpleNamespace,
    bundle: pki.Bundle | None,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ca: Path | None = None,
) -> ssl.SSLContext:
    """A client that trusts ``ca`` (default: the root) and presents ``bundle``'s chain."""
    context = ssl.create_default_context(cafile=ca or made.ca.cert_path)
    context.maximum_version = maximum
    if bundle is not None:
        context.load_cert_chain(bundle.chain_path, bundle.key_path)
    return context


@dataclass
class Reply:
    status: int
    body: bytes


class Connection:
    """One TLS connection speaking HTTP/1.1 with keep-alive, request after request."""

    def __init__(
        self,
        port: int,
        context: ssl.SSLContext,
        host: str = "127.0.0.1",
        source: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        """``source``: the loopback address to connect from (127.0.0.0/8 is all ours);
        ``session``: a TLS session to resume."""
        raw = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0) if source else None
        )
        try:
            self.tls = context.wrap_socket(raw, server_hostname=host, session=session)
        except BaseException:
            raw.close()
            raise
        self.buffer = b""

    def get(self, path: str = "/health", headers: dict[str, str] | None = None) -> Reply:
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = self._until(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Reply(status, body)

    def peer_certificate(self) -> bytes:
        der = self.tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._read()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read(self) -> None:
        data = self.tls.recv(65536)
        if not data:
            raise ConnectionAbortedError("the server closed the connection")
        self.buffer += data

    def shutdown(self) -> None:
        """Close with a TLS close_notify first: a server keeps a TLS 1.2 session for
        resumption only when the connection ended cleanly."""
        self.tls.unwrap().close()

    def close(self) -> None:
        self.tls.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refused(port: int, context: ssl.SSLContext) -> bool:
    """Whether the server ends the connection instead of answering ``GET /health``.

    With TLS 1.2 the client sees the handshake fail; with TLS 1.3 the client's side of
    the handshake completes before the server checks the certificate, and the server
    then closes without a word (asyncio drops OpenSSL's alert).
    """
    try:
        with Connection(port, context) as connection:
            connection.get()
    except (ssl.SSLError, ConnectionError):
        return True
    return False


# --- the real server ------------------------------------------------------------------------


@dataclass
class TLSServer:
    process: Process
    https_port: int

    @property
    def log(self) -> str:
        return self.process.log()


def tls_env(made: SimpleNamespace, port: int, client_cert: str) -> dict[str, str]:
    return {
        "PARTNERGATE_HTTPS": f"127.0.0.1:{port}",
        "PARTNERGATE_TLS_CERT": str(made.server.chain_path),
        "PARTNERGATE_TLS_KEY": str(made.server.key_path),
        "PARTNERGATE_CLIENT_CA": str(made.ca.cert_path),
        "PARTNERGATE_CLIENT_CERT": client_cert,
    }


def start_tls_server(tmp: Path, store_url: str, env: dict[str, str], port: int) -> TLSServer:
    return TLSServer(start_server(tmp, store_url, env), port)


@pytest.fixture(scope="module")
def required_server(
    tmp_path_factory: pytest.TempPathFactory, store_url: str, made: SimpleNamespace
) -> Iterator[TLSServer]:
    port = free_port()
    server = start_tls_server(
        tmp_path_factory.mktemp("required"), store_url, tls_env(made, port, "required"), port
    )
    try:
        yield server
    finally:
        stop(server.process)


@pytest.fixture(scope="module")
def optional_server(
    tmp_path_factory: pytest.TempPathFactory, store_url: str, made: SimpleNamespace
) -> Iterator[TLSServer]:
    port = free_port()
    server = start_tls_server(
        tmp_path_factory.mktemp("optional"), store_url, tls_env(made, port, "optional"), port
    )
    try:
        yield server
    finally:
        stop(server.process)


def stop(process: Process) -> None:
    process.process.terminate()
    try:
        process.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.process.kill()
        process.process.wait()


# --- the server in this process -------------------------------------------------------------


class InProcess:
    """:class:`partnergate.server.Server` around ``app``, in a thread with its own loop."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.server = Server(app, settings)
        self.sockets = self.server.bind()
        self.ports = [sock.getsockname()[1] for sock in self.sockets]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(self.sockets))
        except BaseException as exc:  # reported by __enter__ / __exit__
            self.error = exc

    def __enter__(self) -> InProcess:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(f"in-process server did not start: {self.error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("in-process server did not start in time")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        for sock in self.sockets:
            sock.close()


# --- nginx ----------------------------------------------------------------------------------


def nginx_server_block(
    listen: str, upstream: str, server_chain: Path, server_key: Path, client_ca: Path
) -> str:
    """The ``server`` block of docs/deploy-nginx.md, with this test's paths and ports."""
    return f"""
    server {{
        listen {listen} ssl;
        ssl_certificate        {server_chain};
        ssl_certificate_key    {server_key};
        ssl_client_certificate {client_ca};
        ssl_verify_client      on;
        ssl_verify_depth       3;
        client_max_body_size   8m;

        location / {{
            proxy_pass http://{upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            # the verified client certificate, URL-encoded PEM; replaces any client copy
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            # no other certificate header may pass from the client
            proxy_set_header X-Forwarded-Client-Cert "";
            proxy_set_header Client-Cert "";
            proxy_set_header Client-Cert-Chain "";
            proxy_set_header SSL_CLIENT_CERT "";
        }}
    }}
"""


@dataclass
class Nginx:
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_nginx(directory: Path, server_block: str, port: int) -> Nginx:
    """nginx in the foreground with its own prefix, pid file and logs in ``directory``."""
    if not os.access(NGINX, os.X_OK):
        pytest.skip(f"{NGINX} is missing (apt-get install nginx)")
    temp = directory / "temp"
    temp.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{server_block}
}}
"""
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    nginx = Nginx(port, process, directory)
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"nginx exited: {stderr}{nginx.error_log()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return nginx
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"nginx did not start: {nginx.error_log()}") from None
            time.sleep(0.05)


def stop_nginx(nginx: Nginx) -> None:
    nginx.process.terminate()
    try:
        nginx.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        nginx.process.kill()
        nginx.process.wait()
    if nginx.process.stderr is not None:
        nginx.process.stderr.close()

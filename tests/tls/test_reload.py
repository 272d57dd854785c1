"""SIGHUP on the real ``partnergate serve``: a renewed server certificate and a replaced CA
bundle reach new connections, and open connections carry on."""

from __future__ import annotations

import os
import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from partnergate.security import pki
from partnergate.security.certificates import der_bytes

from ..conftest import free_port
from .conftest import (
    PASSWORD,
    Connection,
    TLSServer,
    client_context,
    refused,
    start_tls_server,
    stop,
)


def install(source: Path, target: Path) -> None:
    """As a renewal tool does: write beside, then rename over the old file."""
    temporary = target.with_suffix(".new")
    temporary.write_bytes(source.read_bytes())
    os.replace(temporary, target)


@pytest.fixture
def live(
    request: pytest.FixtureRequest, tmp_path: Path, store_url: str, made: SimpleNamespace
) -> Iterator[TLSServer]:
    """A server whose certificate, key and CA bundle are files it may see replaced; a
    parameter sets its number of workers."""
    files = tmp_path / "live"
    files.mkdir()
    install(made.server.chain_path, files / "server.pem")
    install(made.server.key_path, files / "server.key")
    install(made.ca.cert_path, files / "client-ca.pem")
    port = free_port()
    env = {
        "PARTNERGATE_HTTPS": f"127.0.0.1:{port}",
        "PARTNERGATE_TLS_CERT": str(files / "server.pem"),
        "PARTNERGATE_TLS_KEY": str(files / "server.key"),
        "PARTNERGATE_CLIENT_CA": str(files / "client-ca.pem"),
        "PARTNERGATE_CLIENT_CERT": "required",
    }
    workers = getattr(request, "param", 2)
    env["PARTNERGATE_WORKERS"] = str(workers)
    server = start_tls_server(tmp_path, store_url, env, port)
    WORKERS[port] = workers
    try:
        yield server
    finally:
        stop(server.process)
        del WORKERS[port]


WORKERS: dict[int, int] = {}
"""The number of worker processes of each live server, by its port."""


def sighup(server: TLSServer, times: int) -> None:
    """Send SIGHUP and wait until every worker has logged its ``times``-th reload of the
    TLS listener (each worker reloads its own: a new connection may reach any of them)."""
    server.process.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    wanted = times * WORKERS[server.https_port]
    while _listener_reloads(server.log) < wanted:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)


def _listener_reloads(log: str) -> int:
    return sum(1 for line in log.splitlines() if "SIGHUP: " in line and "TLS listener" in line)


def test_sighup_renews_for_new_connections_and_keeps_open_ones(
    live: TLSServer, made: SimpleNamespace, tmp_path: Path
) -> None:
    files = tmp_path / "live"
    new_ca = pki.init_ca(tmp_path / "new-ca", "renewed CA")
    renewed = pki.issue_server(new_ca, tmp_path / "renewed", ["127.0.0.1"])
    new_client = pki.issue_client(new_ca, tmp_path / "renewed", "new-client", password=PASSWORD)

    with Connection(live.https_port, client_context(made, made.good)) as kept:
        assert kept.get().status == 200
        assert kept.peer_certificate() == der_bytes(made.server.certificate)

        install(renewed.chain_path, files / "server.pem")
        install(renewed.key_path, files / "server.key")
        install(new_ca.cert_path, files / "client-ca.pem")
        sighup(live, 1)
        assert "SIGHUP: TLS listener 127.0.0.1:" in live.log and " reloaded" in live.log

        fresh_context = client_context(made, new_client, ca=new_ca.cert_path)
        with Connection(live.https_port, fresh_context) as fresh:
            assert fresh.get().status == 200
            assert fresh.peer_certificate() == der_bytes(renewed.certificate)
        # the old CA is gone from the bundle: its client is refused on a new connection
        assert refused(live.https_port, client_context(made, made.good, ca=new_ca.cert_path))

        # the connection opened before the reload still works, with the old certificate
        assert kept.get().status == 200
        assert kept.peer_certificate() == der_bytes(made.server.certificate)


def test_sighup_with_a_broken_file_keeps_the_previous_certificates(
    live: TLSServer, made: SimpleNamespace, tmp_path: Path
) -> None:
    (tmp_path / "live" / "server.key").write_text("half a key")
    sighup(live, 1)
    assert "SIGHUP: --tls-key" in live.log
    assert "keeps the previous files" in live.log
    with Connection(live.https_port, client_context(made, made.good)) as connection:
        assert connection.get().status == 200
        assert connection.peer_certificate() == der_bytes(made.server.certificate)


@pytest.mark.parametrize("live", [1], indirect=True)  # each worker keeps its own sessions
def test_tls_1_2_resumption_survives_renewals_but_not_a_ca_taken_out(
    live: TLSServer, made: SimpleNamespace, tmp_path: Path
) -> None:
    files = tmp_path / "live"
    context = client_context(made, made.good, ssl.TLSVersion.TLSv1_2)
    first = Connection(live.https_port, context)
    assert first.get().status == 200
    session = first.tls.session
    first.shutdown()
    assert session is not None

    def resumed() -> bool:
        again = Connection(live.https_port, context, session=session)
        assert again.get().status == 200
        reused = again.tls.session_reused
        again.shutdown()
        return reused

    assert resumed()
    renewed = pki.issue_server(made.ca, tmp_path / "renewed", ["127.0.0.1"])
    install(renewed.chain_path, files / "server.pem")
    install(renewed.key_path, files / "server.key")
    other = pki.init_ca(tmp_path / "other-ca", "another partner's CA")
    (files / "client-ca.pem").write_bytes(
        made.ca.cert_path.read_bytes() + other.cert_path.read_bytes()
    )
    sighup(live, 1)
    assert resumed()  # a new server certificate and an added CA leave sessions alone

    install(other.cert_path, files / "client-ca.pem")
    sighup(live, 2)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        resumed()

"""The TLS listener of the real ``partnergate serve``: who gets through the handshake.

OpenSSL verifies client certificates against ``--client-ca``: the chain (intermediates
sent by the client), the validity period and the extended key usage (clientAuth).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from partnergate.security.certificates import der_bytes

from ..conftest import cli, free_port
from .conftest import Connection, TLSServer, client_context, refused

BAD = ["untrusted", "expired", "not_yet_valid", "wrong_eku"]
VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


def test_good_certificate_gets_through(required_server: TLSServer, made: SimpleNamespace) -> None:
    with Connection(required_server.https_port, client_context(made, made.good)) as connection:
        reply = connection.get()
        assert (reply.status, reply.body) == (200, b'{"status":"ok"}')
        assert connection.peer_certificate() == der_bytes(made.server.certificate)
        assert connection.get().status == 200  # kept alive


def test_certificate_issued_by_an_intermediate_the_client_sends(
    required_server: TLSServer, made: SimpleNamespace
) -> None:
    # --client-ca holds only the root; the client's chain file carries the intermediate
    context = client_context(made, made.via_intermediate)
    with Connection(required_server.https_port, context) as connection:
        assert connection.get().status == 200


def test_certificate_without_extended_key_usage_is_for_any_purpose(
    required_server: TLSServer, made: SimpleNamespace
) -> None:
    context = client_context(made, made.no_eku)
    with Connection(required_server.https_port, context) as connection:
        assert connection.get().status == 200


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.name)
@pytest.mark.parametrize("case", [*BAD, "none"])
def test_required_refuses_in_the_handshake(
    required_server: TLSServer, made: SimpleNamespace, case: str, version: ssl.TLSVersion
) -> None:
    bundle = None if case == "none" else getattr(made, case)
    assert refused(required_server.https_port, client_context(made, bundle, version))


def test_refused_in_the_handshake_itself_with_tls_1_2(
    required_server: TLSServer, made: SimpleNamespace
) -> None:
    context = client_context(made, made.wrong_eku, ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", required_server.https_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_optional_lets_a_client_without_certificate_in(
    optional_server: TLSServer, made: SimpleNamespace
) -> None:
    with Connection(optional_server.https_port, client_context(made, None)) as connection:
        assert connection.get().status == 200
    with Connection(optional_server.https_port, client_context(made, made.good)) as connection:
        assert connection.get().status == 200


@pytest.mark.parametrize("case", BAD)
def test_optional_still_refuses_a_bad_certificate(
    optional_server: TLSServer, made: SimpleNamespace, case: str
) -> None:
    # DECISIONS D5: Python's ssl offers no verify callback to downgrade a failure
    assert refused(optional_server.https_port, client_context(made, getattr(made, case)))


def test_plain_http_beside_tls_serves_the_same_app(required_server: TLSServer) -> None:
    import httpx

    reply = httpx.get(required_server.process.url + "/health", timeout=10)
    assert reply.json() == {"status": "ok"}
    assert f"listening on https://127.0.0.1:{required_server.https_port}" in required_server.log
    assert "client certificates required" in required_server.log


# --- the command line -----------------------------------------------------------------------


def test_serve_with_flags_only(tmp_path: Path, store_url: str, made: SimpleNamespace) -> None:
    port = free_port()
    env = {**os.environ, "PARTNERGATE_DATA_DIR": str(tmp_path)}
    args = [
        "serve",
        "--db",
        store_url,
        "--http",
        "off",
        "--https",
        f"127.0.0.1:{port}",
        "--tls-cert",
        str(made.server.chain_path),
        "--tls-key",
        str(made.server.key_path),
        "--client-ca",
        str(made.ca.cert_path),
        "--client-cert",
        "required",
        "--trusted-proxy",
        "10.0.0.0/8",
        "--trusted-proxy",
        "192.0.2.1/32",
    ]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "partnergate", *args], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with Connection(port, client_context(made, made.good)) as connection:
                    assert connection.get().status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        assert refused(port, client_context(made, None))
        assert "listening on http://" not in (tmp_path / "serve.log").read_text()
    finally:
        process.terminate()
        process.wait(15)
        log.close()


@pytest.fixture
def tls_args(made: SimpleNamespace) -> list[str]:
    return [
        "--https",
        f"127.0.0.1:{free_port()}",
        "--tls-cert",
        str(made.server.chain_path),
        "--tls-key",
        str(made.server.key_path),
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--https", "127.0.0.1:8443"], "Error: --https needs --tls-cert FILE and --tls-key FILE"),
        (["--https", "nowhere"], "Error: --https must be HOST:PORT, got 'nowhere'"),
        (["TLS", "--client-cert", "required"], "needs --client-ca FILE"),
        (["TLS", "--client-ca", "/nonexistent.pem"], "/nonexistent.pem: No such file or directory"),
        (["TLS", "--tls-key", "CA_KEY"], "the key does not belong to the certificate"),
        (["TLS", "--tls-key", "CA_CERT"], "not a PEM private key"),
        (["TLS", "--tls-cert", "CA_KEY"], "PEM holds PRIVATE KEY, no CERTIFICATE"),
        (["--trusted-proxy", "10.0.0.300/8"], "trusted proxy '10.0.0.300/8'"),
        (["--trusted-proxy", "10.0.0.0/8"], "trusted_proxies needs client_ca"),
        (["--http", "off"], "Error: no listener"),
        (["TLS", "--https", "BUSY"], "cannot listen on 127.0.0.1:"),
    ],
)
def test_serve_refuses_settings_it_cannot_use_in_one_line(
    tmp_path: Path,
    store_url: str,
    made: SimpleNamespace,
    tls_args: list[str],
    extra: list[str],
    message: str,
) -> None:
    args = ["serve", "--db", store_url, "--http", f"127.0.0.1:{free_port()}"]
    if extra and extra[0] == "TLS":
        args += tls_args
        extra = extra[1:]
    busy = socket.create_server(("127.0.0.1", 0))
    replace = {
        "CA_KEY": str(made.ca.key_path),
        "CA_CERT": str(made.ca.cert_path),
        "BUSY": f"127.0.0.1:{busy.getsockname()[1]}",
    }
    args += [replace.get(a, a) for a in extra]
    env = {**os.environ, "PARTNERGATE_DATA_DIR": str(tmp_path)}
    try:
        done = cli(*args, env=env)
    finally:
        busy.close()
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr

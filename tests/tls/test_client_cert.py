"""The client certificate as the app sees it: the ASGI ``tls`` extension of our TLS
listener, and :func:`client_certificate` on it and behind a real nginx.

The server is :class:`partnergate.server.Server` in this process, around the small app
below that answers with what it saw; nginx is Debian's, configured as
``docs/deploy-nginx.md`` says.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.types import ASGIApp, Receive, Scope, Send

from partnergate.config import ConfigError, Settings
from partnergate.security import pki
from partnergate.security.certificates import der_bytes, sha256_thumbprint
from partnergate.server import H11TLSProtocol, HttpToolsTLSProtocol
from partnergate.web.client_cert import CertificateTrust, client_certificate

from ..conftest import free_port
from .conftest import (
    Connection,
    InProcess,
    Nginx,
    client_context,
    nginx_server_block,
    start_nginx,
    stop_nginx,
)

UNTRUSTED_PEER = "127.0.0.2"
IANA = {
    "TLS_AES_128_GCM_SHA256": 0x1301,  # RFC 8446 B.4
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,  # RFC 5289
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,  # RFC 7905
}


def echo_app(settings: Settings, trust: CertificateTrust) -> ASGIApp:
    """Answers every request with its ``client``, its ``tls`` extension and what
    :func:`client_certificate` makes of it; ``?noverify`` turns verify_forwarded_certs off."""
    variants = {b"": settings, b"noverify": replace(settings, verify_forwarded_certs=False)}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        result = client_certificate(scope, variants[scope["query_string"]], trust)
        cert = result.certificate
        seen = {
            "client": scope["client"][0],
            "tls": (scope.get("extensions") or {}).get("tls"),
            "subject": cert.subject.rfc4514_string() if cert else None,
            "sha256": sha256_thumbprint(cert) if cert else None,
            "chain": len(result.chain),
            "source": result.source,
            "refusal": result.refusal,
            "status": result.status,
            "reason": result.reason,
        }
        body = json.dumps(seen).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.fixture(scope="module")
def settings(made: SimpleNamespace) -> Settings:
    return Settings(
        http="127.0.0.1:0",
        https="127.0.0.1:0",
        tls_cert=str(made.server.chain_path),
        tls_key=str(made.server.key_path),
        client_ca=str(made.root_and_intermediate),
        client_cert="optional",
        trusted_proxies=("127.0.0.1/32",),
    )


@pytest.fixture(scope="module", params=[HttpToolsTLSProtocol, H11TLSProtocol])
def app_server(request: pytest.FixtureRequest, settings: Settings) -> Iterator[InProcess]:
    """Listeners: plain HTTP (``ports[0]``) and TLS (``ports[1]``), with either protocol."""
    server = InProcess(echo_app(settings, CertificateTrust.from_settings(settings)), settings)
    server.server.configs[1].http = request.param
    with server:
        yield server


def over_tls(
    server: InProcess,
    made: SimpleNamespace,
    bundle: pki.Bundle | None,
    headers: dict[str, str] | None = None,
    source: str | None = None,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> dict[str, Any]:
    context = client_context(made, bundle, maximum)
    with Connection(server.ports[1], context, source=source) as connection:
        reply = connection.get("/", headers)
        assert reply.status == 200
        return dict(json.loads(reply.body), cipher=connection.tls.cipher()[0])


def over_http(
    port: int, headers: dict[str, str], source: str = "127.0.0.1", query: str = ""
) -> Any:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        reply = client.get(f"http://127.0.0.1:{port}/?{query}", headers=headers)
    assert reply.status_code == 200
    return reply.json()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode("ascii")


def escaped(bundle: pki.Bundle) -> str:
    """As nginx's ``$ssl_client_escaped_cert``."""
    return quote(pem(bundle.certificate), safe="")


# --- the ASGI tls extension ------------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_extension(
    app_server: InProcess, made: SimpleNamespace, version: ssl.TLSVersion
) -> None:
    seen = over_tls(app_server, made, made.good, maximum=version)
    assert seen["tls"] == {
        "server_cert": pem(made.server.certificate),
        "client_cert_chain": [pem(made.good.certificate)],  # the leaf: Python 3.11 (D4)
        "client_cert_name": "CN=Sender_CERT",
        "client_cert_error": None,
        "tls_version": {ssl.TLSVersion.TLSv1_2: 0x0303, ssl.TLSVersion.TLSv1_3: 0x0304}[version],
        "cipher_suite": IANA[seen["cipher"]],
    }


def test_every_request_on_a_kept_alive_connection_has_it(
    app_server: InProcess, made: SimpleNamespace
) -> None:
    with Connection(app_server.ports[1], client_context(made, made.good)) as connection:
        first, second = (json.loads(connection.get("/").body) for _ in range(2))
    assert first["tls"] == second["tls"]
    assert second["tls"]["client_cert_name"] == "CN=Sender_CERT"


def test_tls_without_client_certificate(app_server: InProcess, made: SimpleNamespace) -> None:
    tls = over_tls(app_server, made, None)["tls"]
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    assert tls["server_cert"] == pem(made.server.certificate)


def test_plain_http_has_no_tls_extension(app_server: InProcess) -> None:
    assert over_http(app_server.ports[0], {})["tls"] is None


# --- client_certificate(): our TLS listener -----------------------------------------------------


def test_certificate_from_the_tls_listener(app_server: InProcess, made: SimpleNamespace) -> None:
    seen = over_tls(app_server, made, made.via_intermediate, source=UNTRUSTED_PEER)
    assert seen["source"] == "tls" and seen["refusal"] is None
    assert seen["sha256"] == sha256_thumbprint(made.via_intermediate.certificate)
    assert seen["reason"] == (
        "certificate 'CN=via-intermediate' presented on the TLS connection, verified in the "
        "handshake"
    )


def test_no_certificate_on_the_tls_listener(app_server: InProcess, made: SimpleNamespace) -> None:
    seen = over_tls(app_server, made, None)
    assert (seen["subject"], seen["refusal"]) == (None, None)
    assert seen["reason"] == "no client certificate on the TLS connection"


def test_forged_header_from_an_untrusted_tls_peer_is_ignored_and_logged(
    app_server: InProcess, made: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    forged = {"X-SSL-Client-Cert": escaped(made.no_eku)}
    with caplog.at_level(logging.WARNING, logger="partnergate.auth"):
        seen = over_tls(app_server, made, made.good, forged, source=UNTRUSTED_PEER)
    assert (seen["source"], seen["subject"]) == ("tls", "CN=Sender_CERT")
    assert "certificate header x-ssl-client-cert from untrusted address 127.0.0.2 ignored" in (
        caplog.text
    )


def test_header_of_a_trusted_proxy_wins_over_its_own_tls_certificate(
    app_server: InProcess, made: SimpleNamespace
) -> None:
    seen = over_tls(app_server, made, made.good, {"X-SSL-Client-Cert": escaped(made.no_eku)})
    assert (seen["source"], seen["subject"]) == ("proxy", "CN=no-eku")


# --- client_certificate(): headers sent straight to the app ---------------------------------------


def test_forged_header_from_an_untrusted_address_is_ignored_and_logged(
    app_server: InProcess, made: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    forged = {
        "X-SSL-Client-Cert": escaped(made.good),
        "SSL_CLIENT_CERT": base64.b64encode(der_bytes(made.good.certificate)).decode(),
    }
    with caplog.at_level(logging.WARNING, logger="partnergate.auth"):
        seen = over_http(app_server.ports[0], forged, source=UNTRUSTED_PEER)
    assert seen["client"] == UNTRUSTED_PEER
    assert (seen["subject"], seen["refusal"], seen["reason"]) == (
        None,
        None,
        "no client certificate",
    )
    record = next(r for r in caplog.records if r.name == "partnergate.auth")
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "GET /: certificate headers x-ssl-client-cert, ssl_client_cert from untrusted "
        "address 127.0.0.2 ignored"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("garbage", "x-ssl-client-cert from trusted proxy 127.0.0.1: escaped PEM is not URL"),
        ("-----BEGIN%20CERTIFICATE-----%0AAAAA", "no complete BEGIN/END CERTIFICATE block"),
    ],
)
def test_garbage_from_the_trusted_proxy_is_refused(
    app_server: InProcess, value: str, reason: str
) -> None:
    seen = over_http(app_server.ports[0], {"X-SSL-Client-Cert": value})
    assert (seen["subject"], seen["refusal"], seen["status"]) == (None, "malformed", 400)
    assert reason in seen["reason"]


def test_header_twice_from_the_trusted_proxy_is_refused(
    app_server: InProcess, made: SimpleNamespace
) -> None:
    headers = [("X-SSL-Client-Cert", escaped(made.good)), ("X-SSL-Client-Cert", escaped(made.good))]
    with httpx.Client(timeout=10) as client:
        seen = client.get(f"http://127.0.0.1:{app_server.ports[0]}/", headers=headers).json()
    assert seen["refusal"] == "malformed"
    assert "appears more than once" in seen["reason"]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("untrusted", "untrusted issuer"),
        ("expired", "expired"),
        ("not_yet_valid", "not yet valid"),
        ("wrong_eku", "no clientAuth in extended key usage"),
    ],
)
def test_forwarded_certificate_failing_verification_is_rejected(
    app_server: InProcess, made: SimpleNamespace, case: str, reason: str
) -> None:
    seen = over_http(app_server.ports[0], {"X-SSL-Client-Cert": escaped(getattr(made, case))})
    assert (seen["subject"], seen["refusal"], seen["status"]) == (None, "rejected", 401)
    assert seen["reason"].startswith(f"x-ssl-client-cert from trusted proxy 127.0.0.1: {reason}")


def test_verify_forwarded_certs_off_takes_the_proxys_word(
    app_server: InProcess, made: SimpleNamespace
) -> None:
    headers = {"X-SSL-Client-Cert": escaped(made.untrusted)}
    seen = over_http(app_server.ports[0], headers, query="noverify")
    assert (seen["subject"], seen["source"]) == ("CN=untrusted", "proxy")
    assert seen["reason"].endswith("taken on the proxy's word (verify_forwarded_certs = false)")


def test_every_header_format_from_the_trusted_proxy(
    app_server: InProcess, made: SimpleNamespace
) -> None:
    der = der_bytes(made.good.certificate)
    for headers in (
        {
            "X-Forwarded-Client-Cert": f'Hash={sha256_thumbprint(made.good.certificate)};Cert="'
            f'{escaped(made.good)}"'
        },
        {"Client-Cert": f":{base64.b64encode(der).decode()}:"},
        {"SSL_CLIENT_CERT": base64.b64encode(der).decode()},
    ):
        seen = over_http(app_server.ports[0], headers)
        assert (seen["subject"], seen["source"]) == ("CN=Sender_CERT", "proxy"), headers


# --- behind nginx ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx(
    tmp_path_factory: pytest.TempPathFactory, made: SimpleNamespace, settings: Settings
) -> Iterator[tuple[Nginx, InProcess]]:
    app_server = InProcess(echo_app(settings, CertificateTrust.from_settings(settings)), settings)
    with app_server:
        port = free_port()
        block = nginx_server_block(
            f"127.0.0.1:{port}",
            f"127.0.0.1:{app_server.ports[0]}",
            made.server.chain_path,
            made.server.key_path,
            made.root_and_intermediate,
        )
        proxy = start_nginx(tmp_path_factory.mktemp("nginx"), block, port)
        try:
            yield proxy, app_server
        finally:
            stop_nginx(proxy)


def through_nginx(
    nginx: tuple[Nginx, InProcess],
    made: SimpleNamespace,
    bundle: pki.Bundle | None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    with Connection(nginx[0].port, client_context(made, bundle)) as connection:
        reply = connection.get("/", headers)
    return reply.status, reply.body


@pytest.mark.parametrize("case", ["good", "via_intermediate"])
def test_certificate_through_nginx(
    nginx: tuple[Nginx, InProcess], made: SimpleNamespace, case: str
) -> None:
    bundle = getattr(made, case)
    status, body = through_nginx(nginx, made, bundle)
    assert status == 200, body
    seen = json.loads(body)
    assert seen["sha256"] == sha256_thumbprint(bundle.certificate)
    assert (seen["source"], seen["refusal"], seen["client"]) == ("proxy", None, "127.0.0.1")
    subject = bundle.certificate.subject.rfc4514_string()
    assert seen["reason"] == (
        f"certificate '{subject}' in x-ssl-client-cert from trusted proxy 127.0.0.1, "
        "verified against client_ca"
    )


def test_nginx_replaces_certificate_headers_the_client_sends(
    nginx: tuple[Nginx, InProcess], made: SimpleNamespace
) -> None:
    forged = {
        "X-SSL-Client-Cert": escaped(made.no_eku),
        "X-Forwarded-Client-Cert": f'Cert="{escaped(made.no_eku)}"',
        "Client-Cert": f":{base64.b64encode(der_bytes(made.no_eku.certificate)).decode()}:",
    }
    status, body = through_nginx(nginx, made, made.good, forged)
    assert status == 200, body
    assert json.loads(body)["subject"] == "CN=Sender_CERT"


@pytest.mark.parametrize("case", ["untrusted", "expired", "not_yet_valid", "wrong_eku", None])
def test_nginx_refuses_at_its_door(
    nginx: tuple[Nginx, InProcess], made: SimpleNamespace, case: str | None
) -> None:
    status, body = through_nginx(nginx, made, getattr(made, case) if case else None)
    assert status == 400
    assert b"SSL certificate" in body  # nginx's own page, the app is not reached


def test_the_documented_configuration_is_the_tested_one() -> None:
    tls = Path("/etc/partnergate/tls")
    block = nginx_server_block(
        "443",
        "127.0.0.1:8080",
        tls / "server-chain.pem",
        tls / "server.key",
        tls / "client-ca.pem",
    )
    doc = Path(__file__).parents[2] / "docs" / "deploy-nginx.md"
    assert f"```nginx{block}```" in doc.read_text()


def test_certificate_trust_reload(tmp_path: Path, made: SimpleNamespace) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(made.ca.cert_path.read_bytes())
    settings = Settings(client_ca=str(bundle), trusted_proxies=("10.0.0.0/8",))
    trust = CertificateTrust.from_settings(settings)
    assert trust.store is not None and trust.store.certificates == (made.ca.certificate,)
    bundle.write_bytes(made.stranger.cert_path.read_bytes())
    trust.reload()
    assert trust.store.certificates == (made.stranger.certificate,)
    bundle.write_text("not a bundle")
    with pytest.raises(ConfigError, match="no complete BEGIN/END CERTIFICATE block"):
        trust.reload()
    assert trust.store.certificates == (made.stranger.certificate,)

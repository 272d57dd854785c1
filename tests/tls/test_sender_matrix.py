"""The seed's Sender_CERT over real TLS and through a trusted proxy, and every way a sender
can fail to get in: each is refused with the right status, logged with why, and none of
them reaches a flow (no message processing log entry)."""

from __future__ import annotations

import secrets
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import httpx
import jwt
import pytest

from partnergate.security import pki

from ..conftest import Api, Server, free_port, start_server, stop_server
from .conftest import PASSWORD, client_context

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "partner-directory"
SEND = "/http/partner_directory"
PROXY = "127.0.0.2"
MESSAGE = b"<Message><Receiver>Receiver_1</Receiver></Message>"


@dataclass
class Setup:
    server: Server
    https: str
    made: SimpleNamespace
    out: Path


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, store_url: str, made: SimpleNamespace
) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("matrix")
    https_port = free_port()
    env = {
        "PARTNERGATE_FLOWS": str(EXAMPLES),
        "PARTNERGATE_HTTPS": f"127.0.0.1:{https_port}",
        "PARTNERGATE_TLS_CERT": str(made.server.cert_path),
        "PARTNERGATE_TLS_KEY": str(made.server.key_path),
        "PARTNERGATE_CLIENT_CA": str(made.ca.cert_path),
        "PARTNERGATE_TRUSTED_PROXIES": f"{PROXY}/32",
        "PARTNERGATE_TOKEN_LIFETIME": "6",
    }
    srv = start_server(tmp, store_url, env)
    try:
        receiver_pw = secrets.token_urlsafe(8)
        srv.add_user("matrix_receiver", receiver_pw, "receiver_1.send")
        with Api(srv) as api:
            api.delete("Partners('Receiver_1')")  # the store is shared: start from a clean slate
            body = pki.mapping_body(made.good.certificate, "user_for_sender_cert")
            assert api.post("CertificateUserMappings", json=body).status_code == 201
            api.post("AuthorizedUsers", json={"User": "user_for_sender_cert", "Pid": "Sender_CERT"})
            api.post(
                "StringParameters",
                json={"Pid": "Receiver_1", "Id": "ADDRESS", "Value": f"{srv.url}/cxf/receiver_1"},
            )
            api.post(
                "UserCredentialParameters",
                json={
                    "Pid": "Receiver_1",
                    "Id": "USER",
                    "User": "matrix_receiver",
                    "Password": receiver_pw,
                },
            )
        yield Setup(srv, f"https://127.0.0.1:{https_port}", made, tmp)
    finally:
        stop_server(srv)


def over_tls(s: Setup, bundle: pki.Bundle | None, path: str = SEND, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
    with httpx.Client(verify=client_context(s.made, bundle), timeout=30) as client:
        if path == SEND:
            return client.post(
                s.https + path, content=MESSAGE, headers={"Content-Type": "text/xml"}, **kw
            )
        return client.get(s.https + path, **kw)


def via(s: Setup, source: str, headers: dict[str, str], **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.post(
            s.server.url + SEND,
            content=MESSAGE,
            headers={"Content-Type": "text/xml", **headers},
            **kw,
        )


def forwarded(bundle: pki.Bundle) -> dict[str, str]:
    """What nginx sends: ``$ssl_client_escaped_cert`` in X-SSL-Client-Cert."""
    return {"X-SSL-Client-Cert": quote(bundle.cert_path.read_text())}


def message_count(s: Setup) -> int:
    with Api(s.server) as api:
        return int(api.get("MessageProcessingLogs/$count").text)


def refused(s: Setup, response: httpx.Response, status: int, why: str) -> None:
    assert response.status_code == status, response.text
    deadline = time.monotonic() + 5
    while why not in s.server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert why in s.server.log()


def test_sender_cert_over_tls_and_through_the_proxy(setup: Setup) -> None:
    r = over_tls(setup, setup.made.good)
    assert r.status_code == 200, r.text
    assert r.text == "<Content>Receiver_1 greets Sender_CERT</Content>"
    r = via(setup, PROXY, forwarded(setup.made.good))
    assert r.text == "<Content>Receiver_1 greets Sender_CERT</Content>"


def test_adapter_attributes_name_the_certificate(setup: Setup) -> None:
    """SAP's ``AdapterAttributes`` of a message: what the sender adapter saw of the
    certificate, over the TLS listener and through the trusted proxy alike."""
    cert = setup.made.good.certificate
    subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    direct = over_tls(setup, setup.made.good)
    proxied = via(setup, PROXY, forwarded(setup.made.good))
    with Api(setup.server) as api:
        for response, client_ip in ((direct, "127.0.0.1"), (proxied, PROXY)):
            assert response.status_code == 200, response.text
            guid = response.headers["sap_messageprocessinglogid"]
            found = api.get(f"MessageProcessingLogs('{guid}')/AdapterAttributes")
            seen = {a["Name"]: a["Value"] for a in found.json()["d"]["results"]}
            assert seen["AuthenticationKind"] == "certificate"
            assert seen["CertificateSubject"] == subject
            assert seen["CertificateIssuer"] == issuer
            assert seen["AuthenticatedUser"] == "user_for_sender_cert"
            assert seen["ClientIp"] == client_ip


def test_whoami_explains_the_certificate(setup: Setup) -> None:
    me = over_tls(setup, setup.made.good, "/whoami").json()
    assert me["authenticated"] and me["user"] == "user_for_sender_cert"
    assert me["partner"] == "Sender_CERT" and "ESBMessaging.send" in me["roles"]
    assert any("CertificateUserMappings(" in step for step in me["explanation"])
    stranger = pki.issue_client(setup.made.ca, setup.out, "whoami_stranger", password=PASSWORD)
    them = over_tls(setup, stranger, "/whoami")
    assert them.status_code == 401 and "not mapped" in them.json()["reason"]


@pytest.mark.parametrize("case", ["untrusted", "expired", "not_yet_valid", "wrong_eku"])
def test_bad_certificates_fail_the_handshake(setup: Setup, case: str) -> None:
    before = message_count(setup)
    with pytest.raises(
        (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)
    ):
        over_tls(setup, getattr(setup.made, case))
    assert message_count(setup) == before


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("untrusted", "untrusted issuer"),
        ("expired", "expired"),
        ("not_yet_valid", "not yet valid"),
        ("wrong_eku", "clientAuth"),
    ],
)
def test_bad_forwarded_certificates_are_401(setup: Setup, case: str, why: str) -> None:
    before = message_count(setup)
    refused(setup, via(setup, PROXY, forwarded(getattr(setup.made, case))), 401, why)
    assert message_count(setup) == before


def test_identity_refusals(setup: Setup) -> None:
    s = setup
    before = message_count(s)
    refused(s, over_tls(s, None), 401, "no credentials")

    unmapped = pki.issue_client(s.made.ca, s.out, "unmapped", password=PASSWORD)
    refused(s, over_tls(s, unmapped), 401, "is not mapped to a user")

    outsider = pki.issue_client(s.made.ca, s.out, "outsider", password=PASSWORD)
    with Api(s.server) as api:
        r = api.post(
            "CertificateUserMappings",
            json=pki.mapping_body(outsider.certificate, "not_a_partner_user"),
        )
        mapping_id = r.json()["d"]["Id"]
    refused(s, over_tls(s, outsider), 403, "user 'not_a_partner_user' lacks role ESBMessaging.send")

    gone = pki.issue_client(s.made.ca, s.out, "gone", password=PASSWORD)
    with Api(s.server) as api:
        gone_id = api.post(
            "CertificateUserMappings",
            json=pki.mapping_body(gone.certificate, "user_for_sender_cert"),
        ).json()["d"]["Id"]
        assert over_tls(s, gone).status_code == 200
        assert api.delete(f"CertificateUserMappings('{gone_id}')").status_code == 204
    refused(s, over_tls(s, gone), 401, f"its Id would be '{gone_id}'")
    assert mapping_id

    refused(
        s,
        via(s, "127.0.0.1", forwarded(s.made.good)),
        401,
        "from untrusted address 127.0.0.1 ignored",
    )
    refused(s, via(s, PROXY, {"X-SSL-Client-Cert": "%%%garbage"}), 400, "x-ssl-client-cert")

    before_ok = message_count(s)
    assert before_ok >= before
    user = ("matrix_basic", "right-password")
    s.server.add_user(*user)
    refused(
        s,
        via(s, "127.0.0.1", {}, auth=(user[0], "wrong-password")),
        401,
        "wrong secret for user 'matrix_basic'",
    )
    assert message_count(s) == before_ok


def test_token_refusals(setup: Setup) -> None:
    s = setup
    s.server.add_client("matrix_client", "first-secret")
    with Api(s.server) as api:
        api.post(
            "AuthorizedUsers", json={"User": "oauth_client_matrix_client", "Pid": "Sender_MATRIX"}
        )

    def token(secret: str) -> str:
        r = httpx.post(
            s.server.url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("matrix_client", secret),
        )
        return r.json()["access_token"]

    def bearer(value: str) -> httpx.Response:
        return via(s, "127.0.0.1", {"Authorization": f"Bearer {value}"})

    good = token("first-secret")
    assert bearer(good).text == "<Content>Receiver_1 greets Sender_MATRIX</Content>"
    before = message_count(s)
    head, payload, signature = good.split(".")
    refused(s, bearer(f"{head}.{payload}.{signature[::-1]}"), 401, "bearer token refused")
    wrong_key = jwt.encode(
        {"sub": "matrix_client", "iss": "partnergate"}, "x" * 32, algorithm="HS256"
    )
    refused(s, bearer(wrong_key), 401, "bearer token refused")
    time.sleep(7)
    refused(s, bearer(good), 401, "expired")
    fresh = token("first-secret")
    done = s.server.cli(
        "clients", "set-secret", "matrix_client", "--secret-stdin", stdin="second-secret\n"
    )
    assert done.returncode == 0
    refused(s, bearer(fresh), 401, "predates a change of its secret")
    assert message_count(s) == before

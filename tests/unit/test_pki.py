"""The development PKI: its files, the keystore, the mapping body, and real TLS with it."""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import ssl
import stat
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from partnergate.security import pki
from partnergate.security.certificates import (
    TrustStore,
    der_bytes,
    load_certificate,
    load_certificates,
    mapping_id,
    verify_client_chain,
)

PASSWORD = "s3cret-for-soapui"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("pki")
    ca = pki.init_ca(root / "ca")
    intermediate = pki.issue_intermediate(ca, root / "intermediate")
    stranger = pki.init_ca(root / "stranger", "stranger CA")
    out = root / "out"
    return SimpleNamespace(
        root=root,
        ca=ca,
        intermediate=intermediate,
        server=pki.issue_server(ca, out, ["localhost", "127.0.0.1", "::1"]),
        client=pki.issue_client(ca, out, "Sender_CERT", password=PASSWORD),
        via_intermediate=pki.issue_client(intermediate, out, "via-intermediate", password=PASSWORD),
        server_only=pki.issue_client(
            ca, out, "server-only", password=PASSWORD, eku=[ExtendedKeyUsageOID.SERVER_AUTH]
        ),
        untrusted=pki.issue_client(stranger, out, "untrusted", password=PASSWORD),
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def extension(cert: x509.Certificate, kind: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


# --- CA -----------------------------------------------------------------------------------


def test_init_ca_writes_a_self_signed_ca(made: SimpleNamespace) -> None:
    ca = made.ca
    assert ca.key_path == made.root / "ca" / "ca.key"
    assert mode(ca.key_path) == 0o600
    assert load_certificate(ca.cert_path.read_bytes()) == ca.certificate
    cert = ca.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=partnergate dev CA"
    cert.verify_directly_issued_by(cert)
    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = extension(cert, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert ca.chain == (cert,)


def test_init_ca_refuses_to_replace_a_ca(made: SimpleNamespace) -> None:
    with pytest.raises(FileExistsError, match="use load_ca"):
        pki.init_ca(made.root / "ca")


def test_rsa_ca(tmp_path: Path) -> None:
    ca = pki.init_ca(tmp_path, "rsa CA", key_type="rsa")
    assert isinstance(ca.key, rsa.RSAPrivateKey) and ca.key.key_size == 2048


def test_load_ca_round_trip(made: SimpleNamespace) -> None:
    loaded = pki.load_ca(made.root / "ca")
    assert loaded.certificate == made.ca.certificate
    assert loaded.key.public_key() == made.ca.key.public_key()
    assert loaded.parents == ()
    again = pki.load_ca(made.root / "intermediate")
    assert (
        again.chain
        == made.intermediate.chain
        == (
            made.intermediate.certificate,
            made.ca.certificate,
        )
    )


def test_load_ca_notices_a_key_of_another_ca(made: SimpleNamespace, tmp_path: Path) -> None:
    (tmp_path / "ca.key").write_bytes((made.root / "stranger" / "ca.key").read_bytes())
    (tmp_path / "ca.crt").write_bytes(made.ca.cert_path.read_bytes())
    with pytest.raises(ValueError, match="does not belong to"):
        pki.load_ca(tmp_path)


def test_intermediate(made: SimpleNamespace) -> None:
    cert = made.intermediate.certificate
    assert cert.issuer == made.ca.certificate.subject
    cert.verify_directly_issued_by(made.ca.certificate)
    assert extension(cert, x509.BasicConstraints).value.ca
    assert load_certificates((made.root / "intermediate" / "ca-chain.pem").read_bytes()) == [
        cert,
        made.ca.certificate,
    ]


# --- server and client certificates --------------------------------------------------------


def test_server_certificate(made: SimpleNamespace) -> None:
    server = made.server
    cert = server.certificate
    san = extension(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert list(extension(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert server.key_path.name == "server.key" and mode(server.key_path) == 0o600
    assert load_certificates(server.chain_path.read_bytes()) == [cert, made.ca.certificate]
    with pytest.raises(ValueError, match="at least one host"):
        pki.issue_server(made.ca, made.root / "out", [])


def test_client_files(made: SimpleNamespace) -> None:
    client = made.client
    assert [
        p.name for p in (client.key_path, client.cert_path, client.chain_path, client.p12_path)
    ] == [
        "Sender_CERT.key",
        "Sender_CERT.crt",
        "Sender_CERT-chain.pem",
        "Sender_CERT.p12",
    ]
    assert mode(client.key_path) == mode(client.p12_path) == 0o600
    assert load_certificate(client.cert_path.read_bytes()) == client.certificate
    assert load_certificates(client.chain_path.read_bytes()) == [
        client.certificate,
        made.ca.certificate,
    ]
    cert = client.certificate
    assert cert.subject.rfc4514_string() == "CN=Sender_CERT"
    assert list(extension(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not extension(cert, x509.BasicConstraints).value.ca
    assert load_certificates(made.via_intermediate.chain_path.read_bytes()) == [
        made.via_intermediate.certificate,
        made.intermediate.certificate,
        made.ca.certificate,
    ]


def test_pkcs12_keystore_opens_with_the_password(made: SimpleNamespace) -> None:
    client = made.via_intermediate
    key, cert, cas = pkcs12.load_key_and_certificates(
        client.p12_path.read_bytes(), PASSWORD.encode()
    )
    assert cert == client.certificate
    assert key is not None and key.public_key() == client.key.public_key()
    assert cas == [made.intermediate.certificate, made.ca.certificate]
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(client.p12_path.read_bytes(), b"wrong")


def test_legacy_pkcs12_for_old_java(made: SimpleNamespace, tmp_path: Path) -> None:
    client = pki.issue_client(
        made.ca, tmp_path, "soapui", password=PASSWORD, key_type="rsa", legacy_p12=True
    )
    key, cert, cas = pkcs12.load_key_and_certificates(
        client.p12_path.read_bytes(), PASSWORD.encode()
    )
    assert cert == client.certificate and cas == [made.ca.certificate]
    assert isinstance(key, rsa.RSAPrivateKey)


def test_certificates_meant_to_fail(made: SimpleNamespace, tmp_path: Path) -> None:
    no_eku = pki.issue_client(made.ca, tmp_path, "no-eku", password=PASSWORD, eku=None)
    with pytest.raises(x509.ExtensionNotFound):
        no_eku.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(extension(made.server_only.certificate, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "../escape"}, "must be letters, digits"),
        ({"name": ".hidden"}, "must be letters, digits"),
        ({"password": ""}, "non-empty password"),
        ({"days": 0}, "days must be positive"),
        ({"key_type": "dsa"}, "key_type must be"),
    ],
)
def test_issue_client_refuses(
    made: SimpleNamespace, tmp_path: Path, options: dict, message: str
) -> None:
    arguments = {"name": "ok", "password": PASSWORD, **options}
    name = arguments.pop("name")
    with pytest.raises(ValueError, match=message):
        pki.issue_client(made.ca, tmp_path, name, **arguments)


def test_pki_certificates_pass_the_forwarded_chain_check(made: SimpleNamespace) -> None:
    store = TrustStore.from_pem_file(made.ca.cert_path)
    verify_client_chain(made.client.certificate, [], store)
    verify_client_chain(made.via_intermediate.certificate, [made.intermediate.certificate], store)


# --- mapping body --------------------------------------------------------------------------


def test_mapping_body_is_the_seeds_body(made: SimpleNamespace) -> None:
    body = pki.mapping_body(made.client.certificate, "user_for_sender_cert")
    assert list(body) == ["User", "Certificate"]
    assert body["User"] == "user_for_sender_cert"
    assert body["Certificate"].startswith("LS0tLS1CRUdJTi")
    assert base64.b64decode(body["Certificate"]) == made.client.cert_path.read_bytes()
    assert load_certificate(json.loads(json.dumps(body))["Certificate"]) == made.client.certificate


# --- real TLS with Python's ssl ------------------------------------------------------------


def server_context(made: SimpleNamespace) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(made.server.chain_path, made.server.key_path)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(made.ca.cert_path)
    return context


def client_context(made: SimpleNamespace, bundle: pki.Bundle) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=made.ca.cert_path)
    context.load_cert_chain(bundle.chain_path, bundle.key_path)
    return context


def exchange(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> dict[str, object]:
    """One connection on 127.0.0.1: the server echoes a line and notes the peer's cert."""
    outcome: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            try:
                connection, _ = listener.accept()
                connection.settimeout(10)
                with server.wrap_socket(connection, server_side=True) as tls:
                    outcome["peer"] = tls.getpeercert(binary_form=True)
                    tls.sendall(b"echo " + tls.recv(100))
            except (ssl.SSLError, OSError) as exc:
                outcome["server_error"] = exc

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                with client.wrap_socket(raw, server_hostname=host) as tls:
                    tls.sendall(b"hello")
                    outcome["reply"] = tls.recv(100)
        except (ssl.SSLError, OSError) as exc:
            outcome["client_error"] = exc
        thread.join(10)
    return outcome


def test_mutual_tls_handshake(made: SimpleNamespace) -> None:
    for host in ("127.0.0.1", "localhost"):  # both SAN kinds are checked by the client
        outcome = exchange(server_context(made), client_context(made, made.client), host)
        assert outcome.get("reply") == b"echo hello", outcome
        assert outcome["peer"] == der_bytes(made.client.certificate)
        assert mapping_id(load_certificate(outcome["peer"])) == mapping_id(made.client.certificate)


def test_mutual_tls_through_an_intermediate(made: SimpleNamespace) -> None:
    # the server trusts only the root; the client sends leaf and intermediate
    outcome = exchange(
        server_context(made), client_context(made, made.via_intermediate), "localhost"
    )
    assert outcome.get("reply") == b"echo hello", outcome
    assert outcome["peer"] == der_bytes(made.via_intermediate.certificate)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("untrusted", "self-signed certificate in certificate chain"),
        ("server_only", "unsuitable certificate purpose"),
    ],
)
def test_openssl_refuses_what_verify_client_chain_refuses(
    made: SimpleNamespace, name: str, why: str
) -> None:
    outcome = exchange(server_context(made), client_context(made, getattr(made, name)), "localhost")
    assert "reply" not in outcome and "peer" not in outcome
    error = outcome.get("server_error")
    assert isinstance(error, ssl.SSLCertVerificationError), outcome
    assert error.verify_message == why

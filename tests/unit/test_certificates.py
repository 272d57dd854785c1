"""Certificate parsing, SAP's mapping facts and client-chain verification.

Certificates are made by the test with the development PKI; nothing is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from partnergate.model.errors import InvalidValue
from partnergate.security import pki
from partnergate.security.certificates import (
    CertificateError,
    CertificateInfo,
    CertificateRejected,
    RejectReason,
    TrustStore,
    der_bytes,
    issuer_dn,
    load_certificate,
    load_certificates,
    mapping_id,
    pem_base64,
    serial_hex,
    sha256_thumbprint,
    subject_dn,
    valid_until_ms,
    verify_client_chain,
)

PASSWORD = "changeit"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("pki")
    ca = pki.init_ca(root / "ca")
    intermediate = pki.issue_intermediate(ca, root / "intermediate")
    short_intermediate = pki.issue_intermediate(ca, root / "short", "short-lived CA", days=1)
    stranger = pki.init_ca(root / "stranger", "stranger CA")
    impostor = pki.init_ca(root / "impostor")  # same name as the trusted CA, other key
    out = root / "out"

    def client(issuer: pki.CA, name: str, **options: object) -> x509.Certificate:
        return pki.issue_client(issuer, out, name, password=PASSWORD, **options).certificate

    return SimpleNamespace(
        ca=ca,
        intermediate=intermediate,
        short_intermediate=short_intermediate,
        store=TrustStore.from_pem_file(ca.cert_path),
        good=client(ca, "Sender_CERT"),
        rsa=client(ca, "rsa", key_type="rsa"),
        via_intermediate=client(intermediate, "via-intermediate"),
        via_short=client(short_intermediate, "via-short"),
        expired=client(ca, "expired", not_before=NOW - timedelta(days=30), days=1),
        future=client(ca, "future", not_before=NOW + timedelta(days=1)),
        server_only=client(ca, "server-only", eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
        any_purpose=client(ca, "any-purpose", eku=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]),
        no_eku=client(ca, "no-eku", eku=None),
        untrusted=client(stranger, "untrusted"),
        untrusted_expired=client(
            stranger, "untrusted-expired", not_before=NOW - timedelta(days=30), days=1
        ),
        forged=client(impostor, "forged"),
        self_signed=stranger.certificate,
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- load_certificate: every form a client sends -------------------------------------------


def input_forms(cert: x509.Certificate) -> dict[str, bytes | str]:
    text = pem(cert)
    crlf = text.replace(b"\n", b"\r\n")
    body = b"".join(text.splitlines()[1:-1])
    return {
        "PEM bytes": text,
        "PEM str": text.decode(),
        "PEM with CRLF": crlf,
        "PEM with text before it": b"Bag Attributes\n    friendlyName: x\n" + text,
        "PEM on one line, spaces for line breaks": text.replace(b"\n", b" "),
        "PEM with tab-indented lines (nginx $ssl_client_cert)": text.replace(b"\n", b"\n\t"),
        "base64 of PEM (SAP)": base64.b64encode(text).decode(),
        "base64 of CRLF PEM (the seed's body)": base64.b64encode(crlf).decode(),
        "base64 of DER": base64.b64encode(der_bytes(cert)).decode(),
        "base64 of DER with MIME line breaks": base64.encodebytes(der_bytes(cert)),
        "base64 of DER without padding": base64.b64encode(der_bytes(cert)).rstrip(b"="),
        "PEM body only": body,
        "raw DER": der_bytes(cert),
    }


def test_every_input_form_loads_the_same_certificate(certs: SimpleNamespace) -> None:
    for label, data in input_forms(certs.good).items():
        assert load_certificate(data) == certs.good, label


def test_raw_der_ending_in_a_whitespace_byte_is_not_trimmed(certs: SimpleNamespace) -> None:
    builder = (
        x509.CertificateBuilder()
        .subject_name(certs.good.subject)
        .issuer_name(certs.good.issuer)
        .public_key(certs.good.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    for _ in range(5000):  # ECDSA signatures are random: about 1 in 43 ends in one
        cert = builder.sign(certs.ca.key, hashes.SHA256())
        if der_bytes(cert)[-1:].isspace():
            break
    else:
        pytest.fail("no DER ending in a whitespace byte was made")
    assert load_certificate(der_bytes(cert)) == cert


def test_seed_style_certificate_value_starts_like_sap_examples(certs: SimpleNamespace) -> None:
    # SAP's examples of the Certificate property all start with base64("-----BEGIN")
    assert pem_base64(certs.good).startswith("LS0tLS1CRUdJTi")
    seed_style = base64.b64encode(pem(certs.good).replace(b"\n", b"\r\n")).decode()
    assert base64.b64decode(seed_style).endswith(b"-----END CERTIFICATE-----\r\n")
    assert load_certificate(seed_style) == certs.good


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"", "empty"),
        ("   \n", "empty"),
        ("hello, world!", "neither PEM, DER nor base64"),
        ("aGVsbG8gd29ybGQ=", "base64 decodes to neither PEM text nor DER"),
        ("aGVsbG8gd29ybGQ", "base64 decodes to neither PEM text nor DER"),
        ("abc=def", "invalid base64"),
        ("Zertifikat für Sender_CERT", "non-ASCII"),
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n", "no complete BEGIN/END CERTIFICATE block"),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "invalid base64"),
        (b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n", "malformed DER"),
        (b"\x30\x82\x01\x00" + b"\x00" * 20, "malformed DER"),
    ],
)
def test_garbage_is_not_a_certificate(data: bytes | str, detail: str) -> None:
    with pytest.raises(CertificateError) as caught:
        load_certificate(data)
    error = caught.value
    assert isinstance(error, InvalidValue)  # the API answers 400
    assert error.field == "Certificate"
    assert error.message.startswith("not an X.509 certificate: ")
    assert detail in error.message


def test_a_private_key_is_refused_without_echoing_it(certs: SimpleNamespace) -> None:
    key_pem = certs.ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for data in (key_pem, base64.b64encode(key_pem)):
        with pytest.raises(CertificateError, match="PEM holds PRIVATE KEY, no CERTIFICATE") as e:
            load_certificate(data)
        body = b"".join(key_pem.splitlines()[1:-1]).decode()
        assert body[:20] not in e.value.message


def test_one_certificate_expected_but_a_chain_can_be_loaded(certs: SimpleNamespace) -> None:
    chain = pem(certs.via_intermediate) + pem(certs.intermediate.certificate)
    with pytest.raises(CertificateError, match="expected one certificate, got 2"):
        load_certificate(chain)
    loaded = load_certificates(base64.b64encode(chain))
    assert loaded == [certs.via_intermediate, certs.intermediate.certificate]


# --- what SAP and the UI derive ------------------------------------------------------------


def test_mapping_id_is_md5_of_der_in_lower_case_hex(certs: SimpleNamespace) -> None:
    expected = hashlib.md5(der_bytes(certs.good)).hexdigest()
    assert mapping_id(certs.good) == expected
    assert re.fullmatch(r"[0-9a-f]{32}", expected)  # SAP: Id is String(32)
    for data in input_forms(certs.good).values():
        assert mapping_id(load_certificate(data)) == expected


def test_facts_of_a_certificate(certs: SimpleNamespace) -> None:
    cert = certs.good
    assert sha256_thumbprint(cert) == hashlib.sha256(der_bytes(cert)).hexdigest()
    assert subject_dn(cert) == "CN=Sender_CERT"
    assert issuer_dn(cert) == "CN=partnergate dev CA"
    serial = serial_hex(cert)
    assert int(serial, 16) == cert.serial_number
    assert len(serial) % 2 == 0 and serial == serial.lower()
    until = valid_until_ms(cert)
    assert until == int(cert.not_valid_after_utc.timestamp()) * 1000
    assert base64.b64decode(pem_base64(cert)) == pem(cert)
    assert load_certificate(pem_base64(cert)) == cert


def test_certificate_info(certs: SimpleNamespace) -> None:
    info = CertificateInfo.from_certificate(certs.good)
    assert info.mapping_id == mapping_id(certs.good)
    assert info.sha256 == sha256_thumbprint(certs.good)
    assert (info.subject, info.issuer) == ("CN=Sender_CERT", "CN=partnergate dev CA")
    assert info.serial == serial_hex(certs.good)
    assert info.not_after == certs.good.not_valid_after_utc
    assert info.valid_until_ms == valid_until_ms(certs.good)
    assert info.key == "EC secp256r1"
    assert info.extended_key_usage == ("clientAuth",)
    assert info.subject_alt_names == ()
    assert info.is_ca is False
    assert info.is_valid_at()
    assert not CertificateInfo.from_certificate(certs.expired).is_valid_at()
    assert not CertificateInfo.from_certificate(certs.future).is_valid_at()

    assert CertificateInfo.from_certificate(certs.rsa).key == "RSA 2048"
    assert CertificateInfo.from_certificate(certs.no_eku).extended_key_usage is None
    ca_info = CertificateInfo.from_certificate(certs.ca.certificate)
    assert ca_info.is_ca and ca_info.subject == ca_info.issuer


# --- trust store ---------------------------------------------------------------------------


def test_trust_store_from_a_bundle_with_text_between_blocks(
    certs: SimpleNamespace, tmp_path: Path
) -> None:
    bundle = (
        b"# partnergate client CAs\n"
        + pem(certs.ca.certificate)
        + b"\nsubject=CN = stranger CA\n"
        + pem(certs.self_signed)
    )
    path = tmp_path / "client-ca.pem"
    path.write_bytes(bundle)
    store = TrustStore.from_pem_file(path)
    assert len(store) == 2
    assert store.certificates == (certs.ca.certificate, certs.self_signed)
    verify_client_chain(certs.untrusted, [], store)  # the stranger CA is trusted here


def test_trust_store_needs_a_certificate(tmp_path: Path) -> None:
    path = tmp_path / "empty.pem"
    path.write_bytes(b"# nothing here\n")
    with pytest.raises(ValueError, match=r"empty\.pem: no complete BEGIN/END CERTIFICATE block"):
        TrustStore.from_pem_file(path)
    with pytest.raises(ValueError, match="at least one CA certificate"):
        TrustStore([])


# --- verify_client_chain -------------------------------------------------------------------


def test_good_client_certificates_are_accepted(certs: SimpleNamespace) -> None:
    verify_client_chain(certs.good, [], certs.store)
    verify_client_chain(certs.rsa, [], certs.store)
    # no extendedKeyUsage means any purpose (RFC 5280 4.2.1.12), as OpenSSL treats it
    verify_client_chain(certs.no_eku, [], certs.store)


def test_chain_through_an_intermediate(certs: SimpleNamespace) -> None:
    verify_client_chain(certs.via_intermediate, [certs.intermediate.certificate], certs.store)
    # the client may send the root too, and in any order
    verify_client_chain(
        certs.via_intermediate,
        [certs.ca.certificate, certs.intermediate.certificate],
        certs.store,
    )


def reject(
    certs: SimpleNamespace,
    leaf: x509.Certificate,
    *chain: x509.Certificate,
    at: datetime | None = None,
) -> CertificateRejected:
    with pytest.raises(CertificateRejected) as caught:
        verify_client_chain(leaf, list(chain), certs.store, at)
    error = caught.value
    assert str(error) == f"{error.reason}: {error.detail}"
    return error


def test_untrusted_issuer(certs: SimpleNamespace) -> None:
    error = reject(certs, certs.untrusted)
    assert error.reason is RejectReason.UNTRUSTED_ISSUER
    assert error.detail == "issuer 'CN=stranger CA' is not a trusted CA"


def test_untrusted_root_sent_along_by_the_client(certs: SimpleNamespace) -> None:
    error = reject(certs, certs.untrusted, certs.self_signed)
    assert error.reason is RejectReason.UNTRUSTED_ISSUER
    assert "chain ends at 'CN=stranger CA'" in error.detail


def test_self_signed_client_certificate(certs: SimpleNamespace) -> None:
    error = reject(certs, certs.self_signed)
    assert error.reason is RejectReason.UNTRUSTED_ISSUER
    assert error.detail == "self-signed certificate 'CN=stranger CA' is not a trusted CA"


def test_intermediate_missing(certs: SimpleNamespace) -> None:
    error = reject(certs, certs.via_intermediate)
    assert error.reason is RejectReason.UNTRUSTED_ISSUER
    assert "'CN=partnergate dev intermediate CA' is not a trusted CA" in error.detail


def test_trust_is_reported_before_validity(certs: SimpleNamespace) -> None:
    assert reject(certs, certs.untrusted_expired).reason is RejectReason.UNTRUSTED_ISSUER


def test_issuer_with_a_trusted_name_but_another_key(certs: SimpleNamespace) -> None:
    error = reject(certs, certs.forged)
    assert error.reason is RejectReason.BAD_SIGNATURE
    assert "signature of 'CN=forged' does not verify" in error.detail


def test_expired(certs: SimpleNamespace) -> None:
    error = reject(certs, certs.expired)
    assert error.reason is RejectReason.EXPIRED
    assert re.fullmatch(
        r"certificate 'CN=expired' expired at \d{4}-\d\d-\d\dT[\d:]{8}Z", error.detail
    )


def test_not_yet_valid(certs: SimpleNamespace) -> None:
    error = reject(certs, certs.future)
    assert error.reason is RejectReason.NOT_YET_VALID
    assert error.detail.startswith("certificate 'CN=future' is valid from ")


def test_validation_time_is_a_parameter(certs: SimpleNamespace) -> None:
    later = certs.good.not_valid_after_utc + timedelta(seconds=1)
    assert reject(certs, certs.good, at=later).reason is RejectReason.EXPIRED
    # naive datetimes are UTC
    verify_client_chain(
        certs.future, [], certs.store, (NOW + timedelta(days=2)).replace(tzinfo=None)
    )


def test_expired_intermediate(certs: SimpleNamespace) -> None:
    verify_client_chain(certs.via_short, [certs.short_intermediate.certificate], certs.store)
    error = reject(
        certs,
        certs.via_short,
        certs.short_intermediate.certificate,
        at=NOW + timedelta(days=3),
    )
    assert error.reason is RejectReason.EXPIRED
    assert error.detail.startswith("intermediate CA 'CN=short-lived CA' expired at ")


def test_expired_trusted_ca(tmp_path: Path) -> None:
    root = pki.init_ca(tmp_path / "ca", "short-lived root", days=1)
    leaf = pki.issue_client(root, tmp_path, "leaf", password=PASSWORD, days=30).certificate
    store = TrustStore([root.certificate])
    verify_client_chain(leaf, [], store)
    with pytest.raises(CertificateRejected) as caught:
        verify_client_chain(leaf, [], store, NOW + timedelta(days=3))
    assert caught.value.reason is RejectReason.EXPIRED
    assert caught.value.detail.startswith("trusted CA 'CN=short-lived root' expired at ")


def test_a_client_certificate_cannot_act_as_a_ca(certs: SimpleNamespace, tmp_path: Path) -> None:
    bundle = pki.issue_client(certs.ca, tmp_path, "sneaky", password=PASSWORD)
    sneaky = pki.CA(bundle.key, bundle.certificate, tmp_path, certs.ca.chain)
    child = pki.issue_client(sneaky, tmp_path, "child", password=PASSWORD).certificate
    error = reject(certs, child, bundle.certificate)
    assert error.reason is RejectReason.INVALID
    assert error.detail.startswith("validation failed")


def test_server_certificate_is_not_a_client_certificate(certs: SimpleNamespace) -> None:
    error = reject(certs, certs.server_only)
    assert error.reason is RejectReason.NO_CLIENT_AUTH
    assert error.detail == "certificate 'CN=server-only' is for serverAuth"


def test_any_extended_key_usage_is_not_client_auth(certs: SimpleNamespace) -> None:
    # OpenSSL's SSL client purpose refuses it as well
    error = reject(certs, certs.any_purpose)
    assert error.reason is RejectReason.NO_CLIENT_AUTH
    assert error.detail.endswith("is for anyExtendedKeyUsage")

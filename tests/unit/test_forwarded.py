"""Certificates forwarded by a reverse proxy: who may forward, and each header format.

Header values are built the way each proxy builds them, from certificates made by the test.
"""

from __future__ import annotations

import base64
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from partnergate.security import pki
from partnergate.security.certificates import (
    TrustStore,
    der_bytes,
    sha256_thumbprint,
    verify_client_chain,
)
from partnergate.security.forwarded import (
    DEFAULT_HEADER_NAMES,
    ForwardedCertError,
    ForwardedCertificate,
    ForwardedResult,
    HeaderFormat,
    HeaderSpec,
    TrustedProxies,
    extract_forwarded_certificate,
    header_spec,
    parse_client_cert,
    parse_escaped_pem,
    parse_ssl_client_cert,
    parse_xfcc,
)

PROXIES = TrustedProxies(["10.0.0.0/24", "2001:db8::/32", "192.168.7.7"])


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("pki")
    ca = pki.init_ca(root / "ca")
    intermediate = pki.issue_intermediate(ca, root / "intermediate")
    out = root / "out"
    leaf = pki.issue_client(intermediate, out, "Sender_CERT", password="x").certificate
    other = pki.issue_client(ca, out, "other", password="x").certificate
    return SimpleNamespace(
        ca=ca.certificate,
        intermediate=intermediate.certificate,
        leaf=leaf,
        other=other,
        store=TrustStore([ca.certificate]),
    )


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def escaped(*certs: x509.Certificate) -> str:
    """As nginx's ``$ssl_client_escaped_cert`` and Envoy's Cert/Chain encode PEM."""
    return quote("".join(pem(c) for c in certs), safe="")


def sf_binary(cert: x509.Certificate) -> str:
    return ":" + base64.b64encode(der_bytes(cert)).decode() + ":"


# --- trusted proxies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "trusted"),
    [
        ("10.0.0.1", True),
        ("10.0.0.255", True),
        ("10.0.1.1", False),
        ("192.168.7.7", True),
        ("192.168.7.8", False),
        ("2001:db8::1", True),
        ("2001:db9::1", False),
        ("::ffff:10.0.0.9", True),  # IPv4 peer of a dual-stack listener
        ("::1", False),
        ("not-an-address", False),
        ("", False),
        (None, False),
    ],
)
def test_trusted_proxies(ip: str | None, trusted: bool) -> None:
    assert PROXIES.contains(ip) is trusted
    assert (ip in PROXIES) is trusted


def test_no_trusted_proxies_trusts_nobody() -> None:
    assert not TrustedProxies([]).contains("127.0.0.1")


@pytest.mark.parametrize("cidr", ["10.0.0.1/8", "10.0.0.0/33", "proxy.example.com", "", "::1/129"])
def test_bad_cidr_is_a_configuration_error(cidr: str) -> None:
    with pytest.raises(ValueError, match="trusted proxy"):
        TrustedProxies(["127.0.0.1", cidr])


# --- header names and formats --------------------------------------------------------------


def test_known_headers_and_custom_ones() -> None:
    assert DEFAULT_HEADER_NAMES == (
        "x-forwarded-client-cert",
        "x-ssl-client-cert",
        "client-cert",
        "ssl_client_cert",
    )
    assert header_spec("X-Forwarded-Client-Cert") == HeaderSpec(
        "x-forwarded-client-cert", HeaderFormat.XFCC
    )
    assert header_spec("SSL_CLIENT_CERT").format is HeaderFormat.BASE64
    assert header_spec("X-Client-Cert = escaped-pem") == HeaderSpec(
        "x-client-cert", HeaderFormat.ESCAPED_PEM
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x-client-cert", "name its format as 'x-client-cert=<format>'"),
        ("x-client-cert=pem", "format must be one of xfcc, escaped-pem, rfc9440, base64"),
        ("=xfcc", "empty name"),
    ],
)
def test_bad_header_spec(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        header_spec(spec)


# --- Envoy x-forwarded-client-cert ---------------------------------------------------------


def test_xfcc_cert_and_chain(made: SimpleNamespace) -> None:
    value = (
        "By=spiffe://partnergate.example/ns/default/sa/gateway;"
        f"Hash={sha256_thumbprint(made.leaf)};"
        f'Cert="{escaped(made.leaf)}";'
        f'Chain="{escaped(made.leaf, made.intermediate)}";'
        'Subject="CN=Sender_CERT,O=Partner \\"One\\", Inc.";URI=;DNS=sender.example'
    )
    assert parse_xfcc(value) == (der_bytes(made.leaf), [der_bytes(made.intermediate)])


def test_xfcc_takes_the_element_of_the_nearest_proxy(made: SimpleNamespace) -> None:
    farther = f"By=spiffe://edge;Hash={sha256_thumbprint(made.other)};Cert={escaped(made.other)}"
    nearest = f"By=spiffe://gateway;Cert={escaped(made.leaf)}"
    assert parse_xfcc(f"{farther},{nearest}") == (der_bytes(made.leaf), [])
    assert parse_xfcc(f"{nearest}, {farther}")[0] == der_bytes(made.other)


def test_xfcc_chain_only(made: SimpleNamespace) -> None:
    value = f"Hash={sha256_thumbprint(made.leaf)};Chain={escaped(made.leaf, made.intermediate)}"
    assert parse_xfcc(value) == (der_bytes(made.leaf), [der_bytes(made.intermediate)])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("By=spiffe://gateway;Hash=abcd", "neither Cert nor Chain"),
        ('By="spiffe://gateway;Cert=x', "unbalanced double quote"),
        ("By;Cert=x", "is not key=value"),
        ("Cert=hello", "XFCC Cert is not URL-encoded PEM"),
        (
            "Cert=-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----%0A",
            "XFCC Cert: not an X.509 certificate: malformed DER",
        ),
    ],
)
def test_xfcc_garbage(value: str, reason: str) -> None:
    with pytest.raises(ForwardedCertError, match=reason):
        parse_xfcc(value)


def test_xfcc_hash_must_match_cert(made: SimpleNamespace) -> None:
    value = f"Hash={sha256_thumbprint(made.other)};Cert={escaped(made.leaf)}"
    with pytest.raises(ForwardedCertError, match="Hash does not match"):
        parse_xfcc(value)


def test_xfcc_cert_twice(made: SimpleNamespace) -> None:
    with pytest.raises(ForwardedCertError, match="cert twice"):
        parse_xfcc(f"Cert={escaped(made.other)};Cert={escaped(made.leaf)}")


# --- nginx $ssl_client_escaped_cert --------------------------------------------------------


def test_nginx_escaped_pem(made: SimpleNamespace) -> None:
    value = escaped(made.leaf)
    assert "%2B" in value or "%2F" in value  # base64's + and / are escaped, + is no space
    assert parse_escaped_pem(value) == (der_bytes(made.leaf), [])
    with_chain = escaped(made.leaf, made.intermediate)
    assert parse_escaped_pem(with_chain) == (der_bytes(made.leaf), [der_bytes(made.intermediate)])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("hello", "escaped PEM is not URL-encoded PEM"),
        (
            "-----BEGIN%20PRIVATE%20KEY-----%0AAAAA%0A-----END%20PRIVATE%20KEY-----%0A",
            "PEM holds PRIVATE KEY, no CERTIFICATE",
        ),
        ("-----BEGIN%20CERTIFICATE-----%0AMIIB", "no complete BEGIN/END CERTIFICATE block"),
    ],
)
def test_nginx_garbage(value: str, reason: str) -> None:
    with pytest.raises(ForwardedCertError, match=reason):
        parse_escaped_pem(value)


# --- RFC 9440 Client-Cert and Client-Cert-Chain --------------------------------------------


def test_rfc9440_client_cert(made: SimpleNamespace) -> None:
    assert parse_client_cert(sf_binary(made.leaf)) == (der_bytes(made.leaf), [])
    chain = f"{sf_binary(made.intermediate)}, {sf_binary(made.ca)}"
    assert parse_client_cert(sf_binary(made.leaf), chain) == (
        der_bytes(made.leaf),
        [der_bytes(made.intermediate), der_bytes(made.ca)],
    )


def test_rfc9440_lenient_where_rfc8941_asks(made: SimpleNamespace) -> None:
    unpadded = sf_binary(made.leaf).replace("=", "")
    assert parse_client_cert(unpadded)[0] == der_bytes(made.leaf)
    assert parse_client_cert(sf_binary(made.leaf) + ";a=1")[0] == der_bytes(made.leaf)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("MIIB", "not a structured-field byte sequence"),
        (":!!!!:", "not a structured-field byte sequence"),
        (":A:", "invalid base64"),
        (":aGVsbG8=:", "Client-Cert: not a DER certificate"),
        ("::", "not a DER certificate"),
    ],
)
def test_rfc9440_garbage(value: str, reason: str) -> None:
    with pytest.raises(ForwardedCertError, match=reason):
        parse_client_cert(value)


def test_rfc9440_garbage_in_chain(made: SimpleNamespace) -> None:
    with pytest.raises(ForwardedCertError, match="Client-Cert-Chain"):
        parse_client_cert(sf_binary(made.leaf), "garbage")


# --- SAP SSL_CLIENT_CERT -------------------------------------------------------------------


def test_sap_ssl_client_cert(made: SimpleNamespace) -> None:
    expected = (der_bytes(made.leaf), [])
    assert parse_ssl_client_cert(base64.b64encode(der_bytes(made.leaf)).decode()) == expected
    assert parse_ssl_client_cert(base64.b64encode(pem(made.leaf).encode()).decode()) == expected
    assert parse_ssl_client_cert(pem(made.leaf).replace("\n", " ")) == expected  # Apache


@pytest.mark.parametrize("value", ["hello!", "aGVsbG8=", "-----BEGIN CERTIFICATE----- x"])
def test_sap_garbage(value: str) -> None:
    with pytest.raises(ForwardedCertError, match="SSL_CLIENT_CERT: not an X.509 certificate"):
        parse_ssl_client_cert(value)


# --- the decision for a request ------------------------------------------------------------


def test_trusted_proxy_forwards_a_certificate(made: SimpleNamespace) -> None:
    headers = {"x-ssl-client-cert": escaped(made.leaf), "content-type": "text/xml"}
    result = extract_forwarded_certificate("10.0.0.5", headers, PROXIES)
    assert result == ForwardedResult(
        certificate=ForwardedCertificate(der_bytes(made.leaf), (), "x-ssl-client-cert")
    )
    assert result.certificate is not None and result.certificate.leaf() == made.leaf


def test_forwarded_chain_is_verified_with_the_trust_store(made: SimpleNamespace) -> None:
    headers = {
        "client-cert": sf_binary(made.leaf),
        "client-cert-chain": sf_binary(made.intermediate),
    }
    result = extract_forwarded_certificate("2001:db8::10", headers, PROXIES)
    assert result.certificate is not None
    assert result.certificate.chain() == [made.intermediate]
    verify_client_chain(result.certificate.leaf(), result.certificate.chain(), made.store)


def test_untrusted_address_is_ignored_with_a_reason(made: SimpleNamespace) -> None:
    headers = {"x-ssl-client-cert": escaped(made.leaf)}
    result = extract_forwarded_certificate("10.1.2.3", headers, PROXIES)
    assert result.certificate is None and result.rejected_reason is None
    assert result.ignored_reason == (
        "certificate header x-ssl-client-cert from untrusted address 10.1.2.3 ignored"
    )
    headers["ssl_client_cert"] = "anything"
    result = extract_forwarded_certificate(None, headers, PROXIES)
    assert result.ignored_reason == (
        "certificate headers x-ssl-client-cert, ssl_client_cert "
        "from untrusted address unknown ignored"
    )


def test_garbage_from_a_trusted_proxy_is_rejected_with_a_reason() -> None:
    headers = {"x-forwarded-client-cert": "By=spiffe://gateway;Hash=abc"}
    result = extract_forwarded_certificate("10.0.0.5", headers, PROXIES)
    assert result.certificate is None and result.ignored_reason is None
    assert result.rejected_reason is not None
    assert result.rejected_reason.startswith(
        "x-forwarded-client-cert from trusted proxy 10.0.0.5: XFCC element carries neither"
    )


def test_no_certificate_headers(made: SimpleNamespace) -> None:
    assert extract_forwarded_certificate("10.0.0.5", {}, PROXIES) == ForwardedResult()
    assert extract_forwarded_certificate("10.1.2.3", {}, PROXIES) == ForwardedResult()
    # nginx sends an empty value when the client presented no certificate
    empty = {"x-ssl-client-cert": "  "}
    assert extract_forwarded_certificate("10.0.0.5", empty, PROXIES) == ForwardedResult()


def test_only_configured_headers_count_and_the_first_one_wins(made: SimpleNamespace) -> None:
    headers = {
        "ssl_client_cert": base64.b64encode(der_bytes(made.other)).decode(),
        "x-client-cert": escaped(made.leaf),
    }
    only_nginx = extract_forwarded_certificate(
        "10.0.0.5", headers, PROXIES, ["x-client-cert=escaped-pem"]
    )
    assert only_nginx.certificate is not None
    assert only_nginx.certificate.leaf_der == der_bytes(made.leaf)
    assert only_nginx.certificate.header == "x-client-cert"

    sap_first = extract_forwarded_certificate(
        "10.0.0.5", headers, PROXIES, ["ssl_client_cert", "x-client-cert=escaped-pem"]
    )
    assert sap_first.certificate is not None
    assert sap_first.certificate.leaf_der == der_bytes(made.other)

    nothing = extract_forwarded_certificate("10.0.0.5", headers, PROXIES, ["client-cert"])
    assert nothing == ForwardedResult()


def test_header_sent_twice_is_refused_unless_xfcc(made: SimpleNamespace) -> None:
    twice = f"{escaped(made.other)}, {escaped(made.leaf)}"
    result = extract_forwarded_certificate("10.0.0.5", {"x-ssl-client-cert": twice}, PROXIES)
    assert result.certificate is None
    assert result.rejected_reason == (
        "x-ssl-client-cert from trusted proxy 10.0.0.5: escaped PEM header appears more than once"
    )
    for parse, value in [
        (parse_ssl_client_cert, "TUlJQg==, TUlJQg=="),
        (parse_client_cert, f"{sf_binary(made.leaf)}, {sf_binary(made.leaf)}"),
    ]:
        with pytest.raises(ForwardedCertError, match="appears more than once"):
            parse(value)

    xfcc = f"Cert={escaped(made.other)}, Cert={escaped(made.leaf)}"
    result = extract_forwarded_certificate("10.0.0.5", {"x-forwarded-client-cert": xfcc}, PROXIES)
    assert result.certificate is not None
    assert result.certificate.leaf_der == der_bytes(made.leaf)

"""Client certificates forwarded by a reverse proxy that terminated the client's TLS.

Lives here: which peers may forward a certificate (``--trusted-proxy``), the header
formats of Envoy, nginx, RFC 9440 and SAP's load balancer, and the decision what a
request's headers mean. Must not know: HTTP frameworks, the store, logging (the caller
logs the reasons returned here), chain verification (see ``certificates``).

A certificate header is a claim of the proxy, so it counts only from a trusted proxy's
address, and that proxy must replace whatever header of that name the client sent
(nginx ``proxy_set_header``; Envoy ``forward_client_cert_details: SANITIZE_SET`` at the
edge). From any other peer these headers are ignored and reported, never used.

Each parser returns ``(leaf_der, chain_ders)``, ``chain_ders`` being the other
certificates the client sent (intermediates, maybe a root), or raises
:class:`ForwardedCertError`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple
from urllib.parse import unquote

from cryptography import x509

from .certificates import CertificateError, der_bytes, load_certificates, sha256_thumbprint

__all__ = [
    "DEFAULT_HEADER_NAMES",
    "ForwardedCertError",
    "ForwardedCertificate",
    "ForwardedResult",
    "HeaderFormat",
    "HeaderSpec",
    "KNOWN_HEADERS",
    "TrustedProxies",
    "extract_forwarded_certificate",
    "header_spec",
    "parse_client_cert",
    "parse_escaped_pem",
    "parse_ssl_client_cert",
    "parse_xfcc",
]

Parsed = tuple[bytes, list[bytes]]


class ForwardedCertError(ValueError):
    """A certificate header that cannot be read; from a trusted proxy this refuses the
    request, since the proxy vouched for a certificate we cannot see."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- who may forward -----------------------------------------------------------------------


class TrustedProxies:
    """Addresses whose certificate headers are believed; empty trusts nobody."""

    __slots__ = ("networks",)

    def __init__(self, cidrs: Iterable[str]) -> None:
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for cidr in cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr.strip()))
            except ValueError as exc:
                raise ValueError(f"trusted proxy {cidr!r}: {exc}") from None
        self.networks = tuple(networks)

    def contains(self, ip: str | None) -> bool:
        """Whether ``ip`` (an ASGI ``client`` host) is a trusted proxy.

        An IPv4 peer of a dual-stack listener appears as ``::ffff:a.b.c.d`` and is
        matched against the IPv4 networks; anything that is not an address is untrusted.
        """
        if not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, str) and self.contains(ip)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]})"


# --- header formats ------------------------------------------------------------------------


class HeaderFormat(StrEnum):
    XFCC = "xfcc"
    """Envoy ``x-forwarded-client-cert``: ``By=...;Hash=...;Cert="...";Chain="..."``."""
    ESCAPED_PEM = "escaped-pem"
    """nginx ``$ssl_client_escaped_cert``: URL-encoded PEM."""
    RFC9440 = "rfc9440"
    """RFC 9440 ``Client-Cert``: a structured-field byte sequence ``:<base64 DER>:``."""
    BASE64 = "base64"
    """SAP's load balancer ``SSL_CLIENT_CERT``: base64 of DER or of PEM."""


KNOWN_HEADERS: Mapping[str, HeaderFormat] = {
    "x-forwarded-client-cert": HeaderFormat.XFCC,
    "x-ssl-client-cert": HeaderFormat.ESCAPED_PEM,
    "client-cert": HeaderFormat.RFC9440,
    "ssl_client_cert": HeaderFormat.BASE64,
}

DEFAULT_HEADER_NAMES: tuple[str, ...] = tuple(KNOWN_HEADERS)


class HeaderSpec(NamedTuple):
    """A configured certificate header: its lower-case name and how its value is written."""

    name: str
    format: HeaderFormat


@functools.lru_cache(maxsize=64)
def header_spec(spec: str) -> HeaderSpec:
    """``name`` of a known header, or ``name=format`` for a header of the proxy's choosing
    (e.g. ``x-client-cert=escaped-pem``). Call it on the configuration at start-up: a bad
    entry raises ValueError there rather than on a partner's request."""
    name, sep, format_name = spec.partition("=")
    name = name.strip().lower()
    if not name:
        raise ValueError(f"certificate header {spec!r}: empty name")
    if sep:
        try:
            return HeaderSpec(name, HeaderFormat(format_name.strip().lower()))
        except ValueError:
            formats = ", ".join(f.value for f in HeaderFormat)
            raise ValueError(
                f"certificate header {spec!r}: format must be one of {formats}"
            ) from None
    if name not in KNOWN_HEADERS:
        raise ValueError(
            f"certificate header {name!r} is not one of {', '.join(KNOWN_HEADERS)}; "
            f"name its format as '{name}=<format>'"
        )
    return HeaderSpec(name, KNOWN_HEADERS[name])


# --- parsers -------------------------------------------------------------------------------

_XFCC_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[^",;]+|[,;]|"')
"""A quoted string (backslash escapes inside), a run of plain text, a separator, or a
stray quote, which is an error. Together they cover every character of a header."""


def parse_xfcc(value: str) -> Parsed:
    """Envoy's ``x-forwarded-client-cert``: the element the nearest proxy added.

    Elements are separated by ``,`` and each proxy on the way appends one, so the last
    is the nearest proxy's; its ``Cert`` is the URL-encoded PEM leaf, ``Chain`` the
    URL-encoded PEM of the whole chain including the leaf, ``Hash`` the SHA-256 of the
    leaf's DER in hex. Values with ``,``, ``;`` or ``=`` are double-quoted.
    (Envoy docs, "HTTP header manipulation", x-forwarded-client-cert.)
    """
    fields = _xfcc_elements(value)[-1]
    cert, chain = fields.get("cert"), fields.get("chain")
    if cert is None and chain is None:
        raise ForwardedCertError(
            "XFCC element carries neither Cert nor Chain "
            "(Envoy: set_current_client_cert_details cert: true, chain: true)"
        )
    chain_certs = _pem_from_url(chain, "XFCC Chain") if chain is not None else []
    leaf = _pem_from_url(cert, "XFCC Cert")[0] if cert is not None else chain_certs[0]
    digest = fields.get("hash")
    if digest is not None and digest.lower() != sha256_thumbprint(leaf):
        raise ForwardedCertError("XFCC Hash does not match the SHA-256 of Cert")
    return _ders(leaf, [c for c in chain_certs if c != leaf])


def _xfcc_elements(value: str) -> list[dict[str, str]]:
    elements: list[dict[str, str]] = [{}]
    pair = ""
    for match in _XFCC_TOKEN.finditer(value):
        token = match.group()
        if token == '"':
            raise ForwardedCertError("XFCC has an unbalanced double quote")
        if token in ",;":
            _add_xfcc_pair(elements[-1], pair)
            pair = ""
            if token == ",":
                elements.append({})
        else:
            pair += token
    _add_xfcc_pair(elements[-1], pair)
    return elements


def _add_xfcc_pair(element: dict[str, str], pair: str) -> None:
    pair = pair.strip()
    if not pair:
        return
    key, sep, raw = pair.partition("=")
    key = key.strip().lower()
    if not sep or not key:
        raise ForwardedCertError(f"XFCC field {pair[:40]!r} is not key=value")
    if key in ("cert", "chain", "hash") and key in element:
        raise ForwardedCertError(f"XFCC element has {key} twice")
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
    element[key] = raw


def parse_escaped_pem(value: str) -> Parsed:
    """nginx ``proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert``: the leaf as
    URL-encoded PEM; any further PEM blocks (as AWS ALB sends) are the chain."""
    certificates = _pem_from_url(_single(value, "escaped PEM"), "escaped PEM")
    return _ders(certificates[0], certificates[1:])


def parse_client_cert(value: str, chain: str | None = None) -> Parsed:
    """RFC 9440: ``Client-Cert`` is a byte sequence ``:<base64 DER>:`` (RFC 8941 3.3.5),
    ``Client-Cert-Chain`` a list of them, the issuer of each following it, never the leaf
    (RFC 9440 2.3, 2.4). Item parameters are allowed and ignored."""
    leaf = _sf_certificate(_single(value, "Client-Cert"), "Client-Cert")
    members = [m for m in chain.split(",") if m.strip()] if chain else []
    return _ders(leaf, [_sf_certificate(m, "Client-Cert-Chain") for m in members])


_SF_BINARY = re.compile(r":([A-Za-z0-9+/]*=*):(;.*)?")


def _sf_certificate(member: str, what: str) -> x509.Certificate:
    match = _SF_BINARY.fullmatch(member.strip())
    if match is None:
        raise ForwardedCertError(f"{what} is not a structured-field byte sequence :...:")
    body = match.group(1).rstrip("=")
    try:
        # RFC 8941 4.2.7: parsers should not fail when "=" padding is missing.
        der = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error as exc:
        raise ForwardedCertError(f"{what}: invalid base64 ({exc})") from None
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ForwardedCertError(f"{what}: not a DER certificate ({exc})") from None


def parse_ssl_client_cert(value: str) -> Parsed:
    """SAP's load balancer ``SSL_CLIENT_CERT``: base64 of the DER, or of the PEM text.
    Single-line PEM (line breaks made spaces, as Apache forwards it) is accepted too."""
    certificates = _load(_single(value, "SSL_CLIENT_CERT"), "SSL_CLIENT_CERT")
    return _ders(certificates[0], certificates[1:])


def _single(value: str, what: str) -> str:
    """A comma never occurs in these values (base64, URL-encoded PEM), so one means the
    header came twice and was joined (RFC 9110 5.3); which of them the proxy set is
    unknowable, so neither is used."""
    if "," in value:
        raise ForwardedCertError(f"{what} header appears more than once")
    return value


def _pem_from_url(value: str, what: str) -> list[x509.Certificate]:
    """URL-decoding with ``unquote``, not ``unquote_plus``: a ``+`` is base64, not space."""
    text = unquote(value.strip())
    if "-----BEGIN" not in text:
        raise ForwardedCertError(f"{what} is not URL-encoded PEM")
    return _load(text, what)


def _load(text: str, what: str) -> list[x509.Certificate]:
    try:
        return load_certificates(text)
    except CertificateError as exc:
        raise ForwardedCertError(f"{what}: {exc.message}") from None


def _ders(leaf: x509.Certificate, chain: Sequence[x509.Certificate]) -> Parsed:
    return der_bytes(leaf), [der_bytes(c) for c in chain]


_PARSERS = {
    HeaderFormat.XFCC: parse_xfcc,
    HeaderFormat.ESCAPED_PEM: parse_escaped_pem,
    HeaderFormat.BASE64: parse_ssl_client_cert,
}


# --- the decision --------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardedCertificate:
    """The certificate a trusted proxy says the client presented; not yet verified."""

    leaf_der: bytes
    chain_ders: tuple[bytes, ...]
    header: str

    def leaf(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.leaf_der)

    def chain(self) -> list[x509.Certificate]:
        return [x509.load_der_x509_certificate(d) for d in self.chain_ders]


@dataclass(frozen=True)
class ForwardedResult:
    """What the certificate headers of one request amount to.

    - ``certificate`` set: a trusted proxy forwarded it; verify it, then map it.
    - ``ignored_reason`` set: headers from an untrusted peer; log, go on without one.
    - ``rejected_reason`` set: a trusted proxy sent garbage; log and refuse the request.
    - all None: no certificate was forwarded.
    """

    certificate: ForwardedCertificate | None = None
    ignored_reason: str | None = None
    rejected_reason: str | None = None


def extract_forwarded_certificate(
    peer_ip: str | None,
    headers: Mapping[str, str],
    proxies: TrustedProxies,
    header_names: Sequence[str] = DEFAULT_HEADER_NAMES,
) -> ForwardedResult:
    """Read the first of ``header_names`` (see :func:`header_spec`) that the request
    carries, if ``peer_ip`` is a trusted proxy.

    ``headers`` has lower-case names and one value each; a header sent twice should be
    joined with ``", "`` (RFC 9110 5.3), which XFCC reads as two elements and every other
    format refuses. An empty value means no certificate (nginx leaves
    ``$ssl_client_escaped_cert`` empty when the client presented none).
    """
    present = [
        (spec, value)
        for spec in map(header_spec, header_names)
        if (value := headers.get(spec.name, "").strip())
    ]
    if not present:
        return ForwardedResult()
    if not proxies.contains(peer_ip):
        names = ", ".join(spec.name for spec, _ in present)
        noun = "header" if len(present) == 1 else "headers"
        peer = peer_ip or "unknown"
        return ForwardedResult(
            ignored_reason=f"certificate {noun} {names} from untrusted address {peer} ignored"
        )
    spec, value = present[0]
    try:
        if spec.format is HeaderFormat.RFC9440:
            leaf, chain = parse_client_cert(value, headers.get(f"{spec.name}-chain"))
        else:
            leaf, chain = _PARSERS[spec.format](value)
    except ForwardedCertError as exc:
        return ForwardedResult(
            rejected_reason=f"{spec.name} from trusted proxy {peer_ip}: {exc.reason}"
        )
    return ForwardedResult(certificate=ForwardedCertificate(leaf, tuple(chain), spec.name))

"""The client certificate of a request: from our TLS listener, or from a trusted proxy.

Lives here: where a request's client certificate comes from and whether it may be used,
before the identity code maps it to a user. Must not know: users, mappings, responses.

- Over partnergate's own TLS listener, OpenSSL verified the certificate in the handshake
  against ``client_ca``, and :mod:`partnergate.server` put it in the ASGI ``tls``
  extension of every request on that connection.
- From a trusted proxy (``trusted_proxies``) it comes in a header
  (:mod:`partnergate.security.forwarded`) and is verified here against ``client_ca``,
  unless ``verify_forwarded_certs`` is off (DECISIONS D5).
- From any other peer, certificate headers are ignored and logged, never used.

A certificate header from a trusted proxy wins over the certificate of the connection
itself, which is the proxy's own when it re-encrypts towards us.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography import x509

from ..config import ConfigError, Settings
from ..security.certificates import CertificateRejected, TrustStore, verify_client_chain
from ..security.forwarded import (
    ForwardedCertificate,
    TrustedProxies,
    extract_forwarded_certificate,
    header_spec,
)

__all__ = [
    "CertRefusal",
    "CertSource",
    "CertificateTrust",
    "ClientCertResult",
    "client_certificate",
]

log = logging.getLogger("partnergate.auth")


class CertSource(StrEnum):
    TLS = "tls"
    """Presented to partnergate's TLS listener; OpenSSL verified it in the handshake."""
    PROXY = "proxy"
    """Forwarded in a header by a trusted proxy that terminated the client's TLS."""


class CertRefusal(StrEnum):
    MALFORMED = "malformed"
    """A trusted proxy sent a certificate header that cannot be read: answer 400."""
    REJECTED = "rejected"
    """The certificate must not authenticate (untrusted, expired, wrong purpose): 401."""


_STATUS = {CertRefusal.MALFORMED: 400, CertRefusal.REJECTED: 401}


@dataclass(frozen=True)
class ClientCertResult:
    """The client certificate of one request, or why there is none.

    - ``certificate`` set: a verified leaf (``chain`` holds the certificates after it,
      issuer first, as far as known); map it to a user.
    - ``refusal`` set: refuse the request with :attr:`status` and log ``reason``.
    - neither: the request carries no usable certificate; try other credentials.

    ``reason`` is always a sentence for the log or for diagnostics.
    """

    certificate: x509.Certificate | None = None
    chain: tuple[x509.Certificate, ...] = ()
    source: CertSource | None = None
    refusal: CertRefusal | None = None
    reason: str = "no client certificate"

    @property
    def refused(self) -> bool:
        return self.refusal is not None

    @property
    def status(self) -> int | None:
        """400 for an unreadable header from a trusted proxy, 401 for a certificate that
        fails verification, None when the request is not refused."""
        return None if self.refusal is None else _STATUS[self.refusal]


class CertificateTrust:
    """What :func:`client_certificate` needs loaded before the first request: the trusted
    proxies and the trusted CAs (``client_ca``).

    The server builds one at start and reloads it on SIGHUP (``app.state
    .certificate_trust``); :meth:`reload` swaps in a new immutable store, so a request
    never sees half a bundle.
    """

    def __init__(
        self,
        proxies: TrustedProxies,
        store: TrustStore | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.proxies = proxies
        self.store = store
        self.ca_file = ca_file

    @classmethod
    def from_settings(cls, settings: Settings) -> CertificateTrust:
        """Check the certificate settings and load the CA bundle; ConfigError names the
        setting that cannot be used."""
        try:
            proxies = TrustedProxies(settings.trusted_proxies)
            for spec in settings.cert_headers:
                header_spec(spec)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        store = _load_store(settings.client_ca) if settings.client_ca else None
        if proxies.networks and settings.verify_forwarded_certs and store is None:
            raise ConfigError(
                "trusted_proxies needs client_ca, the CAs to verify forwarded certificates "
                "with (or verify_forwarded_certs = false to take the proxy's word)"
            )
        return cls(proxies, store, settings.client_ca)

    def reload(self) -> None:
        """Read the CA bundle again; on ConfigError the previous store stays."""
        if self.ca_file:
            self.store = _load_store(self.ca_file)


def _load_store(path: str) -> TrustStore:
    try:
        return TrustStore.from_pem_file(path)
    except OSError as exc:
        raise ConfigError(f"client_ca {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"client_ca {exc}") from None


def client_certificate(
    scope: Mapping[str, Any], settings: Settings, trust: CertificateTrust
) -> ClientCertResult:
    """The client certificate of the HTTP request ``scope``, verified, or why not.

    ``settings`` supplies ``cert_headers`` and ``verify_forwarded_certs``; ``trust`` the
    loaded proxies and CAs. Certificate headers from a peer outside ``trusted_proxies``
    are logged (logger ``partnergate.auth``) and ignored; every other outcome is left to
    the caller to log, with ``reason``.
    """
    names = _header_names(tuple(settings.cert_headers))
    if not any(name in names for name, _ in scope.get("headers", ())):
        return _from_tls(scope)
    client = scope.get("client")
    peer = client[0] if client else None
    forwarded = extract_forwarded_certificate(
        peer, _headers(scope), trust.proxies, settings.cert_headers
    )
    if forwarded.ignored_reason:
        log.warning("%s %s: %s", scope.get("method"), scope.get("path"), forwarded.ignored_reason)
    if forwarded.rejected_reason:
        return ClientCertResult(refusal=CertRefusal.MALFORMED, reason=forwarded.rejected_reason)
    if forwarded.certificate is not None:
        return _forwarded(forwarded.certificate, peer, settings, trust)
    return _from_tls(scope)


@functools.lru_cache(maxsize=8)
def _header_names(specs: tuple[str, ...]) -> frozenset[bytes]:
    """The certificate headers to look for, as ASGI spells names: lower-case bytes."""
    names = set()
    for spec in specs:
        name = header_spec(spec).name.lower()
        names.update((name.encode("latin-1"), f"{name}-chain".encode("latin-1")))
    return frozenset(names)


@functools.lru_cache(maxsize=1024)
def _load_pem(pem: str) -> tuple[x509.Certificate, str, datetime, datetime]:
    """The certificate, its subject and validity period, read once: a kept-alive sender
    presents the same certificate on every request."""
    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    return cert, cert.subject.rfc4514_string(), cert.not_valid_before_utc, cert.not_valid_after_utc


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """Lower-case names; a header sent more than once is joined with ", " (RFC 9110 5.3)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _forwarded(
    forwarded: ForwardedCertificate, peer: str | None, settings: Settings, trust: CertificateTrust
) -> ClientCertResult:
    leaf, chain = forwarded.leaf(), tuple(forwarded.chain())
    where = f"{forwarded.header} from trusted proxy {peer}"
    subject = leaf.subject.rfc4514_string()
    if not settings.verify_forwarded_certs:
        checked = "taken on the proxy's word (verify_forwarded_certs = false)"
    elif trust.store is None:
        return ClientCertResult(
            refusal=CertRefusal.REJECTED,
            reason=f"{where}: no client_ca to verify the certificate with",
        )
    else:
        try:
            verify_client_chain(leaf, chain, trust.store)
        except CertificateRejected as exc:
            return ClientCertResult(refusal=CertRefusal.REJECTED, reason=f"{where}: {exc}")
        checked = "verified against client_ca"
    return ClientCertResult(
        leaf, chain, CertSource.PROXY, reason=f"certificate '{subject}' in {where}, {checked}"
    )


def _from_tls(scope: Mapping[str, Any]) -> ClientCertResult:
    tls = (scope.get("extensions") or {}).get("tls")
    if not tls:
        return ClientCertResult()
    if tls.get("client_cert_error"):
        return ClientCertResult(
            refusal=CertRefusal.REJECTED,
            reason=f"TLS client certificate failed verification: {tls['client_cert_error']}",
        )
    pems = list(tls.get("client_cert_chain") or ())
    if not pems:
        return ClientCertResult(reason="no client certificate on the TLS connection")
    try:
        (leaf, subject, not_before, not_after), *rest = (_load_pem(pem) for pem in pems)
    except ValueError as exc:
        return ClientCertResult(
            refusal=CertRefusal.REJECTED, reason=f"TLS client certificate unreadable: {exc}"
        )
    # OpenSSL checked the validity period at the handshake; a kept-alive connection can
    # outlive the certificate.
    now = datetime.now(UTC)
    if not not_before <= now <= not_after:
        return ClientCertResult(
            refusal=CertRefusal.REJECTED,
            reason=f"TLS client certificate '{subject}' expired after the handshake",
        )
    return ClientCertResult(
        leaf,
        tuple(cert for cert, *_ in rest),
        CertSource.TLS,
        reason=f"certificate '{subject}' presented on the TLS connection, verified in the "
        "handshake",
    )

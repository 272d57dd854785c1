"""X.509 certificates: parsing what clients send, the facts SAP derives, chain verification.

Lives here: the accepted input forms of a certificate, SAP's certificate-to-user mapping key
(MD5 of the DER, Security Content API ``CertificateUserMappings``), the properties the
admin UI shows, and verification of a client chain against trusted CAs. Must not know:
HTTP, the store, where a certificate came from (TLS listener or proxy header).

The TLS listener leaves chain verification to OpenSSL; :func:`verify_client_chain` is for
certificates forwarded by a trusted proxy (DECISIONS D5), and it is kept as close to
OpenSSL's client-certificate rules as ``cryptography``'s verifier allows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ..model.errors import InvalidValue

__all__ = [
    "CertificateError",
    "CertificateInfo",
    "CertificateRejected",
    "RejectReason",
    "TrustStore",
    "as_utc",
    "der_bytes",
    "issuer_dn",
    "load_certificate",
    "load_certificates",
    "mapping_id",
    "pem_base64",
    "normalize_dn",
    "serial_hex",
    "sha256_thumbprint",
    "subject_dn",
    "valid_until_ms",
    "verify_client_chain",
]


class CertificateError(InvalidValue):
    """A value meant as a certificate is not one; the API answers 400 naming the problem.

    SAP answers the same input with ``...[No509Certificate]:... is not a X.509
    certificate: ...`` (and status 500, which we do not copy).
    """

    def __init__(self, detail: str) -> None:
        super().__init__(f"not an X.509 certificate: {detail}", field="Certificate")
        self.detail = detail


# --- parsing -------------------------------------------------------------------------------

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_PEM_CERT_LABELS = (b"CERTIFICATE", b"X509 CERTIFICATE")
"""RFC 7468 section 5.1: parsers may accept the legacy label ``X509 CERTIFICATE``."""

_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=\s]+")


def load_certificate(data: bytes | str) -> x509.Certificate:
    """Exactly one certificate, in any form a client of the Partner Directory sends.

    Accepted: PEM text, base64 of PEM text (SAP's ``Certificate`` property, which starts
    ``LS0tLS1CRUdJTi``), base64 of DER, raw DER. Several certificates are refused rather
    than guessing which one the caller meant to map to a user.
    """
    certificates = load_certificates(data)
    if len(certificates) != 1:
        raise CertificateError(f"expected one certificate, got {len(certificates)}")
    return certificates[0]


def load_certificates(data: bytes | str) -> list[x509.Certificate]:
    """One or more certificates (a PEM bundle may hold a chain), leaf first as given."""
    raw = _as_bytes(data)
    if _looks_like_der(raw):
        return [_load_der(raw)]  # before any strip(): DER may end in a whitespace byte
    raw = raw.strip()
    if not raw:
        raise CertificateError("the value is empty")
    if b"-----BEGIN" in raw:
        return _load_pem(raw)
    if not _BASE64_TEXT.fullmatch(raw):
        raise CertificateError("neither PEM, DER nor base64")
    decoded = _decode_base64(raw)
    if b"-----BEGIN" in decoded:
        return _load_pem(decoded)
    if _looks_like_der(decoded):
        return [_load_der(decoded)]
    raise CertificateError("base64 decodes to neither PEM text nor DER")


def _as_bytes(data: bytes | str) -> bytes:
    if isinstance(data, str):
        try:
            return data.encode("ascii")
        except UnicodeEncodeError:
            raise CertificateError("text contains non-ASCII characters") from None
    return bytes(data)


def _looks_like_der(raw: bytes) -> bool:
    """A DER certificate is a SEQUENCE (0x30) longer than 127 bytes: long-form length."""
    return len(raw) > 2 and raw[0] == 0x30 and 0x81 <= raw[1] <= 0x84


def _decode_base64(raw: bytes) -> bytes:
    """Base64 with any line breaks (MIME style) and with or without ``=`` padding."""
    compact = re.sub(rb"\s+", b"", raw)
    try:
        return base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
    except binascii.Error as exc:
        raise CertificateError(f"invalid base64 ({exc})") from None


def _load_pem(raw: bytes) -> list[x509.Certificate]:
    """PEM blocks decoded by hand, so that line breaks turned into spaces or tabs by a
    proxy (Apache's ``SSL_CLIENT_CERT``, nginx's ``$ssl_client_cert``) still parse."""
    blocks = _PEM_BLOCK.findall(raw)
    certificates = [
        _load_der(_decode_pem_body(body)) for label, body in blocks if label in _PEM_CERT_LABELS
    ]
    if certificates:
        return certificates
    if blocks:
        labels = ", ".join(sorted({label.decode() for label, _ in blocks}))
        raise CertificateError(f"PEM holds {labels}, no CERTIFICATE")
    raise CertificateError("no complete BEGIN/END CERTIFICATE block")


def _decode_pem_body(body: bytes) -> bytes:
    compact = re.sub(rb"\s+", b"", body)
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise CertificateError(f"invalid base64 inside PEM ({exc})") from None


def _load_der(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateError(f"malformed DER ({exc})") from None


# --- what SAP and the UI derive from a certificate ---------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def der_bytes(cert: x509.Certificate) -> bytes:
    """The DER encoding: what every fingerprint and the mapping key are computed over."""
    return cert.public_bytes(serialization.Encoding.DER)


def mapping_id(cert: x509.Certificate) -> str:
    """SAP's ``CertificateUserMapping`` key: MD5 of the DER bytes, lower-case hex.

    MD5 names the mapping, it does not authenticate: the certificate still has to chain
    to a trusted CA, and :func:`sha256_thumbprint` is there to confirm an exact match.
    """
    return hashlib.md5(der_bytes(cert), usedforsecurity=False).hexdigest()


def sha256_thumbprint(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER, the form Envoy sends as XFCC ``Hash``."""
    return hashlib.sha256(der_bytes(cert)).hexdigest()


def subject_dn(cert: x509.Certificate) -> str:
    """RFC 4514 string, most specific attribute first (``CN=...,O=...``)."""
    return cert.subject.rfc4514_string()


def issuer_dn(cert: x509.Certificate) -> str:
    return cert.issuer.rfc4514_string()


def normalize_dn(text: str) -> str:
    """An RFC 4514 distinguished name in the form :func:`subject_dn` gives.

    Accepts what people paste: Java's ``CN=a, O=b`` with spaces after commas and attribute
    types in any case. Raises :class:`ValueError` for text that is not a DN.
    """
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text.strip():
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch in ",;":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    cleaned = []
    for part in parts:
        kind, eq, value = part.partition("=")
        if not eq or not kind.strip() or not value.strip():
            raise ValueError(f"'{part}' is not an attribute=value pair")
        cleaned.append(f"{kind.strip().upper()}={value.strip()}")
    return x509.Name.from_rfc4514_string(",".join(cleaned)).rfc4514_string()


def serial_hex(cert: x509.Certificate) -> str:
    """Lower-case hex of the serial number, padded to whole bytes as DER stores it."""
    number = cert.serial_number
    digits = format(abs(number), "x")
    digits = digits.zfill(len(digits) + len(digits) % 2)
    return f"-{digits}" if number < 0 else digits


def valid_until_ms(cert: x509.Certificate) -> int:
    """``ValidUntil`` of a mapping: notAfter as epoch milliseconds (Edm.Int64)."""
    return (cert.not_valid_after_utc - _EPOCH) // timedelta(milliseconds=1)


def pem_base64(cert: x509.Certificate) -> str:
    """``Certificate`` of a mapping: base64 of the PEM text, as SAP's API carries it."""
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode("ascii")


_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
"""RFC 5280 section 4.2.1.12 names; other purposes show as dotted OIDs."""


def _extended_key_usage(cert: x509.Certificate) -> tuple[str, ...] | None:
    """Purpose names, or None when the extension is absent (RFC 5280: any purpose)."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku)


def _subject_alt_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    prefixes = {
        x509.DNSName: "DNS",
        x509.IPAddress: "IP",
        x509.RFC822Name: "email",
        x509.UniformResourceIdentifier: "URI",
    }
    return tuple(
        f"{prefixes[type(name)]}:{name.value}" if type(name) in prefixes else str(name)
        for name in san
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _key_description(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


@dataclass(frozen=True)
class CertificateInfo:
    """What the admin UI lists for a mapping (SAP's columns: Subject DN, Issuer DN, Serial
    Number, Valid Until) and what diagnostics print about a presented certificate."""

    mapping_id: str
    sha256: str
    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    valid_until_ms: int
    key: str
    extended_key_usage: tuple[str, ...] | None
    subject_alt_names: tuple[str, ...]
    is_ca: bool

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> CertificateInfo:
        return cls(
            mapping_id=mapping_id(cert),
            sha256=sha256_thumbprint(cert),
            subject=subject_dn(cert),
            issuer=issuer_dn(cert),
            serial=serial_hex(cert),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            valid_until_ms=valid_until_ms(cert),
            key=_key_description(cert),
            extended_key_usage=_extended_key_usage(cert),
            subject_alt_names=_subject_alt_names(cert),
            is_ca=_is_ca(cert),
        )

    def is_valid_at(self, at: datetime | None = None) -> bool:
        """Within the validity period; an expired mapping is kept but never authenticates."""
        when = as_utc(at)
        return self.not_before <= when <= self.not_after


# --- chain verification --------------------------------------------------------------------


class TrustStore:
    """The CAs whose client certificates we accept (``--client-ca``), ready to verify with.

    Immutable: a reload (SIGHUP) builds a new store and swaps the reference.
    """

    __slots__ = ("certificates", "store")

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        self.certificates: tuple[x509.Certificate, ...] = tuple(certificates)
        if not self.certificates:
            raise ValueError("a trust store needs at least one CA certificate")
        self.store = Store(list(self.certificates))

    @classmethod
    def from_pem_bytes(cls, data: bytes, *, source: str = "CA bundle") -> TrustStore:
        """A PEM bundle (text between the blocks is ignored, as OpenSSL does)."""
        try:
            certificates = _load_pem(data)
        except CertificateError as exc:
            raise ValueError(f"{source}: {exc.detail}") from None
        return cls(certificates)

    @classmethod
    def from_pem_file(cls, path: str | os.PathLike[str]) -> TrustStore:
        with open(path, "rb") as file:
            return cls.from_pem_bytes(file.read(), source=os.fspath(path))

    def __len__(self) -> int:
        return len(self.certificates)

    def __repr__(self) -> str:
        return f"TrustStore({', '.join(subject_dn(c) for c in self.certificates)})"


class RejectReason(StrEnum):
    """Why a client certificate is refused; stable words for logs, tests and metrics."""

    UNTRUSTED_ISSUER = "untrusted issuer"
    BAD_SIGNATURE = "bad signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"
    NO_CLIENT_AUTH = "no clientAuth in extended key usage"
    INVALID = "invalid chain"


class CertificateRejected(Exception):
    """A client certificate that must not authenticate anybody; ``str()`` is the log line."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_MAX_CHAIN_DEPTH = 8

_CLIENT_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
)
"""The CA/Browser Forum (web PKI) rules for end-entity certificates, minus two that
OpenSSL does not apply to client certificates either: client certificates commonly carry
no subjectAltName (SAP's example partners are named by their subject DN) and older CAs
omit the authorityKeyIdentifier. Everything else stays, notably: clientAuth required when
an extendedKeyUsage is present (an absent one means any purpose, RFC 5280 4.2.1.12)."""


def verify_client_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    store: TrustStore,
    at: datetime | None = None,
) -> None:
    """Accept ``leaf`` as a TLS client certificate or raise :class:`CertificateRejected`.

    ``intermediates`` are the other certificates the client sent, in any order; a root
    among them counts only if ``store`` holds it too. ``at`` defaults to now; a naive
    datetime is taken as UTC.
    """
    when = as_utc(at)
    verifier = (
        PolicyBuilder()
        .store(store.store)
        .time(when)
        .max_chain_depth(_MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_CLIENT_EE_POLICY
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, list(intermediates))
    except VerificationError as exc:
        raise _explain(leaf, intermediates, store, when, str(exc)) from None


def as_utc(at: datetime | None) -> datetime:
    """An aware UTC moment; None means now and a naive datetime is taken as UTC."""
    if at is None:
        return datetime.now(UTC)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _explain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    store: TrustStore,
    when: datetime,
    verifier_message: str,
) -> CertificateRejected:
    """Turn the verifier's refusal into one precise reason.

    The verifier stops at the first rule it breaks, in its own order (it checks the
    leaf's extended key usage before it looks for an issuer). Trust comes first here: an
    unknown or forged issuer is reported as such, whatever else is wrong with the leaf.
    """
    try:
        path = _issuer_path(leaf, intermediates, store)
    except CertificateRejected as rejected:
        return rejected
    kinds = ["certificate"] + ["intermediate CA"] * (len(path) - 2) + ["trusted CA"]
    for cert, kind in zip(path, kinds, strict=True):
        if rejected := _outside_validity(cert, kind, when):
            return rejected
    usage = _extended_key_usage(leaf)
    if usage is not None and "clientAuth" not in usage:
        return CertificateRejected(
            RejectReason.NO_CLIENT_AUTH,
            f"certificate '{subject_dn(leaf)}' is for {', '.join(usage) or 'no purpose'}",
        )
    return CertificateRejected(RejectReason.INVALID, verifier_message)


def _issuer_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    store: TrustStore,
) -> list[x509.Certificate]:
    """Leaf up to the trust anchor, following names and checking signatures."""
    path = [leaf]
    cert = leaf
    while len(path) <= _MAX_CHAIN_DEPTH:
        trusted = [ca for ca in store.certificates if ca.subject == cert.issuer]
        candidates = trusted or [
            ca for ca in intermediates if ca.subject == cert.issuer and ca != cert
        ]
        if not candidates:
            if cert is leaf and cert.subject == cert.issuer:
                detail = f"self-signed certificate '{subject_dn(cert)}' is not a trusted CA"
            elif cert is leaf:
                detail = f"issuer '{issuer_dn(cert)}' is not a trusted CA"
            else:
                detail = (
                    f"chain ends at '{subject_dn(cert)}', whose issuer "
                    f"'{issuer_dn(cert)}' is not a trusted CA"
                )
            raise CertificateRejected(RejectReason.UNTRUSTED_ISSUER, detail)
        issuer = next((ca for ca in candidates if _signed_by(cert, ca)), None)
        if issuer is None:
            raise CertificateRejected(
                RejectReason.BAD_SIGNATURE,
                f"signature of '{subject_dn(cert)}' does not verify with the key of "
                f"'{subject_dn(candidates[0])}'",
            )
        path.append(issuer)
        if trusted:
            return path
        cert = issuer
    raise CertificateRejected(
        RejectReason.UNTRUSTED_ISSUER,
        f"no trusted CA within {_MAX_CHAIN_DEPTH} certificates above '{subject_dn(leaf)}'",
    )


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _outside_validity(
    cert: x509.Certificate, what: str, when: datetime
) -> CertificateRejected | None:
    if when < cert.not_valid_before_utc:
        return CertificateRejected(
            RejectReason.NOT_YET_VALID,
            f"{what} '{subject_dn(cert)}' is valid from {_iso(cert.not_valid_before_utc)}",
        )
    if when > cert.not_valid_after_utc:
        return CertificateRejected(
            RejectReason.EXPIRED,
            f"{what} '{subject_dn(cert)}' expired at {_iso(cert.not_valid_after_utc)}",
        )
    return None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

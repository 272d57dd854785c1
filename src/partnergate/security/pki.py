"""A development PKI: the key-pairs the seed scenario says SAP "cannot provide".

Lives here: a CA (root, optionally an intermediate), server and client certificates that
pass both OpenSSL's checks (the TLS listener) and :func:`verify_client_chain` (forwarded
certificates), PKCS#12 keystores for SoapUI and curl, and the JSON body that registers a
client certificate as a certificate-to-user mapping. Must not know: HTTP, the store.

Keys and certificates are written as PEM, private keys unencrypted and with mode 0600
(like ``openssl req -nodes``). Files of a CA directory: ``ca.key``, ``ca.crt`` and, for
an intermediate, ``ca-chain.pem`` (the intermediate, then its issuers up to the root).

Test certificates that must fail are made with the same functions: ``not_before`` in the
future (not yet valid), ``not_before`` and ``days`` in the past (expired), ``eku`` without
clientAuth, or a second :func:`init_ca` that nobody trusts.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .certificates import as_utc, load_certificate, load_certificates, pem_base64

__all__ = [
    "CA",
    "Bundle",
    "ClientBundle",
    "KeyType",
    "init_ca",
    "issue_client",
    "issue_intermediate",
    "issue_server",
    "load_ca",
    "mapping_body",
]

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

CA_KEY = "ca.key"
CA_CERT = "ca.crt"
CA_CHAIN = "ca-chain.pem"

_BACKDATE = timedelta(minutes=5)
"""Certificates start a little in the past so that a peer whose clock lags accepts them."""

_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class CA:
    """A certificate authority that can sign; ``parents`` are its issuers, nearest first."""

    key: PrivateKey
    certificate: x509.Certificate
    directory: Path
    parents: tuple[x509.Certificate, ...] = ()

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA and its issuers up to the root: what follows a leaf in a chain file."""
        return (self.certificate, *self.parents)

    @property
    def key_path(self) -> Path:
        return self.directory / CA_KEY

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT


@dataclass(frozen=True)
class Bundle:
    """An issued key-pair and its files; ``chain`` is the issuing CAs, nearest first."""

    key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key_path: Path
    cert_path: Path
    chain_path: Path


@dataclass(frozen=True)
class ClientBundle(Bundle):
    """A client key-pair plus the PKCS#12 keystore a sender partner's tool imports."""

    p12_path: Path


def init_ca(
    dir: Path,
    name: str = "partnergate dev CA",
    *,
    key_type: KeyType = "ec",
    days: int = 3650,
) -> CA:
    """A self-signed root CA in ``dir``; refuses to replace an existing one, because every
    certificate it issued would stop verifying."""
    directory = _directory(dir)
    if (directory / CA_KEY).exists():
        raise FileExistsError(f"{directory / CA_KEY} exists; use load_ca to reuse that CA")
    key = _new_key(key_type)
    subject = _name(name)
    start = datetime.now(UTC) - _BACKDATE
    certificate = (
        _builder(subject, subject, key, start, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    ca = CA(key, certificate, directory)
    _write_key(ca.key_path, key)
    _write_certs(ca.cert_path, [certificate])
    return ca


def load_ca(dir: Path) -> CA:
    """The CA that :func:`init_ca` or :func:`issue_intermediate` wrote to ``dir``."""
    directory = Path(dir)
    key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{directory / CA_KEY}: expected an EC or RSA key")
    certificate = load_certificate((directory / CA_CERT).read_bytes())
    if certificate.public_key() != key.public_key():
        raise ValueError(f"{directory / CA_KEY} does not belong to {directory / CA_CERT}")
    chain_file = directory / CA_CHAIN
    parents = tuple(load_certificates(chain_file.read_bytes())[1:]) if chain_file.exists() else ()
    return CA(key, certificate, directory, parents)


def issue_intermediate(
    ca: CA,
    dir: Path,
    name: str = "partnergate dev intermediate CA",
    *,
    key_type: KeyType = "ec",
    days: int = 1825,
) -> CA:
    """A CA signed by ``ca``, in its own directory, so that chains with intermediates (as
    in the seed's keystore) can be built and tested."""
    directory = _directory(dir)
    if (directory / CA_KEY).exists():
        raise FileExistsError(f"{directory / CA_KEY} exists; use load_ca to reuse that CA")
    key = _new_key(key_type)
    start = datetime.now(UTC) - _BACKDATE
    certificate = (
        _builder(_name(name), ca.certificate.subject, key, start, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(_authority_key_id(ca), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    intermediate = CA(key, certificate, directory, ca.chain)
    _write_key(intermediate.key_path, key)
    _write_certs(intermediate.cert_path, [certificate])
    _write_certs(directory / CA_CHAIN, list(intermediate.chain))
    return intermediate


def issue_server(
    ca: CA,
    dir: Path,
    hosts: Sequence[str],
    *,
    name: str = "server",
    key_type: KeyType = "ec",
    days: int = 397,
) -> Bundle:
    """A TLS server certificate for ``hosts`` (DNS names and IP addresses in the
    subjectAltName, which is what clients check, RFC 6125); files ``<name>.key``,
    ``<name>.crt`` and ``<name>-chain.pem`` for ``--tls-cert``."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    key = _new_key(key_type)
    start = datetime.now(UTC) - _BACKDATE
    certificate = (
        _builder(_name(hosts[0]), ca.certificate.subject, key, start, days)
        .add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hosts]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(key), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(_authority_key_id(ca), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return _write_bundle(_directory(dir), _file_name(name), key, certificate, ca)


def issue_client(
    ca: CA,
    dir: Path,
    name: str,
    *,
    password: str,
    days: int = 365,
    not_before: datetime | None = None,
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    key_type: KeyType = "ec",
    legacy_p12: bool = False,
) -> ClientBundle:
    """A client certificate with subject ``CN=<name>``, valid ``days`` from ``not_before``
    (default: now), and its files ``<name>.key``, ``<name>.crt``, ``<name>-chain.pem``
    (leaf, then the CAs) and ``<name>.p12`` (key and chain, encrypted with ``password``).

    ``eku=None`` leaves out the extendedKeyUsage extension (any purpose, RFC 5280).
    ``legacy_p12`` encrypts the keystore with SHA-1/3DES instead of AES-256, for Java
    before 8u301, such as the runtime bundled with SoapUI 5.3 that the seed uses.
    """
    if not password:
        raise ValueError("a PKCS#12 keystore needs a non-empty password")
    if days <= 0:
        raise ValueError("days must be positive; for an expired certificate, move not_before")
    file_name = _file_name(name)
    key = _new_key(key_type)
    start = datetime.now(UTC) - _BACKDATE if not_before is None else as_utc(not_before)
    builder = (
        _builder(_name(name), ca.certificate.subject, key, start, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(key, client=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(_authority_key_id(ca), critical=False)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    certificate = builder.sign(ca.key, hashes.SHA256())
    bundle = _write_bundle(_directory(dir), file_name, key, certificate, ca)
    p12_path = bundle.key_path.with_name(f"{file_name}.p12")
    encryption = _p12_encryption(password, legacy_p12)
    keystore = pkcs12.serialize_key_and_certificates(
        name.encode("utf-8"), key, certificate, list(ca.chain), encryption
    )
    _write_private(p12_path, keystore)
    return ClientBundle(**vars(bundle), p12_path=p12_path)


def mapping_body(cert: x509.Certificate, user: str) -> dict[str, str]:
    """The body to POST to ``/api/v1/CertificateUserMappings`` (as in the seed, without
    its dummy ``Id``: the server computes the Id from the certificate)."""
    return {"User": user, "Certificate": pem_base64(cert)}


# --- building blocks -----------------------------------------------------------------------


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key_type must be 'ec' or 'rsa', got {key_type!r}")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, key: PrivateKey, start: datetime, days: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
    )


def _ca_key_usage() -> x509.KeyUsage:
    return _key_usage(key_cert_sign=True, crl_sign=True)


def _leaf_key_usage(key: PrivateKey, *, client: bool = False) -> x509.KeyUsage:
    """digitalSignature for (EC)DHE handshakes; keyEncipherment only for an RSA server,
    whose key may also decrypt a TLS 1.2 RSA key exchange (RFC 5246 7.4.2)."""
    rsa_server = isinstance(key, rsa.RSAPrivateKey) and not client
    return _key_usage(digital_signature=True, key_encipherment=rsa_server)


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca: CA) -> x509.AuthorityKeyIdentifier:
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _p12_encryption(password: str, legacy: bool) -> serialization.KeySerializationEncryption:
    secret = password.encode("utf-8")
    if not legacy:
        return serialization.BestAvailableEncryption(secret)
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(secret)
    )


def _file_name(name: str) -> str:
    """``name`` becomes a file name in the bundle directory: no separators, no dot files."""
    if not _FILE_NAME.fullmatch(name):
        raise ValueError(f"name {name!r} must be letters, digits, '.', '_' or '-'")
    return name


def _directory(dir: Path) -> Path:
    directory = Path(dir)
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
    return directory


def _write_bundle(
    directory: Path, name: str, key: PrivateKey, certificate: x509.Certificate, ca: CA
) -> Bundle:
    bundle = Bundle(
        key,
        certificate,
        ca.chain,
        directory / f"{name}.key",
        directory / f"{name}.crt",
        directory / f"{name}-chain.pem",
    )
    _write_key(bundle.key_path, key)
    _write_certs(bundle.cert_path, [certificate])
    _write_certs(bundle.chain_path, [certificate, *ca.chain])
    return bundle


def _write_key(path: Path, key: PrivateKey) -> None:
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Owner-only from the first byte, also when replacing a file with looser mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(data)


def _write_certs(path: Path, certificates: list[x509.Certificate]) -> None:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))

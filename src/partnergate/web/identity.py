"""Which sender is calling a flow: one principal, its roles, and its partner.

A message is sent by exactly one principal (SAP-doc "Partner Authorization (Inbound)",
c0c9950): a Basic user of the local store, an OAuth client as user
``oauth_client_<client id>``, or the user a client certificate is mapped to. Authorised
users of the Partner Directory carry ``ESBMessaging.send`` while their entry exists; the
partner of a principal is the partner of that authorised user.

A sender presents the same credentials on every message. The identity an Authorization
header resolved to is remembered for up to 30 seconds, by a keyed hash of the header,
while the account store and the Partner Directory stay at the version it was resolved at
(and never past a bearer token's expiry): a changed password, role, authorised user or
removed account takes effect within milliseconds (see
:class:`~partnergate.store.accounts.AccountCache`). What a certificate was mapped to is
remembered by the certificate's SHA-256 until a write to ``CertificateUserMappings`` or
``CertificateMappingRules`` calls :meth:`IdentityResolver.forget_certificates`. Partners
of users come from the runtime's Partner Directory cache, invalidated the same way.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from cryptography import x509
from starlette.requests import HTTPConnection

from ..security import certificates
from ..security.principals import ESB_MESSAGING_SEND, AuthMethod, Principal
from ..store.reader import StoreReader
from .auth import Authenticator

log = logging.getLogger("partnergate.auth")


@dataclass(frozen=True)
class SenderIdentity:
    user: str
    roles: frozenset[str]
    partner: str | None
    method: AuthMethod
    explanation: list[str] = field(default_factory=list)
    """How the credentials led to this user and partner, step by step, for diagnostics."""

    def as_dict(self) -> dict[str, object]:
        return {
            "user": self.user,
            "roles": sorted(self.roles),
            "partner": self.partner,
            "method": self.method.value,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    """For the log; the sender of a message sees only the status."""
    tell_caller: bool = False
    """Whether ``/whoami`` may show the reason: certificate problems, yes (the caller holds
    the certificate); password problems, no (it would tell which user names exist)."""


class PartnerOfUser(Protocol):
    async def get_partner_id_of_authorized_user(self, user: str) -> str | None: ...


@dataclass(frozen=True)
class _Mapped:
    user: str
    how: str
    """Certificate → mapping → user, for diagnostics."""


MAX_REMEMBERED_CERTIFICATES = 10_000
MAX_REMEMBERED_HEADERS = 10_000
REMEMBER_SECONDS = 30.0


@dataclass(frozen=True)
class _Resolved:
    identity: SenderIdentity
    stamp: tuple[int, int]
    until: float


class IdentityResolver:
    def __init__(
        self, auth: Authenticator, reader: StoreReader, partners: PartnerOfUser | None = None
    ) -> None:
        self.auth = auth
        self.reader = reader
        self.partners: PartnerOfUser = partners if partners is not None else reader
        self._mapped: dict[bytes, _Mapped | None] = {}
        self._generation = 0
        self._key = secrets.token_bytes(32)
        self._resolved: dict[bytes, _Resolved] = {}

    def _stamp(self) -> tuple[int, int] | None:
        """The versions of the account store and the directory now; None: trust nothing."""
        accounts = self.auth.users.cache
        generation = getattr(self.partners, "generation", None)
        if accounts is None or generation is None:
            return None
        version = accounts.version()
        return None if version is None else (version, generation)

    def forget_certificates(self) -> None:
        """A certificate mapping or mapping rule changed: map every certificate afresh."""
        self._generation += 1
        self._mapped.clear()

    async def resolve(
        self,
        conn: HTTPConnection,
        certificate: x509.Certificate | None,
        cert_problem: str | None,
        cert_status: int = 401,
    ) -> SenderIdentity | Refusal:
        """Resolve the principal from the Authorization header, else the client certificate.

        ``cert_problem`` is why a presented certificate was refused (``cert_status``: 400
        for an unreadable forwarded header, 401 for one that fails verification).
        """
        header = conn.headers.get("authorization")
        if header:
            stamp = self._stamp()
            digest = hashlib.blake2b(
                header.encode("utf-8", "surrogatepass"), key=self._key, digest_size=32
            ).digest()
            known = self._resolved.get(digest)
            if known is not None and known.stamp == stamp and known.until > time.monotonic():
                return known.identity
            who, expires = await self._from_header(header)
            if stamp is not None and isinstance(who, SenderIdentity):
                self._remember(digest, who, stamp, expires)
            return who
        if cert_problem:
            return Refusal(cert_status, cert_problem, True)
        if certificate is not None:
            return await self.from_certificate(certificate)
        return Refusal(
            401, "no credentials: neither an Authorization header nor a client certificate"
        )

    async def _from_header(self, header: str) -> tuple[SenderIdentity | Refusal, float | None]:
        """Who the header names, and when its credentials expire by themselves, if they do."""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            result = await self.auth.basic(value)
        elif scheme.lower() == "bearer":
            result = await self.auth.bearer(value)
        else:
            return Refusal(401, f"unsupported authorization scheme '{scheme}'"), None
        if result.principal is None:
            return Refusal(401, result.reason), None
        who = await self.with_partner(result.principal, [_how(result.principal)])
        return who, result.expires

    def _remember(
        self, digest: bytes, who: SenderIdentity, stamp: tuple[int, int], expires: float | None
    ) -> None:
        until = time.monotonic() + REMEMBER_SECONDS
        if expires is not None:
            until = min(until, time.monotonic() + expires - time.time())
        if len(self._resolved) >= MAX_REMEMBERED_HEADERS:
            self._resolved.clear()
        self._resolved[digest] = _Resolved(who, stamp, until)

    async def from_certificate(self, cert: x509.Certificate) -> SenderIdentity | Refusal:
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return Refusal(401, f"{_describe(cert)} is outside its validity period", True)
        mapped = await self._map(cert)
        if mapped is None:
            return Refusal(
                401,
                f"{_describe(cert)} is not mapped to a user: no CertificateUserMappings entry "
                f"(its Id would be '{certificates.mapping_id(cert)}') and no "
                "CertificateMappingRules entry matches",
                True,
            )
        steps = [mapped.how]
        principal = Principal(mapped.user, frozenset(), AuthMethod.CERTIFICATE)
        return await self.with_partner(principal, steps)

    async def _map(self, cert: x509.Certificate) -> _Mapped | None:
        """The user a certificate maps to, and how; remembered until a mapping changes."""
        digest = hashlib.sha256(certificates.der_bytes(cert)).digest()
        if digest in self._mapped:
            return self._mapped[digest]
        generation = self._generation
        mapped: _Mapped | None = None
        found: tuple[str, str] | None = None
        mapping = await self.reader.certificate_mapping(cert)
        if mapping is not None:
            found = mapping.user, f"CertificateUserMappings('{mapping.mapping_id}')"
        elif (rule := await self.reader.mapping_rule(cert)) is not None:
            found = rule.user, f"CertificateMappingRules('{rule.rule_id}') ({rule.kind})"
        if found is not None:
            user, how = found
            mapped = _Mapped(user, f"{_describe(cert)} → {how} → user '{user}'")
        if generation == self._generation:
            if len(self._mapped) >= MAX_REMEMBERED_CERTIFICATES:
                self._mapped.clear()
            self._mapped[digest] = mapped
        return mapped

    async def with_partner(self, principal: Principal, steps: list[str]) -> SenderIdentity:
        """Add the partner and the role authorised users carry."""
        roles = set(principal.roles)
        partner = await self.partners.get_partner_id_of_authorized_user(principal.name.lower())
        if partner is not None:
            roles.add(ESB_MESSAGING_SEND)
            steps.append(
                f"user '{principal.name.lower()}' is an authorised user of partner '{partner}' "
                f"→ role {ESB_MESSAGING_SEND}"
            )
        else:
            steps.append(
                f"user '{principal.name.lower()}' is not an authorised user of any partner"
            )
        if principal.roles:
            steps.append(f"roles held in the local store: {', '.join(sorted(principal.roles))}")
        return SenderIdentity(principal.name, frozenset(roles), partner, principal.method, steps)


def _describe(cert: x509.Certificate) -> str:
    info = certificates.CertificateInfo.from_certificate(cert)
    return f"certificate subject '{info.subject}', issuer '{info.issuer}', serial {info.serial}"


def _how(principal: Principal) -> str:
    if principal.method is AuthMethod.BEARER:
        return f"OAuth bearer token → user '{principal.name}'"
    return f"HTTP Basic → local user '{principal.name}'"

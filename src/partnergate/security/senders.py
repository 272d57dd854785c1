"""Which user and partner a sender's client certificate and credentials lead to.

A message is sent by exactly one principal (SAP-doc "Partner Authorization (Inbound)",
c0c9950): a Basic user of the local store, an OAuth client as user
``oauth_client_<client id>``, or the user a client certificate is mapped to. Authorised
users of the Partner Directory carry ``ESBMessaging.send`` while their entry exists; the
partner of a principal is the partner of that authorised user.

What a certificate was mapped to is remembered by the certificate's SHA-256 until a
write to ``CertificateUserMappings`` or ``CertificateMappingRules`` reaches
:meth:`Senders.apply` (from the runtime's change stream). Partners of users come from the
runtime's Partner Directory cache, invalidated the same way. Must not know: HTTP, SQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from cryptography import x509

from . import certificates
from .principals import ESB_MESSAGING_SEND, AuthMethod, Principal

MAX_REMEMBERED_CERTIFICATES = 10_000
CERTIFICATE_SETS = frozenset({"CertificateUserMappings", "CertificateMappingRules"})
"""Entity sets whose changes change what certificates map to."""


class Changed(Protocol):
    @property
    def entity_set(self) -> str: ...


class CertificateMappingFound(Protocol):
    @property
    def mapping_id(self) -> str: ...
    @property
    def user(self) -> str: ...


class MappingRuleFound(Protocol):
    @property
    def rule_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def user(self) -> str: ...


class MappingReader(Protocol):
    """Certificate mappings and mapping rules as the store holds them."""

    async def certificate_mapping(
        self, cert: x509.Certificate
    ) -> CertificateMappingFound | None: ...

    async def mapping_rule(self, cert: x509.Certificate) -> MappingRuleFound | None: ...


class PartnerOfUser(Protocol):
    async def get_partner_id_of_authorized_user(self, user: str) -> str | None: ...


@dataclass(frozen=True)
class SenderIdentity:
    user: str
    roles: frozenset[str]
    partner: str | None
    method: AuthMethod
    explanation: tuple[str, ...] = ()
    """How the credentials led to this user and partner, step by step, for diagnostics."""

    def as_dict(self) -> dict[str, object]:
        return {
            "user": self.user,
            "roles": sorted(self.roles),
            "partner": self.partner,
            "method": self.method.value,
            "explanation": list(self.explanation),
        }


@dataclass(frozen=True)
class _Mapped:
    user: str
    how: str


class Senders:
    def __init__(self, reader: MappingReader, partners: PartnerOfUser) -> None:
        self.reader = reader
        self.partners = partners
        self._mapped: dict[bytes, _Mapped | None] = {}
        self._generation = 0

    def apply(self, changes: Sequence[Changed]) -> None:
        """Committed changes: map certificates afresh if a mapping or rule changed."""
        if any(change.entity_set in CERTIFICATE_SETS for change in changes):
            self.forget_certificates()

    def forget_certificates(self) -> None:
        """A certificate mapping or mapping rule changed: map every certificate afresh."""
        self._generation += 1
        self._mapped.clear()

    async def from_certificate(self, cert: x509.Certificate) -> SenderIdentity | str:
        """The sender a verified certificate maps to, or why there is none."""
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return f"{describe(cert)} is outside its validity period"
        mapped = await self._map(cert)
        if mapped is None:
            return (
                f"{describe(cert)} is not mapped to a user: no CertificateUserMappings entry "
                f"(its Id would be '{certificates.mapping_id(cert)}') and no "
                "CertificateMappingRules entry matches"
            )
        principal = Principal(mapped.user, frozenset(), AuthMethod.CERTIFICATE)
        return await self.with_partner(principal, [mapped.how])

    async def _map(self, cert: x509.Certificate) -> _Mapped | None:
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
            mapped = _Mapped(user, f"{describe(cert)} → {how} → user '{user}'")
        if generation == self._generation:
            if len(self._mapped) >= MAX_REMEMBERED_CERTIFICATES:
                self._mapped.clear()
            self._mapped[digest] = mapped
        return mapped

    async def with_partner(self, principal: Principal, steps: list[str]) -> SenderIdentity:
        """Add the partner and the role authorised users carry."""
        roles = set(principal.roles)
        user = principal.name.lower()
        partner = await self.partners.get_partner_id_of_authorized_user(user)
        if partner is not None:
            roles.add(ESB_MESSAGING_SEND)
            steps.append(
                f"user '{user}' is an authorised user of partner '{partner}' "
                f"→ role {ESB_MESSAGING_SEND}"
            )
        else:
            steps.append(f"user '{user}' is not an authorised user of any partner")
        if principal.roles:
            steps.append(f"roles held in the local store: {', '.join(sorted(principal.roles))}")
        return SenderIdentity(
            principal.name, frozenset(roles), partner, principal.method, tuple(steps)
        )


def describe(cert: x509.Certificate) -> str:
    info = certificates.CertificateInfo.from_certificate(cert)
    return f"certificate subject '{info.subject}', issuer '{info.issuer}', serial {info.serial}"

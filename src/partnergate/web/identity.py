"""Which sender is calling a flow: one principal, its roles, and its partner.

A message is sent by exactly one principal (SAP-doc "Partner Authorization (Inbound)",
c0c9950): a Basic user of the local store, an OAuth client as user
``oauth_client_<client id>``, or the user a client certificate is mapped to. Authorised
users of the Partner Directory carry ``ESBMessaging.send`` while their entry exists; the
partner of a principal is the partner of that authorised user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

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


class IdentityResolver:
    def __init__(self, auth: Authenticator, reader: StoreReader) -> None:
        self.auth = auth
        self.reader = reader

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
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "basic":
                result = await self.auth.basic(value)
            elif scheme.lower() == "bearer":
                result = await self.auth.bearer(value)
            else:
                return Refusal(401, f"unsupported authorization scheme '{scheme}'")
            if result.principal is None:
                return Refusal(401, result.reason)
            return await self.with_partner(result.principal, [_how(result.principal)])
        if cert_problem:
            return Refusal(cert_status, cert_problem, True)
        if certificate is not None:
            return await self.from_certificate(certificate)
        return Refusal(
            401, "no credentials: neither an Authorization header nor a client certificate"
        )

    async def from_certificate(self, cert: x509.Certificate) -> SenderIdentity | Refusal:
        info = certificates.CertificateInfo.from_certificate(cert)
        described = (
            f"certificate subject '{info.subject}', issuer '{info.issuer}', serial {info.serial}"
        )
        if not info.is_valid_at(datetime.now(UTC)):
            return Refusal(401, f"{described} is outside its validity period", True)
        mapping = await self.reader.certificate_mapping(cert)
        if mapping is not None:
            user = mapping.user
            how = f"CertificateUserMappings('{mapping.mapping_id}')"
        else:
            rule = await self.reader.mapping_rule(cert)
            if rule is None:
                return Refusal(
                    401,
                    f"{described} is not mapped to a user: no CertificateUserMappings entry "
                    f"(its Id would be '{info.mapping_id}') and no CertificateMappingRules "
                    "entry matches",
                    True,
                )
            user = rule.user
            how = f"CertificateMappingRules('{rule.rule_id}') ({rule.kind})"
        steps = [f"{described} → {how} → user '{user}'"]
        principal = Principal(user, frozenset(), AuthMethod.CERTIFICATE)
        return await self.with_partner(principal, steps)

    async def with_partner(self, principal: Principal, steps: list[str]) -> SenderIdentity:
        """Add the partner and the role authorised users carry."""
        roles = set(principal.roles)
        partner = await self.reader.get_partner_id_of_authorized_user(principal.name.lower())
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


def _how(principal: Principal) -> str:
    if principal.method is AuthMethod.BEARER:
        return f"OAuth bearer token → user '{principal.name}'"
    return f"HTTP Basic → local user '{principal.name}'"

"""The runtime's reads of the Partner Directory, straight from the store.

Implements ``runtime.directory.DirectoryReader`` (the runtime caches on top of it) and the
look-ups sender identification needs: certificate → mapped user, user → partner.

Look-up values may come from a sender's message; one that no stored value can equal
(``model.rules.storable``) finds nothing without asking the store, the same on both stores.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select

from ..model.rules import storable
from ..security import certificates
from .directory import DirectoryStore
from .tables import (
    alternative_partners,
    authorized_users,
    binary_parameters,
    certificate_mapping_rules,
    certificate_user_mappings,
    string_parameters,
    user_credential_parameters,
)


@dataclass(frozen=True)
class CertificateMapping:
    mapping_id: str
    user: str
    valid_until_ms: int | None


@dataclass(frozen=True)
class MappingRuleMatch:
    rule_id: str
    kind: str
    user: str


class StoreReader:
    def __init__(self, store: DirectoryStore) -> None:
        self.store = store
        self.engine = store.engine

    async def _scalar_row(self, query):  # type: ignore[no-untyped-def]
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first()

    async def get_string_parameter(self, pid: str, id: str) -> str | None:
        if not storable(pid, id):
            return None
        t = string_parameters
        row = await self._scalar_row(select(t.c.value).where(t.c.pid == pid, t.c.id == id))
        return None if row is None else str(row[0])

    async def get_binary_parameter(self, pid: str, id: str) -> tuple[bytes, str] | None:
        if not storable(pid, id):
            return None
        t = binary_parameters
        query = select(t.c.value, t.c.content_type).where(t.c.pid == pid, t.c.id == id)
        row = await self._scalar_row(query)
        return None if row is None else (bytes(row[0]), str(row[1]))

    async def get_user_credential(self, pid: str, id: str) -> tuple[str, str] | None:
        if not storable(pid, id):
            return None
        t = user_credential_parameters
        query = select(t.c.user, t.c.password_enc).where(t.c.pid == pid, t.c.id == id)
        row = await self._scalar_row(query)
        if row is None:
            return None
        return str(row[0]), self.store.secretbox.decrypt(row[1])

    async def get_partner_id(self, agency: str, scheme: str, alt_id: str) -> str | None:
        if not storable(agency, scheme, alt_id):
            return None
        t = alternative_partners
        query = select(t.c.pid).where(t.c.agency == agency, t.c.scheme == scheme, t.c.id == alt_id)
        row = await self._scalar_row(query)
        return None if row is None else str(row[0])

    async def get_alternative_partner_id(self, agency: str, scheme: str, pid: str) -> str | None:
        if not storable(agency, scheme, pid):
            return None
        t = alternative_partners
        query = select(t.c.id).where(t.c.agency == agency, t.c.scheme == scheme, t.c.pid == pid)
        row = await self._scalar_row(query)
        return None if row is None else str(row[0])

    async def get_partner_id_of_authorized_user(self, user: str) -> str | None:
        if not storable(user):
            return None
        t = authorized_users
        row = await self._scalar_row(select(t.c.pid).where(t.c.user == user.lower()))
        return None if row is None else str(row[0])

    async def get_authorized_users(self, pid: str) -> list[str]:
        if not storable(pid):
            return []
        t = authorized_users
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.c.user).where(t.c.pid == pid).order_by(t.c.user))
            return [str(r[0]) for r in rows]

    async def certificate_mapping(self, cert: x509.Certificate) -> CertificateMapping | None:
        """The mapping of exactly this certificate: found by its MD5 Id, confirmed whole."""
        t = certificate_user_mappings
        mapping_id = certificates.mapping_id(cert)
        query = select(t.c.user, t.c.certificate, t.c.valid_until).where(t.c.id == mapping_id)
        row = await self._scalar_row(query)
        if row is None:
            return None
        stored = certificates.load_certificate(str(row.certificate))
        if not hmac.compare_digest(certificates.der_bytes(stored), certificates.der_bytes(cert)):
            return None
        return CertificateMapping(mapping_id, str(row.user), row.valid_until)

    async def mapping_rule(self, cert: x509.Certificate) -> MappingRuleMatch | None:
        """The first rule that matches: thumbprint, then issuer + serial, then subject + issuer."""
        t = certificate_mapping_rules
        issuer = certificates.issuer_dn(cert)
        subject = certificates.subject_dn(cert)
        serial = format(cert.serial_number, "x")
        if not storable(issuer, subject):
            return None
        candidates = [
            ("Thumbprint", t.c.thumbprint == certificates.sha256_thumbprint(cert)),
            ("IssuerSerial", (t.c.issuer_dn == issuer) & (t.c.serial_number == serial)),
            ("SubjectIssuer", (t.c.subject_dn == subject) & (t.c.issuer_dn == issuer)),
        ]
        for kind, condition in candidates:
            query = select(t.c.id, t.c.user).where(t.c.kind == kind, condition).order_by(t.c.id)
            row = await self._scalar_row(query.limit(1))
            if row is not None:
                return MappingRuleMatch(str(row.id), kind, str(row.user))
        return None

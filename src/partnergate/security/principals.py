"""Principals (who is calling) and the roles that grant access.

Role names are SAP's: ``AuthGroup_TenantPartnerDirectoryConfigurator`` grants read and
write on the Partner Directory (SAP-doc "Tasks and Permissions", fda781c / 556d557);
``ESBMessaging.send`` lets a sender call integration flows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PARTNER_DIRECTORY_CONFIGURATOR = "AuthGroup_TenantPartnerDirectoryConfigurator"
ESB_MESSAGING_SEND = "ESBMessaging.send"
OAUTH_CLIENT_USER_PREFIX = "oauth_client_"
"""SAP names the user of an OAuth client ``oauth_client_<client id>``."""


class AuthMethod(StrEnum):
    BASIC = "basic"
    BEARER = "bearer"
    SESSION = "session"
    CERTIFICATE = "certificate"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]
    method: AuthMethod

    def has_role(self, role: str) -> bool:
        return role in self.roles


def oauth_client_user(client_id: str) -> str:
    return f"{OAUTH_CLIENT_USER_PREFIX}{client_id}"

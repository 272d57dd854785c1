"""What the gate needs to know about a local user or OAuth client, and where it reads it.

Lives here: the stored facts of an account (its secret's hash, its roles, a fingerprint
that changes whenever either changes) and the port the store implements to hand them
over (:class:`AccountBook`). Must not know: SQL, caching, HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StoredAccount:
    name: str
    roles: tuple[str, ...]
    secret_hash: str
    """The argon2 hash of the password or client secret, in PHC string form."""

    @property
    def fingerprint(self) -> str:
        """Changes whenever the secret or the roles change: keys remembered logins."""
        return f"{self.secret_hash}|{' '.join(self.roles)}"


class AccountBook(Protocol):
    """Local users or OAuth clients, as the store holds them now."""

    kind: str
    """``user`` or ``OAuth client``, for reasons in the log."""

    async def stored(self, name: str) -> StoredAccount | None:
        """The account as stored now (cheap: read from memory while unchanged)."""
        ...

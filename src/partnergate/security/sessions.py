"""Server-side sessions of the UI and of API clients that fetch a CSRF token.

Lives here: the session cookie's name and form, how long a session lives, and the port
the store implements (:class:`SessionBook`). Must not know: SQL, HTTP frameworks.

The cookie carries only a random session id (256 bits); the store keeps a SHA-256 of
it with the user, so a read of the store yields no cookie that works. A session ends
when its user signs out, when its lifetime or idle limit is over, and when its user's
password or roles change or the user is removed: the store deletes the user's sessions
in the same transaction, and every node hears of it through the store's change
notifications (PostgreSQL) or ``data_version`` (SQLite), as it hears of account changes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

SESSION_COOKIE = "PG_SESSIONID"
SESSION_LIFETIME = 8 * 3600
"""Seconds a session lasts from sign-in, however active it is."""
SESSION_IDLE = 3600
"""Seconds a session lasts without a request."""
TOUCH_EVERY = 60
"""A session's last use is written at most this often (seconds; a quarter of the idle
limit if that is shorter): a busy session costs one write a minute, not one per request."""

_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def new_session_id() -> str:
    """256 random bits, URL-safe base64 without padding: 43 characters."""
    return secrets.token_urlsafe(32)


def well_formed(session_id: str) -> bool:
    """Whether ``session_id`` could be one we issued; anything else is no session."""
    return _ID.fullmatch(session_id) is not None


def digest(session_id: str) -> str:
    """What the store keeps of a session id (hex SHA-256)."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class SessionRecord:
    user: str
    created: datetime
    last_seen: datetime
    expires: datetime
    """Naive UTC, as the store keeps times."""

    def ended(self, now: datetime, idle: int) -> str | None:
        """Why the session is over at ``now``, or None while it lasts."""
        if now >= self.expires:
            return "the session expired"
        if now - self.last_seen > timedelta(seconds=idle):
            return "the session was idle too long"
        return None


class SessionBook(Protocol):
    """The sessions of the store, by the digest of their id."""

    async def create(self, key: str, user: str, lifetime: int) -> None: ...

    async def get(self, key: str, fresh: bool = False) -> SessionRecord | None:
        """The session; ``fresh`` reads past any memory (another node may have used it)."""
        ...

    async def touch(self, key: str) -> None: ...

    async def end(self, key: str) -> None: ...

"""Reading credentials from request headers as they arrive: raw bytes, any bytes at all.

Lives here: the Authorization header (RFC 9110 §11.6.2) with HTTP Basic (RFC 7617) and
bearer tokens (RFC 6750), cookies (RFC 6265 §5.4), and which account names can exist.
Anything a client may send is either read or :class:`Malformed` with a reason for the
log; nothing here raises. Must not know: accounts, sessions, HTTP frameworks.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from .sessions import well_formed

MAX_AUTHORIZATION = 8192
"""Bytes of an Authorization header; more is refused unread."""
MAX_NAME = 150
"""The longest user name or client id the store holds."""
MAX_SECRET = 1024
"""The longest password or client secret worth a password check."""


@dataclass(frozen=True)
class Basic:
    name: str
    secret: str


@dataclass(frozen=True)
class Bearer:
    token: str
    """ASCII, as RFC 6750 §2.1's token68 is."""


@dataclass(frozen=True)
class Malformed:
    status: int
    """401, or 400 for a request no client should send (several Authorization headers)."""
    reason: str


def read_authorization(values: Sequence[bytes]) -> Basic | Bearer | Malformed | None:
    """The credentials of the request's Authorization headers; None without one."""
    if not values:
        return None
    if len(values) > 1:
        return Malformed(400, f"{len(values)} Authorization headers; send one")
    raw = values[0]
    if len(raw) > MAX_AUTHORIZATION:
        return Malformed(401, f"Authorization header of {len(raw)} bytes")
    if not raw.isascii():
        return Malformed(401, "Authorization header with bytes that are not ASCII")
    scheme, _, value = raw.decode("ascii").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        return _basic(value)
    if scheme.lower() == "bearer":
        return Bearer(value) if value else Malformed(401, "Bearer without a token")
    return Malformed(401, f"unsupported authorization scheme '{scheme[:40]}'")


def _basic(value: str) -> Basic | Malformed:
    """RFC 7617 §2: ``base64(user-id ":" password)``, UTF-8 (the realm's charset)."""
    if not value:
        return Malformed(401, "Basic without credentials")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return Malformed(401, "malformed Basic credentials (not base64 of UTF-8)")
    name, sep, secret = decoded.partition(":")
    if not sep:
        return Malformed(401, "malformed Basic credentials (no ':')")
    if not plausible(name, secret):
        return Malformed(401, "Basic credentials with a malformed name or an over-long password")
    return Basic(name, secret)


def plausible(name: str, secret: str) -> bool:
    """Whether ``name`` could name an account at all (1 to 150 characters, no control
    character or lone surrogate, which no store accepts) and ``secret`` is of a size worth
    hashing."""
    return (
        0 < len(name) <= MAX_NAME
        and len(secret) <= MAX_SECRET
        # printable ASCII has neither, and is what almost every name is
        and (
            (name.isascii() and name.isprintable())
            or not any(unicodedata.category(c) in ("Cc", "Cs") for c in name)
        )
    )


def read_cookie(headers: Sequence[bytes], name: str) -> str | None:
    """The first value of cookie ``name`` that is a well-formed session id, else None.

    Several cookies of one name arrive when paths or domains differ; one that is not even
    well-formed is skipped rather than allowed to hide a good one.
    """
    wanted = name.encode("ascii")
    for header in headers:
        for pair in header.split(b";"):
            key, sep, value = pair.partition(b"=")
            if not sep or key.strip() != wanted:
                continue
            text = value.strip().strip(b'"')
            if text.isascii() and well_formed(text.decode("ascii")):
                return text.decode("ascii")
    return None

"""OAuth 2.0 access tokens for the client credentials grant (RFC 6749 §4.4), as JWTs.

A token is a JWT (RFC 7519) signed with HS256 (RFC 7518 §3.2) under one server key that
every node shares, so any node verifies what another issued without a lookup. Claims:
``iss``, ``sub`` (the OAuth client id), ``iat``, ``exp``, ``jti`` and ``roles``; the
header carries ``kid``, a short hash of the key, so a token signed before a key rotation
is refused with a reason that says so.

Verification accepts HS256 only, whatever the token's header says: the header is the
attacker's to choose, and honouring ``alg: none`` or another algorithm is the classic
JWT forgery (RFC 8725 §2.1, §3.1). Every refusal carries a ``reason`` for the log; the
client only ever sees 401.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt

__all__ = [
    "ALGORITHM",
    "InvalidToken",
    "TokenClaims",
    "issue_token",
    "key_id",
    "new_signing_key",
    "verify_token",
]

ALGORITHM = "HS256"
#: RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
MIN_KEY_BYTES = 32
_REGISTERED = frozenset({"iss", "sub", "aud", "iat", "nbf", "exp", "jti", "roles"})


class InvalidToken(Exception):
    """A token this server does not accept; ``reason`` is meant for an admin's log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says. Times are seconds since the epoch."""

    issuer: str
    subject: str
    roles: tuple[str, ...]
    issued_at: int
    expires_at: int
    token_id: str
    key_id: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Claims the issuer added beyond the registered ones (``issue_token(extra=...)``)."""


def new_signing_key() -> bytes:
    """32 random bytes: a fresh HS256 key."""
    return secrets.token_bytes(MIN_KEY_BYTES)


def key_id(key: bytes) -> str:
    """A short public name for ``key``: the first 8 bytes of its SHA-256, in hex.

    A hash of 256 random bits reveals nothing usable about them.
    """
    return hashlib.sha256(b"partnergate token key\x00" + key).hexdigest()[:16]


def issue_token(
    key: bytes,
    client_id: str,
    roles: Sequence[str],
    lifetime_s: int,
    issuer: str,
    *,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A signed access token for ``client_id`` valid ``lifetime_s`` seconds from ``now``."""
    _check_key(key)
    if lifetime_s <= 0:
        raise ValueError("a token lifetime must be positive")
    clashing = _REGISTERED.intersection(extra or {})
    if clashing:
        raise ValueError(f"extra claims may not replace {sorted(clashing)}")
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        **(extra or {}),
        "iss": issuer,
        "sub": client_id,
        "iat": issued,
        "exp": issued + lifetime_s,
        "jti": uuid.uuid4().hex,
        "roles": list(roles),
    }
    return jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": key_id(key)})


def verify_token(key: bytes, token: str, issuer: str, *, leeway_s: int = 0) -> TokenClaims:
    """The claims of ``token`` if this server issued it and it is still valid.

    Raises :class:`InvalidToken` for a malformed token, another algorithm than HS256
    (``none`` included), a token of another key, a bad signature, a wrong issuer, or
    an expired token. ``leeway_s`` tolerates clock skew between nodes.
    """
    _check_key(key)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"malformed token: {exc}") from None
    algorithm = header.get("alg")
    if algorithm != ALGORITHM:
        raise InvalidToken(f"algorithm {algorithm!r} is not accepted, only {ALGORITHM}")
    expected_kid = key_id(key)
    if header.get("kid") != expected_kid:
        raise InvalidToken(
            f"signed with another key (kid {header.get('kid')!r}, current key {expected_kid});"
            " the signing key was rotated or the token comes from elsewhere"
        )
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=issuer,
            leeway=leeway_s,
            options={"require": ["iss", "sub", "iat", "exp", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        expired = jwt.decode(token, options={"verify_signature": False}).get("exp")
        raise InvalidToken(f"expired at {_when(expired)}") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad signature: not signed with this server's key") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken(f"wrong issuer, expected {issuer!r}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"malformed token: no {exc.claim!r} claim") from None
    except jwt.ImmatureSignatureError:
        raise InvalidToken("issued in the future: check the clocks of the nodes") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"malformed token: {exc}") from None
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise InvalidToken("malformed token: 'roles' is not a list of strings")
    return TokenClaims(
        issuer=claims["iss"],
        subject=claims["sub"],
        roles=tuple(roles),
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
        token_id=claims["jti"],
        key_id=expected_kid,
        extra={k: v for k, v in claims.items() if k not in _REGISTERED},
    )


def _check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"an {ALGORITHM} key needs at least {MIN_KEY_BYTES} bytes (RFC 7518 §3.2)")


def _when(timestamp: object) -> str:
    if isinstance(timestamp, int | float):
        return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
    return "an unknown time"

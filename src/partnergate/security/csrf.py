"""CSRF tokens the way SAP's OData services hand them out.

A client sends ``X-CSRF-Token: Fetch`` on a GET, reads the token from the response
header of the same name and sends it back on every modifying request of the same session
(SAP-doc "Partner Directory", loio 0fe80dc; the token is bound to the session cookie).

The token is HMAC-SHA256 (RFC 2104) of the session id under a server secret: nothing is
stored, so every node that shares the secret issues and accepts the same token for a
session, and a token is worthless for any other session. It lives as long as the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["check_csrf", "csrf_token", "new_session_id"]

#: RFC 2104 §3: a key shorter than the hash output weakens the MAC.
MIN_SECRET_BYTES = 32
_LABEL = b"partnergate csrf\x00"


def new_session_id() -> str:
    """256 random bits, URL-safe: unguessable, fit for a cookie."""
    return secrets.token_urlsafe(32)


def csrf_token(secret: bytes, session_id: str) -> str:
    """The session's token: URL-safe base64 of HMAC-SHA256, without padding."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"a CSRF secret needs at least {MIN_SECRET_BYTES} bytes")
    mac = hmac.new(secret, _LABEL + session_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def check_csrf(secret: bytes, session_id: str, token: str) -> bool:
    """Whether ``token`` is the session's token; compared in constant time."""
    if not token.isascii():
        return False
    expected = csrf_token(secret, session_id).encode("ascii")
    return hmac.compare_digest(expected, token.encode("ascii"))

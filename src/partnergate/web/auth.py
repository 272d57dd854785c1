"""Between HTTP and the security gate: request facts in, the gate's refusals out.

Every decision is the gate's (:mod:`partnergate.security.gate`); this module only reads
what the gate needs from an ASGI request, as received, and writes the headers and the
session cookie a decision calls for.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import Response

from ..security.gate import Facts, Refused
from ..security.sessions import SESSION_COOKIE
from .client_cert import ClientCertResult

__all__ = ["SESSION_COOKIE", "facts", "over_https", "refusal_headers", "set_session_cookie"]


def facts(conn: HTTPConnection, cert: ClientCertResult | None = None) -> Facts:
    """The request as the gate sees it: raw headers, peer address, certificate result."""
    client = conn.scope.get("client")
    if cert is None:
        return Facts(conn.scope["headers"], client[0] if client else None)
    return Facts(
        conn.scope["headers"],
        client[0] if client else None,
        cert.certificate,
        cert.reason if cert.refused else None,
        cert.status or 401,
    )


def refusal_headers(refused: Refused) -> dict[str, str]:
    headers: dict[str, str] = {}
    if refused.challenge:
        headers["WWW-Authenticate"] = refused.challenge
    if refused.retry_after is not None:
        headers["Retry-After"] = str(refused.retry_after)
    return headers


def over_https(conn: HTTPConnection) -> bool:
    """Whether the browser talks HTTPS: to our TLS listener, or to a proxy in front of us
    that ``public_url`` says is reached by ``https://`` (cookies then get ``Secure``)."""
    if conn.url.scheme == "https":
        return True
    services = getattr(conn.app.state, "services", None)
    public_url = getattr(getattr(services, "settings", None), "public_url", None) or ""
    return public_url.lower().startswith("https://")


def set_session_cookie(
    response: Response, conn: HTTPConnection, session_id: str, lifetime: int
) -> None:
    """The session cookie: the id only; never sent to scripts, nor over plain HTTP when
    the session began over HTTPS."""
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=lifetime,
        path="/",
        httponly=True,
        samesite="lax",
        secure=over_https(conn),
    )

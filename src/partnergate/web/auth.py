"""Who is calling: HTTP Basic, OAuth bearer tokens and the session cookie, and CSRF.

Each check returns a decision with a reason for the log; the caller only ever learns
"401" or "403", never which part of its credentials was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from ..security.csrf import check_csrf, csrf_token, new_session_id
from ..security.login_cache import LoginCache
from ..security.principals import AuthMethod, Principal, oauth_client_user
from ..security.tokens import InvalidToken, TokenClaims, issue_token, verify_token
from ..store.accounts import Account, Clients, Users

log = logging.getLogger("partnergate.auth")

SESSION_COOKIE = "PG_SESSIONID"
SESSION_LIFETIME = 8 * 3600
ISSUER = "partnergate"
REALM = 'Basic realm="partnergate", charset="UTF-8"'
MAX_REMEMBERED_TOKENS = 10_000


@dataclass(frozen=True)
class AuthResult:
    principal: Principal | None
    reason: str = ""
    session_id: str | None = None
    """The session the request belongs to (from its cookie), for CSRF."""
    expires: float | None = None
    """When the credentials stop being valid by themselves (a bearer token's ``exp``)."""


@dataclass(frozen=True)
class Session:
    session_id: str
    user: str
    expires: int


class Authenticator:
    def __init__(
        self,
        users: Users,
        clients: Clients,
        token_key: bytes,
        session_key: bytes,
        token_lifetime: int,
    ) -> None:
        self.users = users
        self.clients = clients
        self.token_key = token_key
        self.session_key = session_key
        self.token_lifetime = token_lifetime
        self.cache: LoginCache[Account] = LoginCache()
        self._tokens: dict[bytes, TokenClaims] = {}

    # -- credentials -------------------------------------------------------------------

    async def check_password(self, kind: str, name: str, secret: str) -> tuple[Account | None, str]:
        table = self.users if kind == "user" else self.clients
        hit = self.cache.lookup(kind, name, secret)
        if hit is not None:
            if await table.fingerprint(name) == hit.fingerprint:
                return hit.value, ""
            self.cache.forget(kind, name, secret)

        async def check() -> tuple[Account | None, str]:
            current, reason = await table.verify(name, secret)
            if current is None:
                return None, reason
            account, fingerprint = current
            self.cache.remember(kind, name, secret, account, fingerprint)
            return account, ""

        return await self.cache.once(kind, name, secret, check)

    async def basic(self, value: str) -> AuthResult:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return AuthResult(None, "malformed Basic credentials")
        name, sep, password = decoded.partition(":")
        if not sep:
            return AuthResult(None, "malformed Basic credentials (no ':')")
        account, reason = await self.check_password("user", name, password)
        if account is None:
            return AuthResult(None, reason)
        return AuthResult(Principal(account.name, frozenset(account.roles), AuthMethod.BASIC))

    async def bearer(self, token: str) -> AuthResult:
        try:
            claims = self._verified(token.strip())
        except InvalidToken as exc:
            return AuthResult(None, f"bearer token refused: {exc.reason}")
        client_id = claims.subject
        current = await self.clients.current(client_id)
        if current is None:
            return AuthResult(None, f"bearer token of removed OAuth client '{client_id}'")
        account, fingerprint = current
        if claims.extra.get("sv") != _short(fingerprint):
            return AuthResult(
                None,
                f"bearer token of OAuth client '{client_id}' predates a change of its "
                "secret or roles",
            )
        return AuthResult(
            Principal(oauth_client_user(client_id), frozenset(account.roles), AuthMethod.BEARER),
            expires=claims.expires_at,
        )

    def _verified(self, token: str) -> TokenClaims:
        """Verify a token once, then remember its claims until it expires."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        claims = self._tokens.get(digest)
        if claims is not None and claims.expires_at > time.time():
            return claims
        claims = verify_token(self.token_key, token, ISSUER)
        if len(self._tokens) >= MAX_REMEMBERED_TOKENS:
            self._tokens.clear()
        self._tokens[digest] = claims
        return claims

    async def issue(self, client_id: str, secret: str) -> tuple[str | None, str]:
        """Client credentials grant: a token, or None and the reason for the log."""
        account, reason = await self.check_password("client", client_id, secret)
        if account is None:
            return None, reason
        fingerprint = await self.clients.fingerprint(client_id) or ""
        token = issue_token(
            self.token_key,
            client_id,
            list(account.roles),
            self.token_lifetime,
            ISSUER,
            extra={"sv": _short(fingerprint)},
        )
        return token, ""

    # -- sessions ----------------------------------------------------------------------

    def session_cookie(self, session_id: str, user: str) -> str:
        expires = int(time.time()) + SESSION_LIFETIME
        user_b64 = base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")
        payload = f"{session_id}.{user_b64}.{expires}"
        mac = hmac.new(self.session_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{payload}.{mac}"

    def read_session(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 4:
            return None
        session_id, user_b64, expires, mac = parts
        payload = f"{session_id}.{user_b64}.{expires}"
        good = hmac.new(self.session_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(good, mac):
            return None
        try:
            user = base64.urlsafe_b64decode(user_b64 + "=" * (-len(user_b64) % 4)).decode()
            until = int(expires)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if until < time.time():
            return None
        return Session(session_id, user, until)

    async def authenticate(self, conn: HTTPConnection) -> AuthResult:
        session = self.read_session(conn.cookies.get(SESSION_COOKIE))
        session_id = session.session_id if session else None
        header = conn.headers.get("authorization")
        if header:
            scheme, _, value = header.partition(" ")
            scheme = scheme.lower()
            if scheme == "basic":
                result = await self.basic(value)
            elif scheme == "bearer":
                result = await self.bearer(value)
            else:
                result = AuthResult(None, f"unsupported authorization scheme '{scheme}'")
            if result.principal is not None and session and session.user != result.principal.name:
                session_id = None  # a session of someone else is no session for this caller
            return AuthResult(result.principal, result.reason, session_id)
        if session is not None:
            account = await self.users.get(session.user)
            if account is None:
                return AuthResult(None, f"session of removed user '{session.user}'")
            return AuthResult(
                Principal(account.name, frozenset(account.roles), AuthMethod.SESSION),
                session_id=session.session_id,
            )
        return AuthResult(None, "no credentials")

    # -- CSRF --------------------------------------------------------------------------

    def new_session(self) -> str:
        return new_session_id()

    def csrf_for(self, session_id: str) -> str:
        return csrf_token(self.session_key, session_id)

    def csrf_ok(self, session_id: str | None, token: str | None) -> bool:
        if not session_id or not token:
            return False
        return check_csrf(self.session_key, session_id, token)


def _short(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:16]

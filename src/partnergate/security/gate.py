"""The security gate: every face's authentication and authorisation decision.

Lives here: checking the credentials of a request (HTTP Basic, OAuth bearer tokens, the
session cookie, the client certificate's user), sessions, login throttling, roles, CSRF,
and the reasons for the log and ``/whoami``. The web layer
hands in :class:`Facts` and turns the :class:`Allowed` or :class:`Refused` it gets back
into a response. Must not know: HTTP frameworks, SQL (the store implements the ports
:class:`~.accounts.AccountBook`, :class:`~.sessions.SessionBook` and those of
:mod:`.senders`).

Rules that hold on every face (how credentials are read: :mod:`.credentials`):
- A caller learns only the status (and, for certificates, ``/whoami``'s reason); the log
  learns why. No byte sequence in a header, cookie or credential is an error of ours: it
  is a 400 or 401 like any other bad credential.
- An unknown user or client costs an argon2 check like a wrong password
  (:func:`~.password_checks.dummy_hash`), so answer times do not tell which names exist.
- Failed logins are throttled (:mod:`.throttle`, answered 429 with ``Retry-After``), and
  password checks queue fairly per source address (:mod:`.password_checks`); a login
  the node remembers as correct (:mod:`.login_cache`) is answered without either.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from cryptography import x509

from .. import metrics
from .accounts import AccountBook, StoredAccount
from .credentials import Basic, Bearer, Malformed, plausible, read_authorization, read_cookie
from .csrf import check_csrf, csrf_token
from .forwarded import TrustedProxies
from .login_cache import LoginCache
from .password_checks import Busy, PasswordChecks
from .principals import AuthMethod, Principal, oauth_client_user
from .senders import SenderIdentity, Senders
from .sessions import (
    SESSION_COOKIE,
    SESSION_IDLE,
    SESSION_LIFETIME,
    TOUCH_EVERY,
    SessionBook,
    digest,
    new_session_id,
    well_formed,
)
from .throttle import LoginThrottle
from .tokens import InvalidToken, TokenClaims, issue_token, verify_token

__all__ = ["Allowed", "Facts", "Gate", "Refused", "SESSION_COOKIE"]

ISSUER = "partnergate"
REALM = 'Basic realm="partnergate", charset="UTF-8"'
"""RFC 7617 §2.1: user names and passwords are UTF-8."""
MAX_REMEMBERED_TOKENS = 10_000
MAX_REMEMBERED_HEADERS = 10_000
"""Authorization headers, and certificates, whose sender is remembered at most."""
REMEMBER_SECONDS = 30.0
NOT_ACCEPTED = "the credentials were not accepted"


@dataclass(frozen=True)
class Facts:
    """What the gate may know of a request."""

    headers: Sequence[tuple[bytes, bytes]] = ()
    """As received: lower-case names, values as raw bytes."""
    peer: str | None = None
    """The address of the connection's other end."""
    certificate: x509.Certificate | None = None
    """A client certificate already verified against the trusted CAs."""
    certificate_problem: str | None = None
    """Why a presented certificate is refused (a refusal with ``certificate_status``)."""
    certificate_status: int = 401

    def values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name]


@dataclass(frozen=True)
class Allowed:
    principal: Principal
    partner: str | None = None
    """For senders: the partner of the authorised user the principal is."""
    session_id: str | None = None
    """The caller's session (from its cookie, or just opened), for CSRF."""
    identity: SenderIdentity | None = None
    expires: float | None = None
    """When the credentials stop being valid by themselves (a bearer token's ``exp``)."""


@dataclass(frozen=True)
class Refused:
    status: int
    reason: str
    """For the log."""
    message: str = "Authentication required"
    """For the caller."""
    challenge: str | None = None
    """The ``WWW-Authenticate`` value to send, if any."""
    tell_caller: bool = False
    """Whether ``/whoami`` may show ``reason``: certificate problems, yes (the caller holds
    the certificate); password problems, no (it would tell which user names exist)."""
    retry_after: int | None = None
    principal: Principal | None = None
    """Who was refused for lack of a role (403)."""
    session_id: str | None = None
    """Their session, if they came with one (a page can still offer to sign out)."""

    @property
    def public_reason(self) -> str:
        return self.reason if self.tell_caller else NOT_ACCEPTED


@dataclass(frozen=True)
class _Remembered:
    identity: SenderIdentity
    stamp: int
    until: float


@dataclass
class Policy:
    """The gate's settings."""

    token_lifetime: int = 3600
    session_lifetime: int = SESSION_LIFETIME
    session_idle: int = SESSION_IDLE
    trusted_proxies: TrustedProxies = field(default_factory=lambda: TrustedProxies(()))
    csrf_for_bearer: bool = False


class Gate:
    def __init__(
        self,
        users: AccountBook,
        clients: AccountBook,
        sessions: SessionBook,
        token_key: bytes,
        session_key: bytes,
        *,
        senders: Senders | None = None,
        policy: Policy | None = None,
        throttle: LoginThrottle | None = None,
        checks: PasswordChecks | None = None,
        version: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.users = users
        self.clients = clients
        self.sessions = sessions
        self.token_key = token_key
        self.session_key = session_key
        self.senders = senders
        self.policy = policy or Policy()
        self.throttle = throttle or LoginThrottle()
        self.checks = checks or PasswordChecks()
        self.version = version
        """The generation of what decides a sender's identity (accounts, certificate
        mappings, authorised users); None when nothing may be trusted from memory."""
        self.cache: LoginCache[StoredAccount] = LoginCache()
        self._tokens: dict[bytes, TokenClaims] = {}
        self._header_key = hashlib.sha256(session_key + b"\0senders").digest()
        self._resolved: dict[bytes, _Remembered] = {}
        self._certified: dict[int, tuple[x509.Certificate, _Remembered]] = {}
        """By ``id``; each entry holds its certificate, so no other object can take that
        id. :mod:`..web.client_cert` reads each presented PEM once, so a kept-alive
        sender presents the same object with every message."""

    # -- the faces -----------------------------------------------------------------------

    @metrics.counted_refusals("api")
    async def api(self, facts: Facts, accepted: frozenset[str]) -> Allowed | Refused:
        """The OData API: Basic, bearer or the session cookie, and one of ``accepted``."""
        credentials = self._authorization(facts)
        if isinstance(credentials, Refused):
            return credentials
        session_id: str | None = None
        if credentials is None:
            found = await self._session(facts)
            if isinstance(found, Refused):
                return found
            allowed = found
        else:
            checked = await self._principal(credentials, self._source(facts))
            if isinstance(checked, Refused):
                return checked
            session = await self._session(facts)
            if isinstance(session, Allowed) and session.principal.name == checked.principal.name:
                session_id = session.session_id
            allowed = Allowed(checked.principal, session_id=session_id, expires=checked.expires)
        return _authorise(allowed, accepted)

    @metrics.counted_refusals("ui")
    async def ui(self, facts: Facts, role: str | None) -> Allowed | Refused:
        """A page of the UI: the session cookie only, and ``role`` unless None."""
        found = await self._session(facts)
        if isinstance(found, Refused):
            return found
        return found if role is None else _authorise(found, frozenset({role}))

    @metrics.counted_refusals("sender")
    async def sender(self, facts: Facts, role: str | None) -> Allowed | Refused:
        """A flow (``role``) or ``/whoami`` (None): Authorization header, else certificate."""
        who = await self._sender(facts)
        if isinstance(who, Refused):
            return who
        allowed = Allowed(Principal(who.user, who.roles, who.method), who.partner, identity=who)
        return allowed if role is None else _authorise(allowed, frozenset({role}))

    @metrics.counted_refusals("oauth")
    async def oauth_client(
        self, facts: Facts, client_id: str | None, secret: str | None
    ) -> Allowed | Refused:
        """``/oauth/token``: the client by Basic header (RFC 6749 §2.3.1), else form fields."""
        header = self._authorization(facts)
        if isinstance(header, Refused):
            return header
        if isinstance(header, Basic):
            client_id, secret = unquote(header.name), unquote(header.secret)
        if not client_id or secret is None:
            return Refused(401, "no client credentials", challenge=REALM if header else None)
        if not plausible(client_id, secret):
            return Refused(401, "malformed client credentials", challenge=REALM)
        checked = await self._password(self.clients, client_id, secret, self._source(facts))
        if isinstance(checked, Refused):
            return _with_challenge(checked, REALM if header else None)
        return Allowed(Principal(checked.name, frozenset(checked.roles), AuthMethod.BASIC))

    async def issue_token(self, client: Allowed) -> str | None:
        """An access token for a client :meth:`oauth_client` allowed; None if it is gone."""
        current = await self.clients.stored(client.principal.name)
        if current is None:
            return None
        return issue_token(
            self.token_key,
            current.name,
            list(current.roles),
            self.policy.token_lifetime,
            ISSUER,
            extra={"sv": _short(current.fingerprint)},
        )

    @metrics.counted_refusals("sign_in")
    async def sign_in(self, facts: Facts, name: str, password: str) -> Allowed | Refused:
        """The UI's sign-in form: a new session for the user, or why not."""
        if not plausible(name, password):
            return Refused(400, "user name empty, too long or with control characters")
        checked = await self._password(self.users, name, password, self._source(facts))
        if isinstance(checked, Refused):
            return checked
        principal = Principal(checked.name, frozenset(checked.roles), AuthMethod.SESSION)
        return Allowed(principal, session_id=await self.open_session(principal))

    async def open_session(self, principal: Principal) -> str:
        """A new session for ``principal`` (sign-in, or an API client fetching a CSRF token)."""
        session_id = new_session_id()
        await self.sessions.create(digest(session_id), principal.name, self.policy.session_lifetime)
        return session_id

    async def sign_out(self, session_id: str) -> None:
        """End the session on every node."""
        if well_formed(session_id):
            await self.sessions.end(digest(session_id))

    def csrf_for(self, session_id: str) -> str:
        return csrf_token(self.session_key, session_id)

    def csrf_refusal(self, allowed: Allowed, token: str | None) -> Refused | None:
        """Whether an API write must be refused for its CSRF token (SAP-doc loio 0fe80dc):
        Basic and session callers send the token of their session; bearer-token callers
        need none, as with SAP, unless ``csrf_for_bearer``."""
        bearer = allowed.principal.method is AuthMethod.BEARER
        if (bearer and not self.policy.csrf_for_bearer) or self.csrf_ok(allowed.session_id, token):
            return None
        refused = Refused(
            403,
            "CSRF token missing or wrong",
            "CSRF token validation failed; fetch a token with a GET and the header "
            "'X-CSRF-Token: Fetch', then send it with the session cookie",
        )
        metrics.refusal("api", refused.status, refused.reason)
        return refused

    def form_csrf_ok(self, face: str, session_id: str | None, token: str | None) -> bool:
        """A UI form's token (``face``: ``ui`` or ``sign_in``); a wrong one counts as a
        refusal with reason ``csrf``, as an API write's does."""
        if self.csrf_ok(session_id, token):
            return True
        metrics.refusal(face, 403, "CSRF token missing or wrong")
        return False

    def csrf_ok(self, session_id: str | None, token: str | None) -> bool:
        if not session_id or not token or not well_formed(session_id):
            return False
        return check_csrf(self.session_key, session_id, token)

    def forget_certificates(self) -> None:
        if self.senders is not None:
            self.senders.forget_certificates()

    # -- credentials from headers --------------------------------------------------------

    def _authorization(self, facts: Facts) -> Basic | Bearer | Refused | None:
        found = read_authorization(facts.values(b"authorization"))
        if isinstance(found, Malformed):
            challenge = REALM if found.status == 401 else None
            message = "Authentication required" if found.status == 401 else found.reason
            return Refused(found.status, found.reason, message, challenge)
        return found

    async def _principal(self, credentials: Basic | Bearer, source: str) -> Allowed | Refused:
        if isinstance(credentials, Bearer):
            return await self._bearer(credentials.token)
        checked = await self._password(self.users, credentials.name, credentials.secret, source)
        if isinstance(checked, Refused):
            return checked
        return Allowed(Principal(checked.name, frozenset(checked.roles), AuthMethod.BASIC))

    async def _password(
        self, book: AccountBook, name: str, secret: str, source: str
    ) -> StoredAccount | Refused:
        """The account if ``secret`` is its secret; remembered logins skip the queue."""
        kind = book.kind
        hit = self.cache.lookup(kind, name, secret)
        if hit is not None:
            current = await book.stored(name)
            if current is not None and current.fingerprint == hit.fingerprint:
                return current
            self.cache.forget(kind, name, secret)
        throttled = self.throttle.check(kind, name, source)
        if throttled is not None:
            return Refused(
                429,
                f"{kind} '{name}' from {source}: {throttled.reason}",
                "Too many failed logins; try again later",
                retry_after=throttled.retry_after,
            )

        async def check() -> StoredAccount | Refused:
            current = await book.stored(name)
            self.throttle.start(kind, name, source)
            try:
                matched = await self.checks.verify(
                    current.secret_hash if current else None, secret, source
                )
            except Busy:
                self.throttle.finish(kind, name, source, succeeded=False, counted=False)
                return Refused(
                    429,
                    f"{kind} '{name}': too many password checks waiting for {source}",
                    "Too many logins at once; try again later",
                    retry_after=1,
                )
            except BaseException:
                self.throttle.finish(kind, name, source, succeeded=False, counted=False)
                raise
            self.throttle.finish(kind, name, source, succeeded=matched)
            if current is None:
                return _unauthorised(f"unknown {kind} '{name}'")
            if not matched:
                return _unauthorised(f"wrong secret for {kind} '{name}'")
            self.cache.remember(kind, name, secret, current, current.fingerprint)
            return current

        return await self.cache.once(kind, name, secret, check)

    async def _bearer(self, token: str) -> Allowed | Refused:
        try:
            claims = self._verified(token)
        except InvalidToken as exc:
            return _unauthorised(f"bearer token refused: {exc.reason}")
        client_id = claims.subject
        current = await self.clients.stored(client_id)
        if current is None:
            return _unauthorised(f"bearer token of removed OAuth client '{client_id}'")
        if claims.extra.get("sv") != _short(current.fingerprint):
            return _unauthorised(
                f"bearer token of OAuth client '{client_id}' predates a change of its "
                "secret or roles"
            )
        principal = Principal(
            oauth_client_user(client_id), frozenset(current.roles), AuthMethod.BEARER
        )
        return Allowed(principal, expires=claims.expires_at)

    def _verified(self, token: str) -> TokenClaims:
        """Verify a token once, then remember its claims until it expires."""
        key = hashlib.sha256(token.encode("ascii")).digest()
        claims = self._tokens.get(key)
        if claims is not None and claims.expires_at > time.time():
            return claims
        try:
            claims = verify_token(self.token_key, token, ISSUER)
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidToken(f"malformed token ({type(exc).__name__})") from None
        if len(self._tokens) >= MAX_REMEMBERED_TOKENS:
            self._tokens.clear()
        self._tokens[key] = claims
        return claims

    # -- sessions -------------------------------------------------------------------------

    async def _session(self, facts: Facts) -> Allowed | Refused:
        session_id = read_cookie(facts.values(b"cookie"), SESSION_COOKIE)
        if session_id is None:
            return _unauthorised("no credentials", challenge=REALM)
        key = digest(session_id)
        record = await self.sessions.get(key)
        now = datetime.now(UTC).replace(tzinfo=None)
        ended = "no such session (signed out or ended)" if record is None else None
        if record is not None and record.ended(now, self.policy.session_idle):
            record = await self.sessions.get(key, fresh=True)
            ended = (
                "no such session" if record is None else record.ended(now, self.policy.session_idle)
            )
        if ended is not None or record is None:
            return _unauthorised(f"session cookie refused: {ended}", challenge=REALM)
        account = await self.users.stored(record.user)
        if account is None:
            return _unauthorised(f"session of removed user '{record.user}'", challenge=REALM)
        touch_after = min(TOUCH_EVERY, self.policy.session_idle / 4)
        if (now - record.last_seen).total_seconds() > touch_after:
            await self.sessions.touch(key)
        principal = Principal(account.name, frozenset(account.roles), AuthMethod.SESSION)
        return Allowed(principal, session_id=session_id)

    # -- senders --------------------------------------------------------------------------

    def _stamp(self) -> int | None:
        """What a resolved sender is remembered at: the generation of the accounts,
        certificate mappings and authorised users (``version``), nothing else."""
        return self.version()

    async def _sender(self, facts: Facts) -> SenderIdentity | Refused:
        assert self.senders is not None, "the gate was built without senders"
        headers = facts.values(b"authorization")
        key = b""
        if len(headers) == 1:
            key = hashlib.blake2b(headers[0], key=self._header_key, digest_size=32).digest()
            known = self._resolved.get(key)
            # the very header that resolved before, and nothing it depends on changed
            # since: what it says cannot differ, so it need not be read again
            if known is not None and known.stamp == self._stamp():
                if known.until > time.monotonic():
                    return known.identity
        credentials = self._authorization(facts)
        if isinstance(credentials, Refused):
            return _with_challenge(credentials, REALM if credentials.status == 401 else None)
        if credentials is not None:
            stamp = self._stamp()
            checked = await self._principal(credentials, self._source(facts))
            if isinstance(checked, Refused):
                return _with_challenge(checked, REALM if checked.status == 401 else None)
            principal = checked.principal
            how = (
                f"OAuth bearer token → user '{principal.name}'"
                if principal.method is AuthMethod.BEARER
                else f"HTTP Basic → local user '{principal.name}'"
            )
            who = await self.senders.with_partner(principal, [how])
            if stamp is not None:
                _make_room(self._resolved)
                self._resolved[key] = _Remembered(who, stamp, _until(checked.expires))
            return who
        if facts.certificate_problem:
            return Refused(
                facts.certificate_status,
                facts.certificate_problem,
                tell_caller=True,
                challenge=REALM if facts.certificate_status == 401 else None,
            )
        if facts.certificate is not None:
            return await self._certified_sender(facts.certificate)
        return Refused(
            401,
            "no credentials: neither an Authorization header nor a client certificate",
            challenge=REALM,
        )

    async def _certified_sender(self, cert: x509.Certificate) -> SenderIdentity | Refused:
        """The sender a verified certificate maps to, remembered as a header's is: until
        an account, a mapping or an authorised user changes, for at most
        :data:`REMEMBER_SECONDS`, and never past the certificate's validity."""
        known = self._certified.get(id(cert))
        if known is not None and known[0] is cert:
            remembered = known[1]
            if remembered.stamp == self._stamp() and remembered.until > time.monotonic():
                return remembered.identity
        stamp = self._stamp()
        found = await self.senders.from_certificate(cert)
        if isinstance(found, str):
            return Refused(401, found, tell_caller=True, challenge=REALM)
        if stamp is not None:
            until = _until(cert.not_valid_after_utc.timestamp())
            _make_room(self._certified)
            self._certified[id(cert)] = (cert, _Remembered(found, stamp, until))
        return found

    # -- where from -----------------------------------------------------------------------

    def _source(self, facts: Facts) -> str:
        """The client's address: the peer, or what a trusted proxy says it forwarded for."""
        peer = facts.peer or "unknown"
        proxies = self.policy.trusted_proxies
        if not proxies.networks or not proxies.contains(facts.peer):
            return peer
        hops: list[str] = []
        for value in facts.values(b"x-forwarded-for"):
            hops += [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
        for hop in reversed(hops):
            if not proxies.contains(hop):
                return hop[:64]
        return peer


def _until(expires: float | None) -> float:
    """When a resolved sender is forgotten (``time.monotonic``): after
    :data:`REMEMBER_SECONDS`, or at ``expires`` (seconds since the epoch) if sooner."""
    until = time.monotonic() + REMEMBER_SECONDS
    if expires is not None:
        until = min(until, time.monotonic() + expires - time.time())
    return until


def _make_room(remembered: dict[Any, Any]) -> None:
    """Forget every remembered sender of a full table: one more is about to go in."""
    if len(remembered) >= MAX_REMEMBERED_HEADERS:
        remembered.clear()


def _authorise(allowed: Allowed, accepted: frozenset[str]) -> Allowed | Refused:
    principal = allowed.principal
    if principal.roles & accepted:
        return allowed
    needed = " or ".join(sorted(accepted))
    return Refused(
        403,
        f"user '{principal.name}' lacks role {needed} (has: "
        f"{', '.join(sorted(principal.roles)) or 'none'})",
        f"The role {needed} is required",
        principal=principal,
        session_id=allowed.session_id,
    )


def _unauthorised(reason: str, challenge: str | None = REALM) -> Refused:
    return Refused(401, reason, challenge=challenge)


def _with_challenge(refused: Refused, challenge: str | None) -> Refused:
    if refused.status != 401 or refused.challenge == challenge:
        return refused
    return Refused(
        refused.status,
        refused.reason,
        refused.message,
        challenge,
        refused.tell_caller,
        refused.retry_after,
        refused.principal,
        refused.session_id,
    )


def _short(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:16]

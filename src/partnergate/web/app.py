"""The Starlette application: the faces of partnergate over one store.

``/api/v1`` (OData V2 Partner Directory API), ``/oauth/token`` (client credentials).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from .. import logs, metrics
from ..config import Settings
from ..model.rules import Limits
from ..odata.paths import request_target
from ..runtime.changes import IDENTITY_SETS, Changes
from ..runtime.directory import PartnerDirectory
from ..runtime.engine import Engine
from ..runtime.receivers import ClientKeystore, ReceiverPool
from ..security.forwarded import TrustedProxies
from ..security.gate import Allowed, Gate, Policy, Refused
from ..security.password_checks import PasswordChecks
from ..security.secretbox import SecretBox
from ..security.senders import Senders
from ..security.throttle import FAILURES_FILE, LoginThrottle, SharedFailures
from ..security.throttle import Limits as LoginLimits
from ..store import audit, database
from ..store.accounts import AccountCache, Clients, Users, server_key
from ..store.changes import ChangeListener, SiblingNotices, SqliteChangeLog
from ..store.directory import DirectoryStore, now
from ..store.messagelog import StoreMessageLog
from ..store.reader import StoreReader
from ..store.sessions import Sessions
from ..store.siblings import current as current_siblings
from . import odata_service
from .auth import facts, refusal_headers, set_session_cookie
from .bodies import BodyTooLarge, read_body
from .client_cert import CertificateTrust, ClientCertResult, client_certificate
from .flows import Deployment, Runtime
from .operating import AccessLog, counted_api, metrics_endpoint, ready
from .services import Services
from .ui import root, ui_routes

log = logging.getLogger("partnergate.web")

API_ROOT = "/api/v1"
API_PREFIX = API_ROOT + "/"
API_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "MERGE", "DELETE"]
WRITES = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})


class _AnyPath(Convertor[str]):
    """Any rest of a path, line breaks included: an API path with ``%0A`` still reaches
    the API and gets an OData error, not the router's plain-text 404."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", _AnyPath())


def _odata_error(
    status: int, code: str, message: str, as_json: bool, headers: dict[str, str] | None = None
) -> Response:
    from ..odata.errors import error_json, error_xml

    if as_json:
        return Response(error_json(code, message), status, headers, media_type="application/json")
    return Response(error_xml(code, message), status, headers, media_type="application/xml")


_ERROR_CODES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    429: "Too Many Requests",
}


def base_url(request: Request, settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/") + API_ROOT + "/"
    return str(request.base_url).rstrip("/") + API_ROOT + "/"


class _ApiServices:
    """The OData service of each service root this app is reached at (``Host`` and
    scheme decide it unless ``public_url`` does), made once instead of per request."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._by_origin: dict[tuple[object, ...], odata_service.ODataService] = {}

    def _flow_names(self) -> set[str]:
        return {flow.name for flow in self.services.runtime.deployment.flows}

    def get(self, request: Request) -> odata_service.ODataService:
        scope = request.scope
        host = next((v for k, v in scope["headers"] if k == b"host"), None)
        origin = (
            scope.get("scheme"),
            host,
            scope.get("server"),
            scope.get("app_root_path", scope.get("root_path", "")),
        )
        service = self._by_origin.get(origin)
        if service is None:
            settings = self.services.settings
            service = odata_service.ODataService(
                self.services.store,
                odata_service.Settings(
                    base_url=base_url(request, settings),
                    page_size=settings.page_size,
                    binary_page_size=settings.binary_page_size,
                    metadata_style=settings.metadata_style,
                ),
                self.services.message_log,
                self._flow_names,
            )
            if len(self._by_origin) >= 100:  # Host headers are the client's to choose
                self._by_origin.clear()
            self._by_origin[origin] = service
        return service


def _api_services(request: Request) -> _ApiServices:
    state = request.app.state
    services: Services = state.services
    found: _ApiServices | None = getattr(state, "api_services", None)
    if found is None or found.services is not services:
        found = state.api_services = _ApiServices(services)
    return found


async def api(request: Request) -> Response:
    scope = request.scope
    api_services = _api_services(request)
    services = api_services.services
    settings = services.settings
    raw_query = scope["query_string"]
    query = parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True) if raw_query else []
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    as_json = odata_service.wants_json(headers, query)

    raw_path = request_target(scope.get("raw_path", b"").split(b"?", 1)[0])
    api_path = raw_path[len(API_ROOT) :] if raw_path.startswith(API_ROOT) else ""
    method = scope["method"].upper()
    decision = await services.gate.api(
        facts(request), odata_service.accepted_roles(api_path, method)
    )
    if isinstance(decision, Refused):
        log.info("%d %s %s: %s", decision.status, method, request.url.path, decision.reason)
        return _odata_error(
            decision.status,
            _ERROR_CODES.get(decision.status, "Unauthorized"),
            decision.message,
            as_json,
            refusal_headers(decision),
        )
    principal = decision.principal

    new_session: str | None = None
    csrf_header: str | None = None
    session_id = decision.session_id
    if method in ("GET", "HEAD") and headers.get("x-csrf-token", "").lower() == "fetch":
        if session_id is None:
            session_id = new_session = await services.gate.open_session(principal)
        csrf_header = services.gate.csrf_for(session_id)
    elif method in WRITES:
        refused = services.gate.csrf_refusal(decision, headers.get("x-csrf-token"))
        if refused is not None:
            log.info("403 %s %s: %s", method, request.url.path, refused.reason)
            return _odata_error(
                403, "Forbidden", refused.message, as_json, {"X-CSRF-Token": "Required"}
            )

    try:
        body = await read_body(request, settings.max_body_bytes)
    except BodyTooLarge as exc:
        return _odata_error(413, "Payload Too Large", str(exc), as_json)

    answer = await api_services.get(request).handle(
        odata_service.ODataRequest(
            method, api_path.lstrip("/"), query, headers, body, principal.name
        )
    )
    response = Response(b"" if method == "HEAD" else answer.body, answer.status, answer.headers)
    if csrf_header is not None:
        response.headers["X-CSRF-Token"] = csrf_header
    if new_session is not None:
        set_session_cookie(response, request, new_session, settings.session_lifetime)
    return response


async def token(request: Request) -> Response:
    """RFC 6749 §4.4 client credentials grant; client auth by Basic header or form fields."""
    services: Services = request.app.state.services
    try:
        body = await read_body(request, 64 * 1024)
    except BodyTooLarge:
        return _oauth_error(413, "invalid_request", "request body too large")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/x-www-form-urlencoded", ""):
        return _oauth_error(
            400, "invalid_request", "send the parameters as application/x-www-form-urlencoded"
        )
    try:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "the body is not UTF-8")
    form.update(
        {k: v for k, v in request.query_params.items() if k == "grant_type" and k not in form}
    )
    grant = form.get("grant_type")
    if grant is None:
        return _oauth_error(400, "invalid_request", "grant_type is missing")
    if grant != "client_credentials":
        return _oauth_error(
            400,
            "unsupported_grant_type",
            f"grant_type '{grant}' is not supported; use client_credentials",
        )
    decision = await services.gate.oauth_client(
        facts(request), form.get("client_id"), form.get("client_secret")
    )
    issued = await services.gate.issue_token(decision) if isinstance(decision, Allowed) else None
    if not isinstance(decision, Allowed) or issued is None:
        refused = decision if isinstance(decision, Refused) else Refused(401, "client removed")
        log.info("%d /oauth/token: %s", refused.status, refused.reason)
        error = {400: "invalid_request", 429: "temporarily_unavailable"}
        return _oauth_error(
            refused.status,
            error.get(refused.status, "invalid_client"),
            "client authentication failed" if refused.status == 401 else refused.message,
            refusal_headers(refused),
        )
    return JSONResponse(
        {
            "access_token": issued,
            "token_type": "bearer",
            "expires_in": services.settings.token_lifetime,
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _oauth_error(
    status: int, error: str, description: str, extra: dict[str, str] | None = None
) -> Response:
    headers = {"Cache-Control": "no-store", **(extra or {})}
    return JSONResponse({"error": error, "error_description": description}, status, headers)


async def health(request: Request) -> Response:
    """Up; with several workers also which one answered (a number from 0), in a header."""
    siblings = current_siblings()
    if siblings is not None:
        return JSONResponse({"status": "ok"}, headers={"Partnergate-Worker": str(siblings.index)})
    return JSONResponse({"status": "ok"})


def receiver_pool(settings: Settings) -> ReceiverPool:
    """The receiver adapter's clients, with the keystores and CAs the settings name."""
    keystores = {
        name: ClientKeystore(entry["cert"], entry.get("key"), entry.get("password"))
        for name, entry in settings.keystores.items()
    }
    return ReceiverPool(keystores=keystores, ca_file=settings.receiver_ca)


def shared_failures() -> SharedFailures | None:
    """Failed logins counted over every worker of this server; None in one process."""
    siblings = current_siblings()
    if siblings is None or siblings.directory is None:
        return None
    return SharedFailures(Path(siblings.directory) / FAILURES_FILE)


async def build_services(settings: Settings) -> Services:
    engine = database.create_engine(settings.db, query_time_limit=settings.query_time_limit)
    await database.upgrade(engine)
    secretbox = SecretBox.from_key_file(Path(settings.credential_key_file))
    store = DirectoryStore(engine, secretbox, Limits(max_binary_bytes=settings.max_binary_bytes))
    accounts = AccountCache(engine)
    users = Users(engine, accounts)
    clients = Clients(engine, accounts)
    sessions = Sessions(engine, accounts)
    token_key = await server_key(engine, "oauth-token-signing")
    session_key = await server_key(engine, "session")
    reader = StoreReader(store)
    changes = Changes()
    directory = PartnerDirectory(reader, files_dir=Path(settings.data_dir) / "pd-files")
    directory.follow(changes)
    accounts.changes = changes
    changes.subscribe(accounts.invalidate, accounts.clear)
    path = database.sqlite_file(engine)
    if path is not None:
        changes.add_source(SqliteChangeLog(path))
    senders = Senders(reader, directory)
    changes.subscribe(senders.apply, senders.forget_certificates)
    checks = PasswordChecks(per_source=settings.password_checks_per_address)
    await checks.prepare()
    gate = Gate(
        users,
        clients,
        sessions,
        token_key,
        session_key,
        senders=senders,
        policy=Policy(
            token_lifetime=settings.token_lifetime,
            session_lifetime=settings.session_lifetime,
            session_idle=settings.session_idle,
            trusted_proxies=TrustedProxies(settings.trusted_proxies),
            csrf_for_bearer=settings.csrf_for_bearer,
        ),
        throttle=LoginThrottle(
            LoginLimits(
                per_user_address=settings.login_failures_per_user_address,
                per_address=settings.login_failures_per_address,
                per_user=settings.login_failures_per_user,
                window=settings.login_failure_window,
            ),
            shared_failures(),
        ),
        checks=checks,
        version=lambda: changes.stamp(IDENTITY_SETS),
    )
    message_log = StoreMessageLog(
        engine,
        trace_hours=settings.trace_hours,
        trace_max_bytes=settings.trace_max_bytes,
    )
    message_log.siblings = current_siblings()
    changes.subscribe(message_log.levels.follow, lambda: None)  # levels are re-read every 2 s
    store.before_read.append(message_log.flush_everywhere)
    runtime = Runtime(
        Deployment(settings.flows),
        Engine(
            directory,
            message_log=message_log,
            receivers=receiver_pool(settings),
            step_time_limit=settings.step_time_limit,
            xslt_workers=settings.xslt_workers,
            log_levels=message_log.levels,
            trace_max_body=settings.trace_max_body,
        ),
        directory,
        gate,
        settings.max_body_bytes,
        changes,
    )
    store.listeners.append(changes.publish)
    return Services(
        settings, store, users, clients, accounts, sessions, gate, runtime, message_log, changes
    )


def _client_certificate(request: Request) -> ClientCertResult:
    services: Services = request.app.state.services
    return client_certificate(request.scope, services.settings, request.app.state.certificate_trust)


async def flow_endpoint(request: Request) -> Response:
    services: Services = request.app.state.services
    return await services.runtime.handle(request, facts(request, _client_certificate(request)))


async def whoami(request: Request) -> Response:
    """Who the caller's credentials make it, as a flow would see it, and why."""
    services: Services = request.app.state.services
    services.changes.catch_up()
    decision = await services.gate.sender(facts(request, _client_certificate(request)), None)
    if isinstance(decision, Refused):
        body = {"authenticated": False, "reason": decision.public_reason}
        return JSONResponse(body, decision.status, refusal_headers(decision))
    assert decision.identity is not None
    return JSONResponse({"authenticated": True, **decision.identity.as_dict()})


async def _housekeeping(services: Services) -> None:
    """Keep the message processing log within its retention and remove ended sessions,
    hourly."""
    while True:
        try:
            removed = await services.message_log.purge(services.settings.message_log_days)
            if removed:
                log.info("message processing log: %d old entries removed", removed)
        except Exception:
            log.exception("message processing log retention failed")
        try:
            settings = services.settings
            pruned = await audit.prune(
                services.store.engine,
                now(),
                settings.history_days,
                settings.history_max_entries,
            )
            if pruned:
                log.info("change history: %d old entries removed", pruned)
        except Exception:
            log.exception("change history retention failed")
        try:
            ended = await services.sessions.purge(services.settings.session_idle)
            if ended:
                log.info("%d ended sessions removed", ended)
        except Exception:
            log.exception("removing ended sessions failed")
        await asyncio.sleep(3600)


FLOW_PREFIXES = ("/http/", "/cxf/")


class Gateway:
    """partnergate's ASGI app: messages for deployed flows and API requests go straight
    to their endpoint, everything else through Starlette's router.

    Messages and API calls are most of the traffic and need neither routing nor
    Starlette's exception middleware: the runtime answers every failure of a flow itself,
    the API every failure of a request as an OData error. What escapes them is logged and
    answered 500 here, as Starlette would.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state
        self.api = counted_api(api)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith(FLOW_PREFIXES):
            endpoint = flow_endpoint
        elif (path == API_ROOT or path.startswith(API_PREFIX)) and scope["method"] in API_METHODS:
            endpoint = self.api
        else:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        try:
            response = await endpoint(Request(scope, receive))
        except ClientDisconnect:
            raise  # nobody to answer: the server's own wrapper lets it go quietly
        except Exception:
            log.exception("%s %s failed", scope["method"], path)
            response = PlainTextResponse("Internal Server Error", 500)
        await response(scope, receive, send)


def create_app(settings: Settings) -> Gateway | AccessLog:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await build_services(settings)
        app.state.services = services
        if getattr(app.state, "certificate_trust", None) is None:
            app.state.certificate_trust = CertificateTrust.from_settings(settings)
        await services.message_log.load_levels()
        log_writer = asyncio.create_task(services.message_log.run())
        if services.message_log.siblings is not None:
            services.message_log.siblings.listen(services.message_log.flush)
            services.message_log.siblings.listen_sync(metrics.sync)
        tasks = [
            asyncio.create_task(services.runtime.deployment.watch()),
            asyncio.create_task(_housekeeping(services)),
            asyncio.create_task(metrics.run_sync()),
        ]
        if services.store.engine.dialect.name == "postgresql":
            listener = ChangeListener(settings.db, services.changes.publish, services.changes.gap)
            services.accounts.live = services.changes.live = listener.ready.is_set
            if services.message_log.siblings is not None:
                services.changes.add_source(SiblingNotices(services.message_log.siblings, listener))
            tasks.append(asyncio.create_task(listener.run()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await services.runtime.engine.aclose()
            log_writer.cancel()
            await asyncio.gather(log_writer, return_exceptions=True)
            services.message_log.close()
            services.runtime.directory.close()
            services.accounts.close()
            await services.store.close()
            await services.store.engine.dispose()
            services.changes.close()  # the last: closing the WAL index's file ends our locks

    routes = [
        Route("/oauth/token", token, methods=["POST"]),
        Route(API_ROOT, counted_api(api), methods=API_METHODS),
        Route(API_ROOT + "/{path:anypath}", counted_api(api), methods=API_METHODS),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/whoami", whoami, methods=["GET"]),
        Mount("/ui", routes=ui_routes()),
        Route("/", root),
    ]
    gateway = Gateway(Starlette(routes=routes, lifespan=lifespan))
    if settings.access_log:
        return AccessLog(gateway, logs.AccessWriter(settings.log_format))
    return gateway

"""What operators and their platforms call: ``/metrics``, ``/ready``, and the access log.

``/health`` says the process runs (liveness). ``/ready`` says it should get traffic: the
store is migrated and answers a cheap query within a second, the flows are loaded, and the
server is not shutting down; otherwise 503 with the reason.

``/metrics`` is Prometheus' text format. By default it needs credentials (Basic, bearer
token or session, as the API) of a user with the monitoring role or the Partner Directory
administrator role (setting ``metrics_auth = "role"``, role name ``metrics_role``);
``metrics_auth = "none"`` serves it to anyone who reaches the port. A listener of its own
(``metrics_http``) serves ``/metrics`` without credentials and nothing but the probes
besides, for a scraper on a network the partners do not reach (:class:`MetricsOnly`).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import metrics
from ..logs import AccessWriter
from ..odata.paths import entity_set_name
from ..security.gate import Refused
from ..security.principals import PARTNER_DIRECTORY_CONFIGURATOR
from ..store import probes
from ..store.siblings import current as current_siblings
from .auth import facts, refusal_headers

log = logging.getLogger("partnergate.web")

READY_TIMEOUT = 1.0
"""Seconds the store has to answer the readiness probe."""

_draining = threading.Event()


def start_draining() -> None:
    """From now on ``/ready`` answers 503: the server is shutting down (SIGTERM)."""
    _draining.set()


def draining() -> bool:
    return _draining.is_set()


async def ready(request: Request) -> Response:
    services = getattr(request.app.state, "services", None)
    if services is None:
        return _not_ready("starting: the store is not migrated yet")
    if draining():
        return _not_ready("shutting down")
    deployment = services.runtime.deployment
    if deployment.folder is not None and not deployment.folder.is_dir():
        return _not_ready(f"flows folder {deployment.folder} cannot be read")
    why = await probes.answers(services.store.engine, READY_TIMEOUT)
    if why is not None:
        log.warning("not ready: the store does not answer: %s", why)
        return _not_ready(f"the store does not answer: {why}")
    return JSONResponse({"status": "ready"})


def _not_ready(reason: str) -> Response:
    return JSONResponse({"status": "not ready", "reason": reason}, 503)


METRICS_LISTENER = "partnergate.metrics_listener"
"""Scope key set by :class:`MetricsOnly`: the request came to the scraper's listener."""
METRICS_LISTENER_PATHS = frozenset({"/metrics", "/health", "/ready"})


class MetricsOnly:
    """The app as the scraper's listener serves it: ``/metrics`` without credentials and
    the probes; any other path is 404, so the listener opens nothing else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"] not in METRICS_LISTENER_PATHS:
                await PlainTextResponse("Not Found", 404)(scope, receive, send)
                return
            scope = {**scope, METRICS_LISTENER: True}
        await self.app(scope, receive, send)


async def metrics_endpoint(request: Request) -> Response:
    services = request.app.state.services
    settings = services.settings
    if settings.metrics_auth != "none" and not request.scope.get(METRICS_LISTENER):
        accepted = frozenset({settings.metrics_role, PARTNER_DIRECTORY_CONFIGURATOR})
        decision = await services.gate.api(facts(request), accepted)
        if isinstance(decision, Refused):
            log.info("%d GET /metrics: %s", decision.status, decision.reason)
            headers = refusal_headers(decision)
            return PlainTextResponse(decision.message, decision.status, headers)
    siblings = current_siblings()
    if siblings is not None:
        await siblings.sync_others()
    mapped = await probes.mapped_certificates(services.store.engine)
    own = _server_certificate(settings.tls_cert)
    family = metrics.certificate_family(mapped, own, time.time())
    return Response(metrics.exposition([family]), headers={"Content-Type": metrics.CONTENT_TYPE})


def _server_certificate(path: str | None) -> list[tuple[str, float]]:
    if not path:
        return []
    from ..security.certificates import CertificateError, load_certificates

    try:
        with open(path, "rb") as file:
            leaf = load_certificates(file.read())[0]
    except (OSError, CertificateError, ssl.SSLError, IndexError):
        return []
    return [(leaf.subject.rfc4514_string(), leaf.not_valid_after_utc.timestamp())]


def counted_api(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[..., Awaitable]:
    """The API endpoint, each answer counted by entity set, method and status."""

    async def counted(request: Request) -> Response:
        response = await endpoint(request)
        path = request.scope["path"][len("/api/v1") :].lstrip("/")
        try:
            name = entity_set_name(path) or "(service)"
        except Exception:
            name = "(invalid)"
        if name not in _KNOWN_SETS:
            name = "(other)"
        metrics.api_request(name, request.method, response.status_code)
        return response

    return counted


def _known_sets() -> frozenset[str]:
    from ..model.entities import ENTITY_TYPES

    return frozenset(ENTITY_TYPES) | {
        "(service)",
        "(invalid)",
        "$metadata",
        "$batch",
    }


_KNOWN_SETS = _known_sets()


class AccessLog:
    """One line per request (``access_log = true``): client, method, path, status and
    milliseconds, written in batches (:class:`partnergate.logs.AccessWriter`). Off by
    default: every message is in the message processing log, and refusals are logged
    with their reason."""

    def __init__(self, app: ASGIApp, writer: AccessWriter) -> None:
        self.app = app
        self.writer = writer
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            try:
                await self.app(scope, receive, send)
            finally:
                if scope["type"] == "lifespan":
                    self.writer.flush()
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            self.writer.write(
                client[0] if client else None,
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )

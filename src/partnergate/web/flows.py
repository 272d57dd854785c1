"""The sender endpoints of deployed flows (``/http/...``, ``/cxf/...``) and flow deployment.

A message walks: the security gate (credentials → one principal, its partner, the flow's
role) → the runtime engine → the reply. A request refused before the flow never reaches
it and is logged with the reason; the sender learns only the status.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from cryptography import x509
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..runtime import soap
from ..runtime.changes import Changes
from ..runtime.directory import PartnerDirectory
from ..runtime.engine import Engine
from ..runtime.exchange import Exchange
from ..runtime.flows import FlowSet, load_flows
from ..security.gate import Facts, Gate, Refused
from ..security.senders import SenderIdentity
from .auth import refusal_headers
from .bodies import BodyTooLarge, read_body

log = logging.getLogger("partnergate.runtime")


class Deployment:
    """The flows of one folder, reloaded when its files change or on request (SIGHUP)."""

    def __init__(self, folder: str | None) -> None:
        self.folder = Path(folder) if folder else None
        self.flows = FlowSet()
        self._stamp: tuple[tuple[str, float, int], ...] = ()
        if self.folder is not None:
            self.reload()

    def _snapshot(self) -> tuple[tuple[str, float, int], ...]:
        assert self.folder is not None
        try:
            entries = sorted(self.folder.iterdir())
        except OSError:
            return ()
        out = []
        for path in entries:
            try:
                stat = path.stat()
            except OSError:
                continue
            out.append((path.name, stat.st_mtime, stat.st_size))
        return tuple(out)

    def reload(self) -> FlowSet:
        if self.folder is None:
            return self.flows
        self._stamp = self._snapshot()
        try:
            flows = load_flows(self.folder)
        except OSError as exc:
            log.error("flows folder %s cannot be read: %s", self.folder, exc)
            return self.flows
        for error in flows.errors:
            log.error("flow refused: %s", error)
        log.info("%d flows deployed from %s", len(flows), self.folder)
        self.flows = flows
        return flows

    async def watch(self, interval: float = 1.0) -> None:
        """Reload whenever a file in the folder is added, removed or changed."""
        while self.folder is not None:
            await asyncio.sleep(interval)
            if self._snapshot() != self._stamp:
                self.reload()


class Runtime:
    def __init__(
        self,
        deployment: Deployment,
        engine: Engine,
        directory: PartnerDirectory,
        gate: Gate,
        max_body_bytes: int,
        changes: Changes | None = None,
    ) -> None:
        self.deployment = deployment
        self.changes = changes if changes is not None else Changes()
        self.engine = engine
        self.directory = directory
        self.gate = gate
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request, facts: Facts) -> Response:
        self.changes.catch_up()  # what other processes wrote, before this message's reads
        path = request.scope["path"]
        flow = self.deployment.flows.find(path)
        if flow is None:
            return PlainTextResponse(f"No flow is deployed at {path}", 404)
        if request.method != flow.method:
            return PlainTextResponse(
                f"{path} accepts {flow.method} only", 405, {"Allow": flow.method}
            )
        decision = await self.gate.sender(facts, flow.role)
        if isinstance(decision, Refused):
            log.info("%d %s %s: %s", decision.status, request.method, path, decision.reason)
            return PlainTextResponse(decision.message, decision.status, refusal_headers(decision))
        who = decision.identity
        assert who is not None
        try:
            body = await read_body(request, self.max_body_bytes)
        except BodyTooLarge as exc:
            return PlainTextResponse(str(exc), 413)
        envelope: str | None = None
        if flow.adapter == "cxf":
            try:
                unwrapped = soap.unwrap(body)
            except soap.SoapError as exc:
                return PlainTextResponse(str(exc), 400)
            body, envelope = unwrapped.payload, unwrapped.version
        exchange = Exchange.inbound(
            body, request.headers.items(), user=who.user, sender_partner=who.partner
        )
        exchange.adapter_attributes.extend(_adapter_attributes(flow.adapter, path, who, facts))
        reply = await self.engine.process(flow, exchange)
        headers = dict(reply.headers)
        headers["SAP_MessageProcessingLogID"] = exchange.message_id
        status, payload, content_type = reply.status, reply.body, reply.content_type
        if envelope is not None:
            content_type = soap.CONTENT_TYPES[envelope]
            if status >= 400:
                text = payload.decode("utf-8", "replace")
                payload = soap.fault(text, envelope, sender_fault=status < 500)
                status = 400 if envelope == soap.SOAP12 and status < 500 else 500
            else:
                payload = soap.wrap(payload, envelope)
        if content_type:  # as the flow set it, once, without a charset added
            for name in [n for n in headers if n.lower() == "content-type"]:
                del headers[name]
            headers["Content-Type"] = content_type
        return Response(payload, status, headers)


ADAPTER_IDS = {"http": "HTTPS Sender", "cxf": "SOAP Sender"}


def _adapter_attributes(
    adapter: str, endpoint: str, who: SenderIdentity, facts: Facts
) -> list[tuple[str, str, str]]:
    """What the sender adapter saw, for SAP's ``AdapterAttributes``."""
    adapter_id = ADAPTER_IDS.get(adapter, adapter)
    seen = [("AuthenticationKind", who.method.value), ("Endpoint", endpoint)]
    if facts.peer:
        seen.append(("ClientIp", facts.peer))
    if facts.certificate is not None:
        subject, issuer = _names(facts.certificate)
        seen.append(("CertificateSubject", subject))
        seen.append(("CertificateIssuer", issuer))
    seen.append(("AuthenticatedUser", who.user))
    return [(adapter_id, name, value) for name, value in seen]


def _names(certificate: x509.Certificate) -> tuple[str, str]:
    """Subject and issuer as RFC 4514 text, once per certificate object: a kept-alive
    sender presents the same one (:mod:`.client_cert` reads each PEM once) with every
    message, and hashing a certificate costs about what it saves."""
    found = _NAMES.get(id(certificate))
    if found is None or found[0] is not certificate:
        if len(_NAMES) >= MAX_NAMES:
            _NAMES.clear()
        names = certificate.subject.rfc4514_string(), certificate.issuer.rfc4514_string()
        found = _NAMES[id(certificate)] = (certificate, *names)
    return found[1], found[2]


MAX_NAMES = 256
_NAMES: dict[int, tuple[x509.Certificate, str, str]] = {}
"""By ``id``; each entry holds its certificate, so no other object can take that id."""

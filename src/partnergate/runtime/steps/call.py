"""``call``: send the message to a receiver and take its answer as the new message.

As SAP's HTTP receiver adapter: the address is usually the receiver's ``ADDRESS``
parameter, Basic credentials come from ``pd:<Pid>:<Id>:UserCredential``, a 2xx answer
becomes the body (status in header ``CamelHttpResponseCode``), anything else fails the
message with 502, no answer in time with 504. Only ``Content-Type`` and the headers the
step lists go out; the sender's other headers stay inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from ..errors import FlowError, misconfigured, missing, receiver_failed, receiver_timeout
from ..exchange import CORRELATION_ID, RESPONSE_CODE, Exchange, Reply
from ..pduri import parse_pd_uri
from ..receivers import ReceiverError, ReceiverTimeout
from ..services import Services
from ..spec import Spec
from ..values import Template, parse_template, template_of
from .base import LoadContext, Step

METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")


@dataclass
class CallStep(Step):
    kind = "call"
    address: Template
    method: str
    credentials: Template | None
    keystore: str | None
    timeout: float
    connect_timeout: float
    headers: dict[str, Template]
    partner: Template | None
    pass_errors: bool

    @classmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        if isinstance(node, yaml.ScalarNode):
            address = parse_template(str(node.value), what, node)
            return cls(address, "POST", None, None, 60.0, 10.0, {}, None, False)
        spec = Spec(node, what)
        spec.only(
            (
                "address",
                "method",
                "credentials",
                "client-certificate",
                "timeout",
                "connect-timeout",
                "headers",
                "partner",
                "on-error-status",
            )
        )
        credentials = template_of(spec, "credentials") if "credentials" in spec else None
        if credentials is not None and credentials.is_literal:
            try:
                parse_pd_uri(credentials.text, "UserCredential")
            except ValueError as exc:
                raise FlowError(f"{what}: {exc}", line=spec.line_of("credentials")) from None
        headers: dict[str, Template] = {}
        if (header_spec := spec.mapping("headers")) is not None:
            headers = {name: template_of(header_spec, name) for name in header_spec}
        return cls(
            address=template_of(spec, "address"),
            method=spec.choice("method", METHODS, "POST"),
            credentials=credentials,
            keystore=spec.text("client-certificate") if "client-certificate" in spec else None,
            timeout=spec.number("timeout", 60.0),
            connect_timeout=spec.number("connect-timeout", 10.0),
            headers=headers,
            partner=template_of(spec, "partner") if "partner" in spec else None,
            pass_errors=spec.choice("on-error-status", ("fail", "pass"), "fail") == "pass",
        )

    async def run(self, exchange: Exchange, services: Services) -> Reply | None:
        address = self.address.render(exchange).strip()
        if not address:
            raise misconfigured("the receiver address is empty")
        auth, credential_pid = await self._credentials(exchange, services)
        if self.partner is not None:
            exchange.receiver_partner = self.partner.render(exchange) or None
        elif credential_pid is not None:
            exchange.receiver_partner = credential_pid
        headers = {name: t.render(exchange) for name, t in self.headers.items()}
        if exchange.content_type and "content-type" not in {h.lower() for h in headers}:
            headers["Content-Type"] = exchange.content_type
        headers.setdefault(CORRELATION_ID, exchange.correlation_id)
        exchange.note(f"{self.method} {address}")
        try:
            response = await services.receivers.send(
                address,
                method=self.method,
                body=exchange.body if self.method != "GET" else b"",
                headers=headers,
                auth=auth,
                keystore=self.keystore,
                timeout=self.timeout,
                connect_timeout=self.connect_timeout,
            )
        except ValueError as exc:
            raise misconfigured("the receiver cannot be called", detail=str(exc)) from None
        except ReceiverTimeout as exc:
            raise receiver_timeout(
                f"the receiver did not answer within {self.timeout:g} s",
                detail=f"{self.method} {address}: {exc}",
            ) from None
        except ReceiverError as exc:
            raise receiver_failed(str(exc), detail=f"{self.method} {address}: {exc}") from None
        exchange.note(f"answered {response.status}")
        if not 200 <= response.status < 300 and not self.pass_errors:
            raise receiver_failed(
                f"the receiver answered {response.status} {response.reason}".rstrip(),
                detail=f"{self.method} {address} answered {response.status}: "
                f"{response.body[:500].decode('utf-8', errors='replace')}",
            )
        exchange.body = response.body
        exchange.status = response.status
        exchange.headers[RESPONSE_CODE] = str(response.status)
        content_type = response.headers.get("Content-Type")
        if content_type:
            exchange.headers["Content-Type"] = content_type
        else:
            exchange.headers.pop("Content-Type", None)
        return None

    async def _credentials(
        self, exchange: Exchange, services: Services
    ) -> tuple[tuple[str, str] | None, str | None]:
        if self.credentials is None:
            return None, None
        text = self.credentials.render(exchange)
        try:
            uri = parse_pd_uri(text, "UserCredential")
        except ValueError as exc:
            raise misconfigured(f"the credentials are not usable: {exc}") from None
        found = await services.directory.get_user_credential(uri.pid, uri.id)
        if found is None:
            raise missing(f"user credential {uri.pid}/{uri.id} not found in the Partner Directory")
        exchange.secrets.append(found[1])
        exchange.note(f"credentials {uri.pid}/{uri.id}")
        return found, uri.pid

    def names_receiver(self, exchange: Exchange) -> str | None:
        """The receiver this step would call, for the log of a message that never got
        here."""
        if self.partner is not None:
            return self.partner.render(exchange).strip() or None
        if self.credentials is not None:
            try:
                return parse_pd_uri(self.credentials.render(exchange), "UserCredential").pid
            except ValueError:
                return None
        return None

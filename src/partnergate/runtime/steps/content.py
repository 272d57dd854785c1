"""``body`` and ``reply``: the message body from a template or a source, and the answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape as xml_escape

import yaml

from ..errors import FlowError
from ..exchange import MESSAGE_ID, Exchange, Reply
from ..services import Services
from ..spec import Spec
from ..values import Template, TemplateSource, Value, parse_value, template_of
from .base import LoadContext, Step

ESCAPES: dict[str, Callable[[str], str] | None] = {
    "none": None,
    "xml": lambda text: xml_escape(text, {'"': "&quot;", "'": "&apos;"}),
}
"""How text from headers and properties is escaped inside a template."""


@dataclass
class Content:
    value: Value
    escape: Callable[[str], str] | None

    async def render(self, exchange: Exchange, services: Services) -> bytes:
        source = self.value.source
        if isinstance(source, TemplateSource):
            text = source.template.render(exchange, self.escape)
            return text.encode("utf-8")
        found = await self.value.get(exchange, services.directory)
        if found is None:
            return b""
        if isinstance(found, bytes | bytearray):
            return bytes(found)
        return str(found).encode("utf-8")


def content_of(spec: Spec, name: str, context: LoadContext) -> Content:
    value = parse_value(spec.node_of(name), f"{spec.what}: '{name}'", context.namespaces)
    escape = ESCAPES[spec.choice("escape", tuple(ESCAPES), "none")]
    return Content(value, escape)


@dataclass
class BodyStep(Step):
    """Replace the body; text is a template, written out as UTF-8."""

    kind = "body"
    content: Content
    content_type: Template | None

    @classmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        if not isinstance(node, yaml.MappingNode):
            return cls(Content(parse_value(node, what, context.namespaces), None), None)
        spec = Spec(node, what)
        spec.only(("content", "content-type", "escape"))
        spec.required("content")
        content_type = template_of(spec, "content-type") if "content-type" in spec else None
        return cls(content_of(spec, "content", context), content_type)

    async def run(self, exchange: Exchange, services: Services) -> Reply | None:
        exchange.body = await self.content.render(exchange, services)
        if self.content_type is not None:
            exchange.headers["Content-Type"] = self.content_type.render(exchange)
        return None


@dataclass
class ReplyStep(Step):
    """Answer the sender now: status, content type, body and headers."""

    kind = "reply"
    status: int
    content: Content | None
    content_type: Template | None
    headers: dict[str, Template]

    @classmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        spec = Spec(node, what)
        spec.only(("status", "content-type", "body", "escape", "headers"))
        status = spec.integer("status", 200, low=100, high=599)
        content = content_of(spec, "body", context) if "body" in spec else None
        if content is None and "escape" in spec:
            raise FlowError(f"{what}: 'escape' applies to 'body'", line=spec.line_of("escape"))
        content_type = template_of(spec, "content-type") if "content-type" in spec else None
        headers: dict[str, Template] = {}
        if (header_spec := spec.mapping("headers")) is not None:
            headers = {name: template_of(header_spec, name) for name in header_spec}
        return cls(status, content, content_type, headers)

    @property
    def ends_flow(self) -> bool:
        return True

    async def run(self, exchange: Exchange, services: Services) -> Reply | None:
        body = (
            exchange.body if self.content is None else await self.content.render(exchange, services)
        )
        content_type = (
            self.content_type.render(exchange)
            if self.content_type is not None
            else exchange.content_type
        )
        headers = {name: t.render(exchange) for name, t in self.headers.items()}
        headers[MESSAGE_ID] = exchange.message_id
        exchange.status = self.status
        exchange.body = body
        return Reply(self.status, body, content_type or None, headers)

"""``log-attachment``: keep the body (or any content) in the message processing log.

SAP's flows keep payloads with a script (``messageLog.addAttachmentAsString``); here it
is a step (scripts have ``message.message_log.add_attachment_as_string``). Nothing of a
message is stored unless a flow asks; what it keeps is served as
``MessageProcessingLogs('<guid>')/Attachments`` and removed with the log entry when its
retention ends. Content beyond ``max-bytes`` is cut, and the name says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from ..exchange import Exchange, Reply
from ..messagelog import MAX_ATTACHMENT_BYTES, keep
from ..services import Services
from ..spec import Spec
from ..values import Template, parse_template, template_of
from .base import LoadContext, Step
from .content import Content, content_of


@dataclass
class LogAttachmentStep(Step):
    kind = "log-attachment"
    name: Template
    content: Content | None
    content_type: Template | None
    max_bytes: int

    @classmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        if isinstance(node, yaml.ScalarNode):
            return cls(
                parse_template(str(node.value), what, node), None, None, MAX_ATTACHMENT_BYTES
            )
        spec = Spec(node, what)
        spec.only(("name", "content", "content-type", "escape", "max-bytes"))
        spec.required("name")
        return cls(
            name=template_of(spec, "name"),
            content=content_of(spec, "content", context) if "content" in spec else None,
            content_type=template_of(spec, "content-type") if "content-type" in spec else None,
            max_bytes=int(spec.number("max-bytes", MAX_ATTACHMENT_BYTES, minimum=1)),
        )

    async def run(self, exchange: Exchange, services: Services) -> Reply | None:
        """Keep the body as it is now (or ``content``) under ``name``."""
        if self.content is None:
            payload = exchange.body
            content_type = exchange.content_type
        else:
            payload = await self.content.render(exchange, services)
            content_type = "text/plain; charset=utf-8"
        if self.content_type is not None:
            content_type = self.content_type.render(exchange) or content_type
        name = self.name.render(exchange)
        exchange.attachments.append(keep(name, content_type, payload, self.max_bytes))
        return None

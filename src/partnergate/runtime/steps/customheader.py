"""``custom-header``: record business keys of a message for the monitor.

SAP's flows call ``messageLog.addCustomHeaderProperty(name, value)`` in a script; here it
is a step (scripts have ``message.message_log.add_custom_header_property``). Each value is
any value a ``set`` step takes (text with ``${...}``, ``xpath``, a parameter); a value
that is absent is not recorded. The monitor and ``filterCustomHeaderProperties`` search
by them; the API serves them as ``MessageProcessingLogs('<guid>')/CustomHeaderProperties``.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from ..errors import FlowError
from ..exchange import Exchange, Reply
from ..services import Services
from ..spec import Spec
from ..values import Value, as_text, parse_value
from .base import LoadContext, Step


@dataclass
class CustomHeaderStep(Step):
    kind = "custom-header"
    properties: list[tuple[str, Value]]

    @classmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        spec = Spec(node, what)
        if not list(spec):
            raise FlowError(f"{what}: name at least one property", line=spec.line)
        properties = []
        for name in spec:
            if len(name) > 200:
                raise FlowError(f"{what}: a name has at most 200 characters", line=spec.line)
            value = parse_value(spec.node_of(name), f"{what}: '{name}'", context.namespaces)
            properties.append((name, value))
        return cls(properties)

    async def run(self, exchange: Exchange, services: Services) -> Reply | None:
        for name, value in self.properties:
            found = await value.get(exchange, services.directory)
            if found is not None:
                exchange.add_custom_property(name, as_text(found))
                exchange.note(f"{name} = {as_text(found)[:80]}")
        return None

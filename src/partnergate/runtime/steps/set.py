"""``set`` and ``remove``: headers and properties from values."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from ..errors import FlowError
from ..exchange import Exchange, Reply
from ..services import Services
from ..spec import Spec, kind_of, line_of, plain
from ..values import Value, as_text, parse_value
from .base import LoadContext, Step

TARGETS = ("header", "property")


def parse_target(text: str, what: str, line: int) -> tuple[str, str]:
    """``header.NAME`` or ``property.NAME``."""
    kind, _, name = text.partition(".")
    if kind not in TARGETS or not name.strip():
        raise FlowError(f"{what}: '{text}' must be header.NAME or property.NAME", line=line)
    return kind, name.strip()


def assign(exchange: Exchange, target: tuple[str, str], value: object) -> None:
    """Put ``value`` into a header (as text) or a property (as it is); ``None`` removes."""
    kind, name = target
    bag = exchange.headers if kind == "header" else exchange.properties
    if value is None:
        bag.pop(name, None)
    elif kind == "header":
        exchange.headers[name] = as_text(value)
    else:
        exchange.properties[name] = value


@dataclass
class SetStep(Step):
    """Set headers and properties, in the order written, each from a value."""

    kind = "set"
    assignments: list[tuple[tuple[str, str], Value]]

    @classmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        spec = Spec(node, what)
        if not list(spec):
            raise FlowError(
                f"{what}: name at least one header.NAME or property.NAME", line=spec.line
            )
        assignments = []
        for key in spec:
            target = parse_target(key, what, spec.line_of(key))
            value = parse_value(spec.node_of(key), f"{what}: '{key}'", context.namespaces)
            assignments.append((target, value))
        return cls(assignments)

    async def run(self, exchange: Exchange, services: Services) -> Reply | None:
        for target, value in self.assignments:
            assign(exchange, target, await value.get(exchange, services.directory))
        return None


@dataclass
class RemoveStep(Step):
    """Remove headers or properties, e.g. before calling a receiver."""

    kind = "remove"
    targets: list[tuple[str, str]]

    @classmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        targets = []
        for item in items:
            text = plain(item)
            if not isinstance(item, yaml.ScalarNode) or not isinstance(text, str):
                raise FlowError(
                    f"{what} takes header.NAME or property.NAME, not {kind_of(item)}",
                    line=line_of(item),
                )
            targets.append(parse_target(text, what, line_of(item)))
        return cls(targets)

    async def run(self, exchange: Exchange, services: Services) -> Reply | None:
        for target in self.targets:
            assign(exchange, target, None)
        return None

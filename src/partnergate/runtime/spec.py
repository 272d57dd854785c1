"""Reading flow YAML with line numbers: every complaint names the line it is about.

PyYAML's composed node graph keeps a mark per node; :class:`Spec` wraps a mapping node
and converts values on demand, raising :class:`FlowError` with the line of the offending
node. Anchors, aliases and merge keys are not supported (a flow reads top to bottom).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from .errors import FlowError

_constructor = SafeConstructor()


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def plain(node: yaml.Node) -> Any:
    """The Python value of a node (str, int, float, bool, None, list, dict)."""
    try:
        return _constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise FlowError(str(exc), line=line_of(node)) from None


def compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise FlowError(f"not valid YAML: {exc.problem or exc}", line=line) from None
    except yaml.YAMLError as exc:
        raise FlowError(f"not valid YAML: {exc}") from None


def kind_of(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a single value"


class Spec:
    """A YAML mapping whose keys are option names."""

    def __init__(self, node: yaml.Node, what: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            raise FlowError(f"{what} must be a mapping, not {kind_of(node)}", line=line_of(node))
        self.node = node
        self.what = what
        self.line = line_of(node)
        self._items: dict[str, yaml.Node] = {}
        self._key_nodes: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                raise FlowError(f"{what}: keys must be plain names", line=line_of(key))
            name = str(key.value)
            if name in self._items:
                raise FlowError(f"{what}: '{name}' is given twice", line=line_of(key))
            self._items[name] = value
            self._key_nodes[name] = key

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def node_of(self, name: str) -> yaml.Node:
        return self._items[name]

    def line_of(self, name: str) -> int:
        return line_of(self._key_nodes[name])

    def only(self, allowed: Iterable[str]) -> None:
        """Refuse unknown options, suggesting the nearest known one."""
        allowed = list(allowed)
        for name in self._items:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                known = ", ".join(allowed)
                raise FlowError(
                    f"{self.what}: unknown option '{name}'{hint}; known: {known}",
                    line=self.line_of(name),
                )

    def required(self, name: str) -> yaml.Node:
        if name not in self._items:
            raise FlowError(f"{self.what}: '{name}' is required", line=self.line)
        return self._items[name]

    def text(self, name: str, default: str | None = None) -> str:
        if name not in self._items:
            if default is None:
                raise FlowError(f"{self.what}: '{name}' is required", line=self.line)
            return default
        return self.text_of(self._items[name], name)

    def text_of(self, node: yaml.Node, name: str) -> str:
        value = plain(node) if isinstance(node, yaml.ScalarNode) else None
        if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
            raise FlowError(
                f"{self.what}: '{name}' must be text, not {kind_of(node)}", line=line_of(node)
            )
        return str(value)

    def number(self, name: str, default: float, *, minimum: float = 0) -> float:
        if name not in self._items:
            return default
        node = self._items[name]
        value = plain(node)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
            raise FlowError(
                f"{self.what}: '{name}' must be a number above {minimum:g}", line=line_of(node)
            )
        return float(value)

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        if name not in self._items:
            return default
        node = self._items[name]
        value = plain(node)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise FlowError(
                f"{self.what}: '{name}' must be a whole number from {low} to {high}",
                line=line_of(node),
            )
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        if name not in self._items:
            return default
        value = self.text(name)
        if value not in choices:
            raise FlowError(
                f"{self.what}: '{name}' must be one of {', '.join(choices)}, not '{value}'",
                line=line_of(self._items[name]),
            )
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        if name not in self._items:
            return default
        value = plain(self._items[name])
        if not isinstance(value, bool):
            raise FlowError(
                f"{self.what}: '{name}' must be true or false", line=line_of(self._items[name])
            )
        return value

    def mapping(self, name: str) -> Spec | None:
        if name not in self._items:
            return None
        return Spec(self._items[name], f"{self.what}: '{name}'")

    def texts(self, name: str) -> dict[str, str]:
        """A mapping of names to text, e.g. namespaces or request headers."""
        spec = self.mapping(name)
        if spec is None:
            return {}
        return {key: spec.text(key) for key in spec}

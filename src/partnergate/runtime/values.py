"""Where a step's values come from: templates and value sources.

A value in a flow is either text, read as a template (``${header.x}``, ``${property.y}``,
``${body}``), or a mapping with one source and, optionally, ``default`` or ``optional``:

    {xpath: /Message/Receiver}
    {string-parameter: {pid: "${property.RECEIVER}", id: ADDRESS}}

Each source knows what status a miss means: a message without the node the flow reads is
the sender's fault (400), an absent Partner Directory entry is 404, a user who belongs to
no partner is 403.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jsonpath
import yaml
from lxml import etree

from .directory import PartnerDirectory
from .errors import FlowError, StepError, forbidden, missing, refused, unreadable
from .exchange import AUTHENTICATED_USER, Exchange
from .spec import Spec, kind_of, line_of, plain

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_NAMED = re.compile(r"(header|property)\.(.+)")


def as_text(value: Any) -> str:
    """How any header, property or lookup result reads inside text."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Template:
    """Text with ``${header.NAME}``, ``${property.NAME}`` and ``${body}`` placeholders."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._parts: list[str | tuple[str, str]] = []
        position = 0
        for match in _PLACEHOLDER.finditer(text):
            self._parts.append(text[position : match.start()])
            self._parts.append(self._placeholder(match.group(1).strip()))
            position = match.end()
        self._parts.append(text[position:])
        self._parts = [p for p in self._parts if p != ""]
        self._literal: str | None = None
        """The whole text when it has no placeholders: most ids, names and addresses."""
        if not self._parts:
            self._literal = ""
        elif len(self._parts) == 1 and isinstance(self._parts[0], str):
            self._literal = self._parts[0]
        self._property: str | None = None
        """The property's name when the text is that one property: most pids and addresses."""
        if len(self._parts) == 1 and isinstance(self._parts[0], tuple):
            kind, name = self._parts[0]
            self._property = name if kind == "property" else None

    @staticmethod
    def _placeholder(inner: str) -> tuple[str, str]:
        if inner in ("body", "in.body"):
            return ("body", "")
        named = _NAMED.fullmatch(inner)
        if named is None:
            raise ValueError(
                f"unknown placeholder '${{{inner}}}': use ${{header.NAME}}, "
                "${property.NAME} or ${body}"
            )
        return (named.group(1), named.group(2).strip())

    @property
    def is_literal(self) -> bool:
        return self._literal is not None

    def render(self, exchange: Exchange, escape: Callable[[str], str] | None = None) -> str:
        if self._literal is not None:
            return self._literal
        if self._property is not None and escape is None:
            return as_text(exchange.properties.get(self._property))
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            kind, name = part
            if kind == "header":
                value = as_text(exchange.headers.get(name))
            elif kind == "property":
                value = as_text(exchange.properties.get(name))
            else:
                value = exchange.text()
            out.append(escape(value) if escape else value)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def template_of(spec: Spec, name: str, default: str | None = None) -> Template:
    text = spec.text(name, default)
    try:
        return Template(text)
    except ValueError as exc:
        line = spec.line_of(name) if name in spec else spec.line
        raise FlowError(f"{spec.what}: '{name}': {exc}", line=line) from None


class Source(Protocol):
    """Finds a value for one message; ``None`` when there is none."""

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any: ...

    def miss(self, exchange: Exchange) -> StepError:
        """The error for a message where nothing was found."""
        ...


@dataclass
class TemplateSource:
    template: Template

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        return self.template.render(exchange)

    def miss(self, exchange: Exchange) -> StepError:  # pragma: no cover - never misses
        return unreadable("the template gave nothing")


@dataclass
class LiteralSource:
    """Text taken as it is, ``${`` included."""

    text: str

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        return self.text

    def miss(self, exchange: Exchange) -> StepError:  # pragma: no cover - never misses
        return unreadable("the literal gave nothing")


@dataclass
class HeaderSource:
    name: str

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        return exchange.headers.get(self.name)

    def miss(self, exchange: Exchange) -> StepError:
        return unreadable(f"the message has no header {self.name}")


@dataclass
class PropertySource:
    name: str

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        return exchange.properties.get(self.name)

    def miss(self, exchange: Exchange) -> StepError:
        return unreadable(f"property {self.name} is not set")


def _xpath_text(result: Any) -> str | None:
    if isinstance(result, list):
        if not result:
            return None
        first = result[0]
        if isinstance(first, etree._Element):
            if len(first) == 0:  # no child elements: the text is the string value
                return first.text or ""
            return "".join(first.itertext())
        return str(first)
    return as_text(result)


@dataclass
class XPathSource:
    """XPath 1.0 over the body (lxml); a node-set gives the string value of its first node."""

    expression: str
    compiled: etree.XPath

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        try:
            root = exchange.xml()
        except ValueError as exc:
            raise refused(exc) from None
        try:
            return _xpath_text(self.compiled(root))
        except etree.XPathEvalError as exc:
            raise unreadable(f"XPath {self.expression} cannot be evaluated ({exc})") from None

    def miss(self, exchange: Exchange) -> StepError:
        return unreadable(f"the message has nothing at {self.expression}")


@dataclass
class JsonPathSource:
    """JSONPath (RFC 9535) over the body; the first match, objects and arrays as JSON."""

    expression: str
    compiled: Any

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        try:
            data = exchange.json()
        except ValueError as exc:
            raise refused(exc) from None
        matches = self.compiled.findall(data)
        if not matches or matches[0] is None:
            return None
        first = matches[0]
        if isinstance(first, dict | list):
            return json.dumps(first, separators=(",", ":"), ensure_ascii=False)
        return as_text(first)

    def miss(self, exchange: Exchange) -> StepError:
        return unreadable(f"the message has nothing at {self.expression}")


@dataclass
class StringParameterSource:
    pid: Template
    id: Template

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        pid, id = self.pid.render(exchange), self.id.render(exchange)
        if not pid or not id:
            return None
        found = await directory.get_parameter(id, pid, str)
        exchange.note(f"string parameter {pid}/{id} {'found' if found is not None else 'missing'}")
        return found

    def miss(self, exchange: Exchange) -> StepError:
        return _missing_parameter("string", self.pid, self.id, exchange)


@dataclass
class BinaryParameterSource:
    pid: Template
    id: Template

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        pid, id = self.pid.render(exchange), self.id.render(exchange)
        if not pid or not id:
            return None
        found = await directory.get_parameter(id, pid, bytes)
        exchange.note(f"binary parameter {pid}/{id} {'found' if found is not None else 'missing'}")
        return found

    def miss(self, exchange: Exchange) -> StepError:
        return _missing_parameter("binary", self.pid, self.id, exchange)


def _missing_parameter(kind: str, pid: Template, id: Template, exchange: Exchange) -> StepError:
    pid_text, id_text = pid.render(exchange), id.render(exchange)
    if not pid_text:
        return unreadable(f"no partner to read {kind} parameter {id_text or '?'} of")
    return missing(f"{kind} parameter {pid_text}/{id_text} not found in the Partner Directory")


@dataclass
class PartnerOfUserSource:
    user: Template

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        user = self.user.render(exchange)
        return await directory.get_partner_id_of_authorized_user(user) if user else None

    def miss(self, exchange: Exchange) -> StepError:
        user = self.user.render(exchange)
        if not user:
            return forbidden("the message has no authenticated user")
        return forbidden(f"user {user} is not an authorized user of any partner")


@dataclass
class PartnerIdSource:
    agency: Template
    scheme: Template
    id: Template

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        agency, scheme, id = (t.render(exchange) for t in (self.agency, self.scheme, self.id))
        if not (agency and scheme and id):
            return None
        return await directory.get_partner_id(agency, scheme, id)

    def miss(self, exchange: Exchange) -> StepError:
        agency, scheme, id = (t.render(exchange) for t in (self.agency, self.scheme, self.id))
        return missing(f"no partner has the alternative id {id!r} (agency {agency}, {scheme})")


@dataclass
class AlternativePartnerIdSource:
    agency: Template
    scheme: Template
    pid: Template

    async def find(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        agency, scheme, pid = (t.render(exchange) for t in (self.agency, self.scheme, self.pid))
        if not (agency and scheme and pid):
            return None
        return await directory.get_alternative_partner_id(agency, scheme, pid)

    def miss(self, exchange: Exchange) -> StepError:
        agency, scheme, pid = (t.render(exchange) for t in (self.agency, self.scheme, self.pid))
        return missing(f"partner {pid} has no alternative id for agency {agency}, {scheme}")


@dataclass
class Value:
    """A source with what to do when it finds nothing."""

    source: Source
    default: Template | None = None
    optional: bool = False

    async def get(self, exchange: Exchange, directory: PartnerDirectory) -> Any:
        """The value, or ``None`` when it is optional and absent."""
        found = await self.source.find(exchange, directory)
        if found is not None:
            return found
        if self.default is not None:
            return self.default.render(exchange)
        if self.optional:
            return None
        raise self.source.miss(exchange)

    async def text(self, exchange: Exchange, directory: PartnerDirectory) -> str | None:
        found = await self.get(exchange, directory)
        return None if found is None else as_text(found)


SOURCES = (
    "xpath",
    "jsonpath",
    "header",
    "property",
    "literal",
    "template",
    "string-parameter",
    "binary-parameter",
    "partner-of-user",
    "partner-id",
    "alternative-partner-id",
)
MODIFIERS = ("default", "optional")


def parse_value(node: yaml.Node, what: str, namespaces: Mapping[str, str]) -> Value:
    """A value from its YAML: text (a template) or ``{<source>: ..., default/optional}``."""
    if isinstance(node, yaml.ScalarNode):
        text = plain(node)
        if text is None or isinstance(text, bool | list | dict):
            raise FlowError(f"{what} must be text or a source mapping", line=line_of(node))
        return Value(TemplateSource(parse_template(str(text), what, node)))
    if not isinstance(node, yaml.MappingNode):
        raise FlowError(
            f"{what} must be text or a source mapping, not {kind_of(node)}", line=line_of(node)
        )
    spec = Spec(node, what)
    spec.only((*SOURCES, *MODIFIERS))
    chosen = [name for name in spec if name in SOURCES]
    if len(chosen) != 1:
        raise FlowError(f"{what} needs exactly one source of: {', '.join(SOURCES)}", line=spec.line)
    default = template_of(spec, "default") if "default" in spec else None
    optional = spec.flag("optional")
    if default is not None and optional:
        raise FlowError(f"{what}: give 'default' or 'optional', not both", line=spec.line)
    return Value(_source(spec, chosen[0], namespaces), default, optional)


def parse_template(text: str, what: str, node: yaml.Node) -> Template:
    try:
        return Template(text)
    except ValueError as exc:
        raise FlowError(f"{what}: {exc}", line=line_of(node)) from None


def _source(spec: Spec, name: str, namespaces: Mapping[str, str]) -> Source:
    node = spec.node_of(name)
    if name == "xpath":
        expression = spec.text(name)
        try:
            compiled = etree.XPath(expression, namespaces=dict(namespaces))
        except etree.XPathSyntaxError as exc:
            raise FlowError(
                f"{spec.what}: XPath {expression!r}: {exc}", line=line_of(node)
            ) from None
        return XPathSource(expression, compiled)
    if name == "jsonpath":
        expression = spec.text(name)
        try:
            compiled_json = jsonpath.compile(expression)
        except jsonpath.JSONPathError as exc:
            raise FlowError(
                f"{spec.what}: JSONPath {expression!r}: {exc}", line=line_of(node)
            ) from None
        return JsonPathSource(expression, compiled_json)
    if name == "header":
        return HeaderSource(spec.text(name))
    if name == "property":
        return PropertySource(spec.text(name))
    if name == "literal":
        return LiteralSource(spec.text(name))
    if name == "template":
        return TemplateSource(template_of(spec, name))
    if name == "partner-of-user":
        if isinstance(node, yaml.ScalarNode) and plain(node) in (None, ""):
            return PartnerOfUserSource(Template(f"${{header.{AUTHENTICATED_USER}}}"))
        return PartnerOfUserSource(template_of(spec, name))
    args = Spec(node, f"{spec.what}: '{name}'")
    if name in ("string-parameter", "binary-parameter"):
        args.only(("pid", "id"))
        pid, id = template_of(args, "pid"), template_of(args, "id")
        if name == "string-parameter":
            return StringParameterSource(pid, id)
        return BinaryParameterSource(pid, id)
    if name == "partner-id":
        args.only(("agency", "scheme", "id"))
        return PartnerIdSource(
            template_of(args, "agency"), template_of(args, "scheme"), template_of(args, "id")
        )
    args.only(("agency", "scheme", "pid"))
    return AlternativePartnerIdSource(
        template_of(args, "agency"), template_of(args, "scheme"), template_of(args, "pid")
    )

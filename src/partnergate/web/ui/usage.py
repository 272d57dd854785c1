"""Where used: which flows, stylesheets and messages read a partner or a parameter.

Flows are read from their deployed YAML files, node by node, so each reference has a line:
literal ``pd:<Pid>:<Id>:<Kind>`` URIs anywhere, and ``string-parameter`` /
``binary-parameter`` sources whose ``pid`` or ``id`` is written out (a ``${...}`` key is
known only when a message runs). Stylesheets stored as binary parameters are searched for
``pd:`` URIs, at most :data:`MAX_STYLESHEETS` of them. The message processing log records
each message's sender and receiver partner, not the single parameters a flow looked up,
so the messages shown are those of the partner.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from starlette.responses import Response

from ...model.errors import DirectoryError
from ...odata.filter import Call, Literal, OrderBy, PropertyRef, ValueType
from ...runtime.errors import FlowError
from ...runtime.flows import Flow
from ...runtime.pduri import PD_URI
from ...runtime.spec import compose, line_of
from ...store.directory import ListRequest
from .directory import load_partner
from .highlight import decode
from .kinds import BINARY
from .monitor import recent_messages
from .pages import Page, guarded

MAX_STYLESHEETS = 1000
BATCH = 50
SOURCES = ("string-parameter", "binary-parameter")


@dataclass(frozen=True)
class FlowUse:
    flow: str
    endpoint: str
    file: str
    line: int
    what: str
    pid: str
    id: str
    params: tuple[tuple[str, str], ...] = ()
    """For an ``xslt`` step: its ``params`` as written (templates stay templates)."""


@dataclass(frozen=True)
class StylesheetUse:
    pid: str
    id: str
    uris: tuple[str, ...]


@dataclass
class Usage:
    flows: list[FlowUse] = field(default_factory=list)
    stylesheets: list[StylesheetUse] = field(default_factory=list)
    stylesheets_searched: int = 0
    stylesheets_capped: bool = False


def _literal(node: yaml.Node | None) -> str | None:
    if isinstance(node, yaml.ScalarNode) and "${" not in str(node.value):
        return str(node.value)
    return None


def _mapping(node: yaml.Node) -> dict[str, yaml.Node]:
    return {str(k.value): v for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _params(node: yaml.Node | None) -> tuple[tuple[str, str], ...]:
    if not isinstance(node, yaml.MappingNode):
        return ()
    return tuple(
        (name, str(v.value)) for name, v in _mapping(node).items() if isinstance(v, yaml.ScalarNode)
    )


def _walk(
    node: yaml.Node, flow: Flow, out: list[FlowUse], params: tuple[tuple[str, str], ...] = ()
) -> None:
    file = flow.file.name if flow.file else ""
    if isinstance(node, yaml.ScalarNode):
        for m in PD_URI.finditer(str(node.value)):
            out.append(
                FlowUse(
                    flow.name,
                    flow.endpoint,
                    file,
                    line_of(node),
                    f"pd:…:{m.group(3)}",
                    m.group(1),
                    m.group(2),
                    params,
                )
            )
        return
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _walk(child, flow, out)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    items = _mapping(node)
    for name in SOURCES:
        args = items.get(name)
        if isinstance(args, yaml.MappingNode):
            keys = _mapping(args)
            pid, pid_node = _literal(keys.get("pid")), keys.get("pid")
            ident = _literal(keys.get("id"))
            if pid is not None or ident is not None:
                out.append(
                    FlowUse(
                        flow.name,
                        flow.endpoint,
                        file,
                        line_of(args),
                        name,
                        pid
                        if pid is not None
                        else (str(pid_node.value) if isinstance(pid_node, yaml.ScalarNode) else ""),
                        ident if ident is not None else str(getattr(keys.get("id"), "value", "")),
                    )
                )
    step_params = _params(items.get("params")) if "stylesheet" in items else ()
    for name, child in items.items():
        if name in SOURCES:
            continue
        _walk(child, flow, out, step_params if name == "stylesheet" else ())


def flow_uses(flows: list[Flow]) -> list[FlowUse]:
    """Every literal reference to a partner or parameter in the deployed flows' files."""
    found: list[FlowUse] = []
    for flow in flows:
        if flow.file is None:
            continue
        try:
            node = compose(Path(flow.file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, FlowError):
            continue
        if node is not None:
            _walk(node, flow, found)
    return found


def matches(use: FlowUse, pid: str | None, ident: str | None) -> bool:
    if pid is not None and use.pid != pid:
        return False
    return ident is None or use.id == ident


def _stylesheet_refs(
    rows: list[dict[str, object]], pid: str | None, ident: str | None
) -> list[StylesheetUse]:
    found: list[StylesheetUse] = []
    for row in rows:
        value = row.get("Value")
        if not isinstance(value, bytes):
            continue
        text = decode(value, str(row["ContentType"]))
        uris = sorted(
            {
                m.group(0)
                for m in PD_URI.finditer(text)
                if (pid is None or m.group(1) == pid) and (ident is None or m.group(2) == ident)
            }
        )
        if uris:
            found.append(StylesheetUse(str(row["Pid"]), str(row["Id"]), tuple(uris)))
    return found


async def where_used(page: Page, pid: str | None, ident: str | None) -> Usage:
    usage = Usage()
    flows = list(page.services.runtime.deployment.flows)
    uses = await asyncio.to_thread(flow_uses, flows)
    usage.flows = [u for u in uses if matches(u, pid, ident)]
    xsl = Call(
        "startswith",
        (PropertyRef("ContentType", ValueType.STRING), Literal("xsl", ValueType.STRING)),
    )
    skip = 0
    while skip < MAX_STYLESHEETS:
        request = ListRequest(
            filter=xsl,
            orderby=(OrderBy(PropertyRef("Pid", ValueType.STRING)),),
            top=min(BATCH, MAX_STYLESHEETS - skip),
            skip=skip,
        )
        rows = (await page.services.store.list(BINARY.entity_set, request)).rows
        usage.stylesheets += await asyncio.to_thread(_stylesheet_refs, rows, pid, ident)
        usage.stylesheets_searched += len(rows)
        skip += len(rows)
        if len(rows) < request.top:  # type: ignore[operator]
            break
    else:
        usage.stylesheets_capped = True
    return usage


@guarded
async def index(page: Page) -> Response:
    pid = page.query.get("pid", "").strip()[:200] or None
    ident = page.query.get("id", "").strip()[:200] or None
    usage: Usage | None = None
    messages: list[dict[str, object]] = []
    problem = ""
    if pid or ident:
        try:
            usage = await where_used(page, pid, ident)
            if pid:
                async with page.services.store.read() as directory:
                    messages = await recent_messages(directory, pid)
        except DirectoryError as exc:
            problem = exc.message
    exists = pid is not None and await load_partner(page.services.store, pid) is not None
    return page.render(
        "usage/index.html",
        section="partners",
        pid=pid or "",
        ident=ident or "",
        exists=exists,
        usage=usage,
        messages=messages,
        problem=problem,
        max_stylesheets=MAX_STYLESHEETS,
    )

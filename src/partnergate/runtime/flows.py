"""Flows as YAML files: an endpoint, the role a sender needs, and steps in order.

A flow file reads top to bottom (the format is described in docs/flows.md)::

    flow: Receiver 2
    endpoint: /cxf/receiver_2
    role: receiver_2.send
    steps:
      - name: read the sender
        set:
          property.SENDER: {xpath: /Message/Sender}
      - reply:
          content-type: application/xml
          body: <Content>Receiver_2 greets ${property.SENDER}</Content>

Loading a folder keeps every flow that is right and reports every one that is not, with
file, line and step, so one broken file never stops the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import FlowError
from .spec import Spec, compose, line_of, plain
from .steps import STEP_KINDS, LoadContext, Step

DEFAULT_ROLE = "ESBMessaging.send"
FLOW_SUFFIXES = (".yaml", ".yml")
ENDPOINT = re.compile(r"/(http|cxf)(/[A-Za-z0-9._~\-]+)+")
FLOW_KEYS = (
    "flow",
    "description",
    "endpoint",
    "method",
    "role",
    "namespaces",
    "time-limit",
    "steps",
)


@dataclass
class Flow:
    name: str
    endpoint: str
    steps: list[Step]
    role: str = DEFAULT_ROLE
    method: str = "POST"
    description: str = ""
    namespaces: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    time_limit: float | None = None
    """Seconds each xslt or script step may run; None: the server's setting."""

    @property
    def adapter(self) -> str:
        """``http`` or ``cxf``: the sender adapter the endpoint stands for."""
        return self.endpoint.split("/")[1]


@dataclass
class FlowSet:
    """The flows of a folder by endpoint, and the files that were refused."""

    flows: dict[str, Flow] = field(default_factory=dict)
    errors: list[FlowError] = field(default_factory=list)

    def find(self, path: str) -> Flow | None:
        """The flow serving ``path`` (``/http/...`` or ``/cxf/...``), if any."""
        return self.flows.get(path.rstrip("/") or path)

    def __iter__(self) -> Iterator[Flow]:
        return iter(self.flows.values())

    def __len__(self) -> int:
        return len(self.flows)


def load_flows(directory: str | Path) -> FlowSet:
    """Every ``*.yaml``/``*.yml`` flow in ``directory`` (not its subfolders), by name."""
    result = FlowSet()
    folder = Path(directory)
    files = sorted(p for p in folder.iterdir() if p.suffix in FLOW_SUFFIXES and p.is_file())
    for path in files:
        try:
            flow = load_flow(path)
        except FlowError as exc:
            result.errors.append(exc)
            continue
        other = result.flows.get(flow.endpoint)
        if other is not None:
            result.errors.append(
                FlowError(
                    f"endpoint {flow.endpoint} is already served by {_name(other.file)}",
                    file=_name(path),
                    line=_endpoint_line(path),
                )
            )
            continue
        result.flows[flow.endpoint] = flow
    return result


def load_flow(path: str | Path) -> Flow:
    """One flow file; raises :class:`FlowError` naming file, line and step."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(f"cannot be read ({exc})", file=_name(path)) from None
    try:
        return parse_flow(text, path)
    except FlowError as exc:
        raise exc.located(file=_name(path)) from None


def parse_flow(text: str, path: Path) -> Flow:
    node = compose(text)
    if node is None:
        raise FlowError("the file is empty")
    spec = Spec(node, "the flow")
    spec.only(FLOW_KEYS)
    endpoint = spec.text("endpoint")
    if not ENDPOINT.fullmatch(endpoint):
        raise FlowError(
            f"endpoint '{endpoint}' must be /http/<path> or /cxf/<path> "
            "(letters, digits, . _ ~ - and /)",
            line=spec.line_of("endpoint"),
        )
    method = spec.text("method", "POST")
    if method != "POST":
        raise FlowError("method must be POST", line=spec.line_of("method"))
    namespaces = spec.texts("namespaces")
    name = spec.text("flow", path.stem)
    role = spec.text("role", DEFAULT_ROLE)
    description = spec.text("description", "")
    time_limit = spec.number("time-limit", 0.0) if "time-limit" in spec else None
    context = LoadContext(path.resolve(), namespaces, time_limit)
    steps_node = spec.required("steps")
    if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
        raise FlowError("steps must be a list of at least one step", line=line_of(steps_node))
    steps: list[Step] = []
    for number, step_node in enumerate(steps_node.value, start=1):
        if steps and steps[-1].ends_flow:
            raise FlowError(
                f"never runs: {steps[-1].label} replies and ends the flow",
                line=line_of(step_node),
                step=f"step {number}",
            )
        steps.append(_step(step_node, number, context))
    return Flow(
        name=name,
        endpoint=endpoint,
        steps=steps,
        role=role,
        method=method,
        description=description,
        namespaces=namespaces,
        file=path,
        time_limit=time_limit,
    )


def _step(node: yaml.Node, number: int, context: LoadContext) -> Step:
    label = f"step {number}"
    try:
        spec = Spec(node, label)
        name = spec.text("name") if "name" in spec else None
        if name:
            label = f"step {number} '{name}'"
        kinds = [key for key in spec if key != "name"]
        if len(kinds) != 1 or kinds[0] not in STEP_KINDS:
            unknown = [k for k in kinds if k not in STEP_KINDS]
            said = f"unknown step kind '{unknown[0]}'; " if unknown else ""
            raise FlowError(
                f"{said}a step is 'name' (optional) and one of: {', '.join(STEP_KINDS)}",
                line=spec.line_of(unknown[0]) if unknown else spec.line,
            )
        kind = kinds[0]
        step = STEP_KINDS[kind].parse(spec.node_of(kind), kind, context)
    except FlowError as exc:
        raise exc.located(step=label) from None
    step.label = label if name else f"{label} ({kind})"
    step.line = line_of(node)
    return step


def _name(path: Path | None) -> str:
    return str(path) if path is not None else "<flow>"


def _endpoint_line(path: Path) -> int | None:
    try:
        node = compose(path.read_text(encoding="utf-8"))
    except (OSError, FlowError):
        return None
    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            if plain(key) == "endpoint":
                return line_of(key)
    return None

"""SAP's Message Processing Logs API beyond plain entity sets, sans-I/O.

Lives here: the sub-resources below ``MessageProcessingLogs('<guid>')`` (SAP's
``AdapterAttributes``, ``CustomHeaderProperties``, ``ErrorInformation``, ``Runs``) and
below ``MessageProcessingLogRuns('<id>')`` (``RunSteps``); ``$expand`` of them; the
``IntegrationArtifact`` complex value and the ``__deferred`` links SAP writes for every
navigation property; and SAP's ``filterCustomHeaderProperties`` query option. Must not
know: the store, HTTP frameworks (``web/mpl_api.py`` reads and answers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lxml import etree

from ..model.entities import (
    MESSAGE_PROCESSING_LOG,
    MPL_NAVIGATIONS,
    MPL_RUN,
    NAMESPACE,
    EntityType,
    Navigation,
)
from .errors import BadRequest
from .metadata import INTEGRATION_ARTIFACT
from .values import entity_path

NAVIGATIONS: dict[tuple[str, str], Navigation] = {
    (n.source.name, n.name): n for n in MPL_NAVIGATIONS
}
EXPANDABLE = ("AdapterAttributes", "CustomHeaderProperties", "ErrorInformation", "Runs")
"""What ``$expand`` on ``MessageProcessingLogs`` may name (SAP lists the first two)."""

ATOM_NS = "http://www.w3.org/2005/Atom"
M_NS = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
D_NS = "http://schemas.microsoft.com/ado/2007/08/dataservices"
RELATED = "http://schemas.microsoft.com/ado/2007/08/dataservices/related/"


def resource_below(entity_type: EntityType, rest: list[str]) -> str | None:
    """The kind of resource ``rest`` addresses below one entity, if it is one of the
    message processing log's navigation properties; None otherwise."""
    if len(rest) == 1 and (entity_type.name, rest[0]) in NAVIGATIONS:
        if rest[0] == "Attachments":
            return None  # the attachments have their own handling
        return "navigation:" + rest[0]
    if entity_type is MESSAGE_PROCESSING_LOG and rest == ["ErrorInformation", "$value"]:
        return "error_information"
    return None


def navigation_of(entity_type: EntityType, kind: str) -> Navigation:
    return NAVIGATIONS[(entity_type.name, kind.removeprefix("navigation:"))]


def parse_expand(value: str | None, entity_type: EntityType) -> list[str]:
    """``$expand`` of the message processing log: names of its navigation properties."""
    if value is None:
        return []
    names = [v.strip() for v in value.split(",") if v.strip()]
    allowed = EXPANDABLE if entity_type is MESSAGE_PROCESSING_LOG else ("RunSteps",)
    for name in names:
        if name not in allowed:
            raise BadRequest(
                f"$expand: {name[:100]!r} cannot be expanded on {entity_type.name}; "
                f"use {', '.join(allowed)}"
            )
    return names


@dataclass(frozen=True)
class HeaderPropertyFilter:
    name: str
    value: str | None


_CLAUSE = re.compile(
    r"\s*Name\s+eq\s+'((?:[^']|'')*)'(?:\s+and\s+Value\s+eq\s+'((?:[^']|'')*)')?\s*",
)


def parse_header_property_filter(text: str | None) -> list[HeaderPropertyFilter]:
    """SAP's ``filterCustomHeaderProperties``: ``Name eq 'n' [and Value eq 'v']``, several
    such joined by ``and`` meaning all of them; anything else is a 400, never ignored."""
    if text is None:
        return []
    found = []
    rest = text
    while True:
        match = _CLAUSE.match(rest)
        if match is None:
            raise BadRequest(
                "filterCustomHeaderProperties must read Name eq '<name>' and Value eq "
                "'<value>' (the Value part optional; several joined by 'and')"
            )
        name = match.group(1).replace("''", "'")
        value = match.group(2).replace("''", "'") if match.group(2) is not None else None
        found.append(HeaderPropertyFilter(name, value))
        rest = rest[match.end() :]
        if not rest:
            return found
        joiner = re.match(r"and\s+", rest)
        if joiner is None:
            raise BadRequest("filterCustomHeaderProperties: join conditions with 'and'")
        rest = rest[joiner.end() :]


ARTIFACT_TYPE = "INTEGRATION_FLOW"
"""``IntegrationArtifact/Type`` of every entry: a flow is the only artifact that logs."""


def integration_artifact(flow: str | None) -> dict[str, object]:
    return {
        "__metadata": {"type": f"{NAMESPACE}.{INTEGRATION_ARTIFACT}"},
        "Id": flow,
        "Name": flow,
        "Type": ARTIFACT_TYPE,
        "PackageId": None,
        "PackageName": None,
    }


Expanded = dict[str, tuple[EntityType, list[dict[str, object]] | dict[str, object] | None]]
"""Per navigation name: the target type and the related entities (one for ``0..1``)."""


def augment_json(
    entity_type: EntityType,
    entry: dict[str, object],
    values: dict[str, object],
    base_url: str,
    expanded: Expanded,
    select: Sequence[str] | None,
    serialize: Callable[[EntityType, dict[str, object]], dict[str, object]],
) -> dict[str, object]:
    """An entry as JSON verbose writes it, with SAP's complex value, ``__deferred`` links
    for every navigation property and the expanded ones inline."""
    path = entity_path(entity_type, values)
    if entity_type is MESSAGE_PROCESSING_LOG and (not select or INTEGRATION_ARTIFACT in select):
        entry[INTEGRATION_ARTIFACT] = integration_artifact(
            values.get("IntegrationFlowName")  # type: ignore[arg-type]
        )
    for (source, name), nav in NAVIGATIONS.items():
        if source != entity_type.name:
            continue
        if name in expanded:
            target, related = expanded[name]
            if isinstance(related, list):
                entry[name] = {"results": [serialize(target, r) for r in related]}
            else:
                entry[name] = serialize(target, related) if related is not None else None
        elif not select:
            entry[name] = {"__deferred": {"uri": f"{base_url}{path}/{nav.name}"}}
    return entry


def augment_atom(
    entity_type: EntityType,
    document: bytes,
    rows: list[dict[str, object]],
    expanded: list[Expanded],
    select: Sequence[str] | None,
    render_feed: Callable[[EntityType, list[dict[str, object]]], bytes],
    render_entry: Callable[[EntityType, dict[str, object]], bytes],
) -> bytes:
    """Atom entries (a feed or one entry) with the same additions as :func:`augment_json`:
    ``<link rel=".../related/<name>">`` for each navigation property, with ``<m:inline>``
    when expanded, and the ``IntegrationArtifact`` complex value."""
    root = etree.fromstring(document)
    entries = [root] if root.tag == f"{{{ATOM_NS}}}entry" else root.findall(f"{{{ATOM_NS}}}entry")
    for element, values, expand in zip(entries, rows, expanded, strict=True):
        category = element.find(f"{{{ATOM_NS}}}category")
        at = list(element).index(category) if category is not None else len(element)
        path = entity_path(entity_type, values)
        for (source, name), nav in NAVIGATIONS.items():
            if source != entity_type.name:
                continue
            link = etree.Element(f"{{{ATOM_NS}}}link")
            link.set("href", f"{path}/{name}")
            link.set("rel", RELATED + name)
            link.set("title", name)
            kind = "feed" if nav.many else "entry"
            link.set("type", f"application/atom+xml;type={kind}")
            if name in expand:
                target, related = expand[name]
                inline = etree.SubElement(link, f"{{{M_NS}}}inline")
                if isinstance(related, list):
                    inline.append(etree.fromstring(render_feed(target, related)))
                elif related is not None:
                    inline.append(etree.fromstring(render_entry(target, related)))
            element.insert(at, link)
            at += 1
        if entity_type is MESSAGE_PROCESSING_LOG and (not select or INTEGRATION_ARTIFACT in select):
            props = element.find(f"{{{ATOM_NS}}}content/{{{M_NS}}}properties")
            if props is not None:
                artifact = etree.SubElement(props, f"{{{D_NS}}}{INTEGRATION_ARTIFACT}")
                artifact.set(f"{{{M_NS}}}type", f"{NAMESPACE}.{INTEGRATION_ARTIFACT}")
                for field, value in integration_artifact(
                    values.get("IntegrationFlowName")  # type: ignore[arg-type]
                ).items():
                    if field == "__metadata":
                        continue
                    child = etree.SubElement(artifact, f"{{{D_NS}}}{field}")
                    if value is None:
                        child.set(f"{{{M_NS}}}null", "true")
                    else:
                        child.text = str(value)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def strip_select(select: str | None) -> tuple[str | None, bool]:
    """``$select`` without ``IntegrationArtifact`` (not a plain property here), and
    whether it was named."""
    if select is None:
        return None, False
    names = [s.strip() for s in select.split(",")]
    named = INTEGRATION_ARTIFACT in names
    left = [n for n in names if n != INTEGRATION_ARTIFACT]
    if named and not left:
        left = ["MessageGuid"]
    return ",".join(left), named


def run_id(message_guid: str) -> str:
    """A message's run: one per message here, named by the message."""
    return message_guid


def dump(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


__all__ = ["EXPANDABLE", "MPL_RUN", "HeaderPropertyFilter", "parse_header_property_filter"]

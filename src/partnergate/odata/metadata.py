"""``$metadata`` (EDMX/CSDL) and the service document, derived from the entity model.

Lives here: the EDMX text of ``com.sap.hci.api`` for the types we serve, and the list of
entity sets at the service root. Must not know: HTTP frameworks, the store.

Sources: [MS-CSDL] / [MS-ODATA] for OData V2 (EDMX ``Version="1.0"``,
``m:DataServiceVersion="2.0"``, CSDL namespace ``2008/09/edm``); SAP's live ``$metadata``
for container name, attribute set and order, and the facets (captured in
``linusdevx/sap-cpi-mcp-server:cpi_odata_metadata.xml``); AtomPub (RFC 5023 §8) for the
service document. The two shapes of the parameter types are DECISIONS D1.
"""

from __future__ import annotations

import json as _json
from collections.abc import Iterable
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from ..model.entities import (
    MESSAGE_PROCESSING_LOG,
    MPL_NAVIGATIONS,
    NAMESPACE,
    PARAMETER,
    EntityType,
    Navigation,
    Property,
)
from .errors import METADATA_NS

EDMX_NS = "http://schemas.microsoft.com/ado/2007/06/edmx"
EDM_NS = "http://schemas.microsoft.com/ado/2008/09/edm"
APP_NS = "http://www.w3.org/2007/app"
ATOM_NS = "http://www.w3.org/2005/Atom"

CONTAINER_NAME = "DefaultContainer"
"""SAP's container name; clients that qualify sets (``DefaultContainer.Partners``) need it."""

CONTENT_TYPE = "application/xml;charset=utf-8"
SERVICE_DOCUMENT_ATOM_CONTENT_TYPE = "application/atomsvc+xml;charset=utf-8"
SERVICE_DOCUMENT_JSON_CONTENT_TYPE = "application/json;charset=utf-8"

Style = Literal["flat", "sap"]

_BASE_TYPES: dict[str, EntityType] = {PARAMETER.name: PARAMETER}
"""Types that others derive from in SAP's shape; they have no entity set of their own."""


def _property(prop: Property) -> str:
    # SAP writes the attributes in this (alphabetical) order, and Nullable always.
    max_length = f'MaxLength="{prop.max_length}" ' if prop.max_length is not None else ""
    nullable = "true" if prop.nullable else "false"
    return (
        f'        <Property {max_length}Name="{prop.name}" Nullable="{nullable}" '
        f'Type="{prop.edm_type.value}"/>'
    )


INTEGRATION_ARTIFACT = "IntegrationArtifact"
INTEGRATION_ARTIFACT_FIELDS = ("Id", "Name", "Type", "PackageId", "PackageName")
"""SAP's complex type of ``MessageProcessingLog.IntegrationArtifact``."""


def _complex_types(types: list[EntityType]) -> list[str]:
    if MESSAGE_PROCESSING_LOG not in types:
        return []
    lines = [f'      <ComplexType Name="{INTEGRATION_ARTIFACT}">']
    lines += [
        f'        <Property Name="{name}" Nullable="true" Type="Edm.String"/>'
        for name in INTEGRATION_ARTIFACT_FIELDS
    ]
    lines.append("      </ComplexType>")
    return lines


def _navigations(types: list[EntityType]) -> list[Navigation]:
    return [n for n in MPL_NAVIGATIONS if n.source in types and n.target in types]


def _navigation_properties(entity_type: EntityType, navigations: list[Navigation]) -> list[str]:
    lines = []
    if entity_type is MESSAGE_PROCESSING_LOG:
        lines.append(
            f'        <Property Name="{INTEGRATION_ARTIFACT}" Nullable="true" '
            f'Type="{NAMESPACE}.{INTEGRATION_ARTIFACT}"/>'
        )
    for n in navigations:
        if n.source is entity_type:
            lines.append(
                f'        <NavigationProperty FromRole="{n.source.name}" Name="{n.name}" '
                f'Relationship="{NAMESPACE}.{n.association}" ToRole="{n.name}"/>'
            )
    return lines


def _associations(navigations: list[Navigation]) -> list[str]:
    lines = []
    for n in navigations:
        lines += [
            f'      <Association Name="{n.association}">',
            f'        <End Multiplicity="1" Role="{n.source.name}" '
            f'Type="{n.source.qualified_name}"/>',
            f'        <End Multiplicity="{"*" if n.many else "0..1"}" Role="{n.name}" '
            f'Type="{n.target.qualified_name}"/>',
            "      </Association>",
        ]
    return lines


def _association_sets(navigations: list[Navigation]) -> list[str]:
    lines = []
    for n in navigations:
        lines += [
            f'        <AssociationSet Association="{NAMESPACE}.{n.association}" '
            f'Name="{n.association}">',
            f'          <End EntitySet="{n.source.entity_set}" Role="{n.source.name}"/>',
            f'          <End EntitySet="{n.target.entity_set}" Role="{n.name}"/>',
            "        </AssociationSet>",
        ]
    return lines


def _entity_type(
    entity_type: EntityType,
    properties: Iterable[Property],
    base: EntityType | None,
    navigations: list[Navigation] | None = None,
) -> list[str]:
    if base is None:
        lines = [f'      <EntityType Name="{entity_type.name}">', "        <Key>"]
        lines += [f'          <PropertyRef Name="{key}"/>' for key in entity_type.keys]
        lines.append("        </Key>")
    else:
        lines = [f'      <EntityType BaseType="{base.qualified_name}" Name="{entity_type.name}">']
    lines += [_property(p) for p in properties]
    lines += _navigation_properties(entity_type, navigations or [])
    lines.append("      </EntityType>")
    return lines


def _declarations(entity_types: list[EntityType], style: Style) -> list[str]:
    navigations = _navigations(entity_types)
    lines: list[str] = _complex_types(entity_types)
    declared: set[str] = set()
    for entity_type in entity_types:
        base = None
        if style == "sap" and entity_type.base_type is not None:
            base = _BASE_TYPES[entity_type.base_type]
        if base is not None and base.name not in declared:
            lines += _entity_type(base, base.properties, None)
            declared.add(base.name)
        if entity_type.name in declared:
            continue
        if base is None:
            lines += _entity_type(entity_type, entity_type.properties, None, navigations)
        else:
            inherited = set(base.property_names)
            own = [p for p in entity_type.properties if p.name not in inherited]
            lines += _entity_type(entity_type, own, base)
        declared.add(entity_type.name)
    return lines + _associations(navigations)


def metadata_document(entity_types: Iterable[EntityType], style: Style = "flat") -> bytes:
    """The EDMX answer to ``GET $metadata``.

    ``"flat"`` (the default, DECISIONS D1) declares every parameter type with its own Key
    and all its properties, so that clients which ignore ``BaseType`` (pyodata 1.12) can
    address parameters. ``"sap"`` reproduces SAP's shape: ``Parameter`` holds ``Pid``,
    ``Id``, the key and the audit fields, and the parameter types derive from it. Names,
    types, nullability and MaxLength are SAP's in both.
    """
    if style not in ("flat", "sap"):
        raise ValueError(f"unknown $metadata style {style!r}; use 'flat' or 'sap'")
    types = list(entity_types)
    lines = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
        f'<edmx:Edmx xmlns:edmx="{EDMX_NS}" Version="1.0">',
        f'  <edmx:DataServices xmlns:m="{METADATA_NS}" m:DataServiceVersion="2.0">',
        f'    <Schema xmlns="{EDM_NS}" Namespace="{NAMESPACE}">',
        *_declarations(types, style),
        f'      <EntityContainer Name="{CONTAINER_NAME}" m:IsDefaultEntityContainer="true">',
        *(
            f'        <EntitySet EntityType="{t.qualified_name}" Name="{t.entity_set}"/>'
            for t in types
            if t.entity_set
        ),
        *_association_sets(_navigations(types)),
        "      </EntityContainer>",
        "    </Schema>",
        "  </edmx:DataServices>",
        "</edmx:Edmx>",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def service_document(entity_sets: Iterable[str], base_url: str, *, json: bool) -> bytes:
    """The answer to ``GET /`` (the service root).

    JSON: ``{"d": {"EntitySets": [...]}}`` (OData V2 JSON Format, service document). Otherwise an
    AtomPub ``<service>`` with one ``<collection>`` per set, hrefs relative to ``xml:base``.
    """
    names = list(entity_sets)
    if json:
        document = {"d": {"EntitySets": names}}
        return _json.dumps(document, separators=(",", ":")).encode("utf-8")
    collections = "".join(
        f"<collection href={quoteattr(name)}><atom:title>{escape(name)}</atom:title></collection>"
        for name in names
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<service xmlns="{APP_NS}" xmlns:atom="{ATOM_NS}" xml:base={quoteattr(base_url)}>'
        f"<workspace><atom:title>Default</atom:title>{collections}</workspace>"
        "</service>"
    ).encode()

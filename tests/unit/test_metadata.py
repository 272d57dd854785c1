"""``$metadata`` and the service document.

The reference is SAP's live ``$metadata`` (captured in
``linusdevx/sap-cpi-mcp-server:cpi_odata_metadata.xml``); the Partner Directory part of it
is quoted below. The client is pyodata 1.12, SAP's own Python OData client (DECISIONS D1).
"""

from __future__ import annotations

import json

import pytest
from lxml import etree
from pyodata.v2.model import MetadataBuilder
from pyodata.v2.service import EntityKey

from partnergate.model.entities import (
    ENTITY_TYPES,
    PARAMETER,
    PARTNER_DIRECTORY_TYPES,
    EntityType,
)
from partnergate.odata.keys import parse_key
from partnergate.odata.metadata import (
    APP_NS,
    ATOM_NS,
    EDM_NS,
    EDMX_NS,
    metadata_document,
    service_document,
)

M_NS = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
NS = {"edmx": EDMX_NS, "edm": EDM_NS, "m": M_NS, "app": APP_NS, "atom": ATOM_NS}
BASE = "http://127.0.0.1:8080/api/v1/"

SAP_PARTNER_DIRECTORY = f"""<Schema xmlns="{EDM_NS}" xmlns:m="{M_NS}" Namespace="com.sap.hci.api">
      <EntityType Name="Parameter">
        <Key>
          <PropertyRef Name="Pid"/>
          <PropertyRef Name="Id"/>
        </Key>
        <Property MaxLength="60" Name="Pid" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="1500" Name="Id" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="150" Name="LastModifiedBy" Nullable="true" Type="Edm.String"/>
        <Property Name="LastModifiedTime" Nullable="true" Type="Edm.DateTime"/>
        <Property MaxLength="150" Name="CreatedBy" Nullable="true" Type="Edm.String"/>
        <Property Name="CreatedTime" Nullable="true" Type="Edm.DateTime"/>
      </EntityType>
      <EntityType BaseType="com.sap.hci.api.Parameter" Name="StringParameter">
        <Property MaxLength="4000" Name="Value" Nullable="false" Type="Edm.String"/>
      </EntityType>
      <EntityType BaseType="com.sap.hci.api.Parameter" Name="BinaryParameter">
        <Property MaxLength="300" Name="ContentType" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="1572864" Name="Value" Nullable="false" Type="Edm.Binary"/>
      </EntityType>
      <EntityType Name="AlternativePartner">
        <Key>
          <PropertyRef Name="Hexagency"/>
          <PropertyRef Name="Hexscheme"/>
          <PropertyRef Name="Hexid"/>
        </Key>
        <Property MaxLength="480" Name="Hexagency" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="480" Name="Hexscheme" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="1020" Name="Hexid" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="120" Name="Agency" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="120" Name="Scheme" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="255" Name="Id" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="60" Name="Pid" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="150" Name="LastModifiedBy" Nullable="true" Type="Edm.String"/>
        <Property Name="LastModifiedTime" Nullable="true" Type="Edm.DateTime"/>
        <Property MaxLength="150" Name="CreatedBy" Nullable="true" Type="Edm.String"/>
        <Property Name="CreatedTime" Nullable="true" Type="Edm.DateTime"/>
      </EntityType>
      <EntityType Name="AuthorizedUser">
        <Key>
          <PropertyRef Name="User"/>
        </Key>
        <Property MaxLength="150" Name="User" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="60" Name="Pid" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="150" Name="LastModifiedBy" Nullable="true" Type="Edm.String"/>
        <Property Name="LastModifiedTime" Nullable="true" Type="Edm.DateTime"/>
        <Property MaxLength="150" Name="CreatedBy" Nullable="true" Type="Edm.String"/>
        <Property Name="CreatedTime" Nullable="true" Type="Edm.DateTime"/>
      </EntityType>
      <EntityType Name="Partner">
        <Key>
          <PropertyRef Name="Pid"/>
        </Key>
        <Property MaxLength="60" Name="Pid" Nullable="false" Type="Edm.String"/>
      </EntityType>
      <EntityType BaseType="com.sap.hci.api.Parameter" Name="UserCredentialParameter">
        <Property MaxLength="200" Name="User" Nullable="false" Type="Edm.String"/>
        <Property MaxLength="200" Name="Password" Nullable="true" Type="Edm.String"/>
      </EntityType>
      <EntityContainer Name="DefaultContainer" m:IsDefaultEntityContainer="true">
        <EntitySet EntityType="com.sap.hci.api.StringParameter" Name="StringParameters"/>
        <EntitySet EntityType="com.sap.hci.api.BinaryParameter" Name="BinaryParameters"/>
        <EntitySet EntityType="com.sap.hci.api.AlternativePartner" Name="AlternativePartners"/>
        <EntitySet EntityType="com.sap.hci.api.AuthorizedUser" Name="AuthorizedUsers"/>
        <EntitySet EntityType="com.sap.hci.api.Partner" Name="Partners"/>
        <EntitySet EntityType="com.sap.hci.api.UserCredentialParameter"
                   Name="UserCredentialParameters"/>
      </EntityContainer>
    </Schema>"""
"""The Partner Directory part of SAP's live document, element for element."""


def shape(element: etree._Element) -> tuple[object, ...]:
    """An element as comparable data: tag, attributes, children (whitespace ignored)."""
    return (element.tag, dict(element.attrib), [shape(c) for c in element])


def schema(document: bytes) -> etree._Element:
    root = etree.fromstring(document)
    found = root.xpath("/edmx:Edmx/edmx:DataServices/edm:Schema", namespaces=NS)
    assert len(found) == 1
    return found[0]


def types_by_name(schema_element: etree._Element) -> dict[str, etree._Element]:
    return {t.get("Name"): t for t in schema_element.xpath("edm:EntityType", namespaces=NS)}


def sets_by_name(schema_element: etree._Element) -> dict[str, etree._Element]:
    path = "edm:EntityContainer/edm:EntitySet"
    return {s.get("Name"): s for s in schema_element.xpath(path, namespaces=NS)}


# -- the document ----------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["flat", "sap"])
def test_edmx_envelope_matches_sap(style: str) -> None:
    document = metadata_document(ENTITY_TYPES.values(), style)
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8" standalone="no"?>')
    root = etree.fromstring(document)
    assert root.tag == f"{{{EDMX_NS}}}Edmx"
    assert root.get("Version") == "1.0"
    services = root.find(f"{{{EDMX_NS}}}DataServices")
    assert services.get(f"{{{M_NS}}}DataServiceVersion") == "2.0"
    assert schema(document).get("Namespace") == "com.sap.hci.api"
    container = schema(document).xpath("edm:EntityContainer", namespaces=NS)
    assert [(c.get("Name"), c.get(f"{{{M_NS}}}IsDefaultEntityContainer")) for c in container] == [
        ("DefaultContainer", "true")
    ]


def test_sap_style_matches_sap_document_for_the_partner_directory() -> None:
    ours = schema(metadata_document(PARTNER_DIRECTORY_TYPES, "sap"))
    theirs = etree.fromstring(SAP_PARTNER_DIRECTORY)
    assert {n: shape(t) for n, t in types_by_name(ours).items()} == {
        n: shape(t) for n, t in types_by_name(theirs).items()
    }
    assert {n: shape(s) for n, s in sets_by_name(ours).items()} == {
        n: shape(s) for n, s in sets_by_name(theirs).items()
    }


def test_sap_style_writes_attributes_in_sap_order() -> None:
    text = metadata_document(PARTNER_DIRECTORY_TYPES, "sap").decode()
    for line in (
        '<EntityType BaseType="com.sap.hci.api.Parameter" Name="StringParameter">',
        '<Property MaxLength="1572864" Name="Value" Nullable="false" Type="Edm.Binary"/>',
        '<Property Name="CreatedTime" Nullable="true" Type="Edm.DateTime"/>',
        '<EntitySet EntityType="com.sap.hci.api.Partner" Name="Partners"/>',
    ):
        assert line in text


def test_sap_style_declares_the_base_once_without_a_set() -> None:
    ours = schema(metadata_document(ENTITY_TYPES.values(), "sap"))
    types = types_by_name(ours)
    assert list(types).count("Parameter") == 1
    assert list(types)[0] == "Parameter"
    assert "Parameter" not in {s.get("EntityType") for s in sets_by_name(ours).values()}
    for name in ("StringParameter", "BinaryParameter", "UserCredentialParameter"):
        assert types[name].get("BaseType") == "com.sap.hci.api.Parameter"
        assert types[name].xpath("edm:Key", namespaces=NS) == []
        own = [p.get("Name") for p in types[name].xpath("edm:Property", namespaces=NS)]
        assert not set(own) & set(PARAMETER.property_names)


def test_flat_style_gives_each_parameter_type_its_key_and_all_properties() -> None:
    theirs = types_by_name(etree.fromstring(SAP_PARTNER_DIRECTORY))
    ours = types_by_name(schema(metadata_document(PARTNER_DIRECTORY_TYPES)))
    assert "Parameter" not in ours
    for name in ("StringParameter", "BinaryParameter", "UserCredentialParameter"):
        assert ours[name].get("BaseType") is None
        base = shape(theirs["Parameter"])
        derived = shape(theirs[name])
        expected = (base[0], {"Name": name}, base[2] + derived[2])
        assert shape(ours[name]) == expected
    for name in ("AlternativePartner", "AuthorizedUser", "Partner"):
        assert shape(ours[name]) == shape(theirs[name])


def test_certificate_user_mappings_are_declared_when_served() -> None:
    ours = schema(metadata_document(ENTITY_TYPES.values()))
    assert sets_by_name(ours)["CertificateUserMappings"].get("EntityType") == (
        "com.sap.hci.api.CertificateUserMapping"
    )
    props = types_by_name(ours)["CertificateUserMapping"].xpath("edm:Property", namespaces=NS)
    valid_until = [p for p in props if p.get("Name") == "ValidUntil"][0]
    assert dict(valid_until.attrib) == {
        "Name": "ValidUntil",
        "Nullable": "true",
        "Type": "Edm.Int64",
    }


def test_only_the_types_given_are_declared() -> None:
    types = [ENTITY_TYPES["Partners"]]
    ours = schema(metadata_document(types))
    assert list(types_by_name(ours)) == ["Partner"]
    assert list(sets_by_name(ours)) == ["Partners"]


def test_unknown_style_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="style"):
        metadata_document(ENTITY_TYPES.values(), "odata4")  # type: ignore[arg-type]


# -- pyodata reads it ------------------------------------------------------------------------


def test_pyodata_sees_every_set_with_keys_and_properties() -> None:
    model = MetadataBuilder(metadata_document(ENTITY_TYPES.values())).build()
    assert {s.name for s in model.entity_sets} == set(ENTITY_TYPES)
    for set_name, entity_type in ENTITY_TYPES.items():
        seen = model.entity_set(set_name).entity_type
        assert seen.name == entity_type.name
        assert [k.name for k in seen.key_proprties] == list(entity_type.keys)
        complex_values = ["IntegrationArtifact"] if set_name == "MessageProcessingLogs" else []
        assert [p.name for p in seen.proprties()] == [*entity_type.property_names, *complex_values]
        for prop in entity_type.properties:
            declared = seen.proprty(prop.name)
            assert declared.typ.name == prop.edm_type.value
            assert declared.nullable == prop.nullable
            assert declared.max_length == prop.max_length


@pytest.mark.parametrize(
    ("set_name", "keys"),
    [
        ("StringParameters", ("Pid", "Id")),
        ("BinaryParameters", ("Pid", "Id")),
        ("UserCredentialParameters", ("Pid", "Id")),
        ("AlternativePartners", ("Hexagency", "Hexscheme", "Hexid")),
        ("AuthorizedUsers", ("User",)),
        ("Partners", ("Pid",)),
    ],
)
def test_pyodata_addresses_entities_the_way_we_parse_them(
    set_name: str, keys: tuple[str, ...]
) -> None:
    model = MetadataBuilder(metadata_document(PARTNER_DIRECTORY_TYPES)).build()
    seen = model.entity_set(set_name).entity_type
    assert tuple(k.name for k in seen.key_proprties) == keys
    values = {k: f"it's {k}" for k in keys}
    key = EntityKey(seen, **values) if len(keys) > 1 else EntityKey(seen, values[keys[0]])
    predicate = key.to_key_string()
    entity_type: EntityType = ENTITY_TYPES[set_name]
    assert parse_key(entity_type, predicate[1:-1]) == values


def test_pyodata_cannot_address_parameters_in_sap_style() -> None:
    """Why flat is the default (DECISIONS D1): pyodata ignores BaseType."""
    model = MetadataBuilder(metadata_document(PARTNER_DIRECTORY_TYPES, "sap")).build()
    seen = model.entity_set("StringParameters").entity_type
    assert seen.key_proprties == []
    assert [p.name for p in seen.proprties()] == ["Value"]


# -- service document ------------------------------------------------------------------------

SETS = ["AlternativePartners", "AuthorizedUsers", "StringParameters"]


def test_service_document_json() -> None:
    body = service_document(SETS, BASE, json=True)
    assert json.loads(body) == {"d": {"EntitySets": SETS}}


def test_service_document_atompub() -> None:
    root = etree.fromstring(service_document(iter(SETS), BASE, json=False))
    assert root.tag == f"{{{APP_NS}}}service"
    assert root.get("{http://www.w3.org/XML/1998/namespace}base") == BASE
    workspace = root.xpath("app:workspace", namespaces=NS)
    assert len(workspace) == 1
    assert workspace[0].xpath("atom:title/text()", namespaces=NS) == ["Default"]
    collections = workspace[0].xpath("app:collection", namespaces=NS)
    assert [c.get("href") for c in collections] == SETS
    assert [c.xpath("string(atom:title)", namespaces=NS) for c in collections] == SETS


def test_service_document_escapes_the_base_url() -> None:
    root = etree.fromstring(service_document([], 'http://h/a"b&c/', json=False))
    assert root.get("{http://www.w3.org/XML/1998/namespace}base") == 'http://h/a"b&c/'

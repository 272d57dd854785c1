"""Atom: the documents SAP answers with by default, read back with lxml and XPath, and
Atom request bodies, hostile ones included (XXE, entity expansion).

Expected shapes follow SAP's "Requests for String Parameter, Binary Parameter, and
Authorized User" page (SAP-docs/btp-integration-suite, loio 47b6999) and the OData V2 Atom
Format.
"""

from __future__ import annotations

import http.server
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from partnergate.model.entities import (
    AUTHORIZED_USER,
    BINARY_PARAMETER,
    PARTNER,
    STRING_PARAMETER,
    EdmType,
    EntityType,
    Property,
)
from partnergate.odata.atom import (
    ATOM_NS,
    DATA_NS,
    SCHEME,
    entry_atom,
    feed_atom,
    parse_entity_atom,
)
from partnergate.odata.errors import METADATA_NS, BadRequest

BASE = "http://127.0.0.1:8080/api/v1/"
NS = {"a": ATOM_NS, "m": METADATA_NS, "d": DATA_NS}
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
UPDATED = datetime(2021, 3, 16, 12, 27, 14, 510000)

SAMPLE = EntityType(
    "Sample",
    "Samples",
    ("Key",),
    (
        Property("Key", EdmType.STRING, False, 10),
        Property("Text", EdmType.STRING),
        Property("Blob", EdmType.BINARY),
        Property("When", EdmType.DATETIME),
        Property("Big", EdmType.INT64),
        Property("Small", EdmType.INT32),
        Property("Flag", EdmType.BOOLEAN),
    ),
)

SAMPLE_VALUES: dict[str, object] = {
    "Key": "k1",
    "Text": "Grüße \"quoted\" <tag> & 'apostrophe' ]]> \r\n\t end",
    "Blob": bytes(range(256)),
    "When": datetime(2021, 3, 16, 11, 25, 7, 916000),
    "Big": 2**63 - 1,
    "Small": -(2**31),
    "Flag": False,
}

STRING_PARAM = {
    "Pid": "PartnerZ",
    "Id": "ReceiverAddress",
    "LastModifiedBy": "myuser",
    "LastModifiedTime": datetime(2021, 3, 16, 11, 25, 7, 916000),
    "CreatedBy": "myuser",
    "CreatedTime": datetime(2021, 3, 16, 11, 25, 7, 916000),
    "Value": "http://receiverZ.receiver_org.com",
}


def xml(body: bytes) -> etree._Element:
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    return etree.fromstring(body)


def one(node: etree._Element, path: str) -> etree._Element:
    found = node.xpath(path, namespaces=NS)
    assert len(found) == 1, (path, found)
    return found[0]


def text(node: etree._Element, path: str) -> str:
    return one(node, path).text or ""


def props_body(inner: str) -> bytes:
    head = f'<m:properties xmlns:m="{METADATA_NS}" xmlns:d="{DATA_NS}">'
    return (head + inner + "</m:properties>").encode()


def bad(entity_type: EntityType, body: bytes) -> str:
    with pytest.raises(BadRequest) as info:
        parse_entity_atom(entity_type, body)
    assert info.value.status == 400
    return info.value.message


# -- entry ---------------------------------------------------------------------------------


def test_entry_has_the_parts_sap_sends() -> None:
    entry = xml(entry_atom(STRING_PARAMETER, STRING_PARAM, BASE, updated=UPDATED))
    assert entry.tag == f"{{{ATOM_NS}}}entry"
    assert entry.get(XML_BASE) == BASE
    uri = BASE + "StringParameters(Pid='PartnerZ',Id='ReceiverAddress')"
    assert text(entry, "a:id") == uri
    assert text(entry, "a:title[@type='text']") == "StringParameters"
    assert text(entry, "a:updated") == "2021-03-16T12:27:14.51Z"
    assert one(entry, "a:author/a:name").text is None
    link = one(entry, "a:link[@rel='edit']")
    assert link.get("href") == "StringParameters(Pid='PartnerZ',Id='ReceiverAddress')"
    assert link.get("title") == "StringParameter"
    category = one(entry, "a:category")
    assert category.get("term") == "com.sap.hci.api.StringParameter"
    assert category.get("scheme") == SCHEME
    assert one(entry, "a:content").get("type") == "application/xml"
    props = one(entry, "a:content/m:properties")
    assert [etree.QName(p).localname for p in props] == list(STRING_PARAMETER.property_names)
    assert all(etree.QName(p).namespace == DATA_NS for p in props)
    assert text(props, "d:Pid") == "PartnerZ"
    assert text(props, "d:Value") == "http://receiverZ.receiver_org.com"


def test_edit_link_resolves_against_xml_base_to_the_id() -> None:
    entry = xml(entry_atom(STRING_PARAMETER, {"Pid": "P 1", "Id": "é/x", "Value": ""}, BASE))
    href = one(entry, "a:link[@rel='edit']").get("href")
    assert entry.get(XML_BASE) + href == text(entry, "a:id")
    assert href == "StringParameters(Pid='P%201',Id='%C3%A9%2Fx')"


def test_m_type_on_non_strings_only_and_m_null() -> None:
    values = {**STRING_PARAM, "LastModifiedBy": None, "LastModifiedTime": None}
    props = one(xml(entry_atom(STRING_PARAMETER, values, BASE)), "a:content/m:properties")
    assert one(props, "d:Pid").get(f"{{{METADATA_NS}}}type") is None
    created = one(props, "d:CreatedTime")
    assert created.get(f"{{{METADATA_NS}}}type") == "Edm.DateTime"
    assert created.text == "2021-03-16T11:25:07.916"
    by = one(props, "d:LastModifiedBy")
    assert by.get(f"{{{METADATA_NS}}}null") == "true"
    assert by.get(f"{{{METADATA_NS}}}type") is None
    time = one(props, "d:LastModifiedTime")
    assert time.get(f"{{{METADATA_NS}}}null") == "true"
    assert time.get(f"{{{METADATA_NS}}}type") == "Edm.DateTime"


def test_every_edm_type_in_text_form() -> None:
    props = one(xml(entry_atom(SAMPLE, SAMPLE_VALUES, BASE)), "a:content/m:properties")
    types = {etree.QName(p).localname: p.get(f"{{{METADATA_NS}}}type") for p in props}
    assert types == {
        "Key": None,
        "Text": None,
        "Blob": "Edm.Binary",
        "When": "Edm.DateTime",
        "Big": "Edm.Int64",
        "Small": "Edm.Int32",
        "Flag": "Edm.Boolean",
    }
    assert text(props, "d:Big") == "9223372036854775807"
    assert text(props, "d:Small") == "-2147483648"
    assert text(props, "d:Flag") == "false"
    assert text(props, "d:Text") == SAMPLE_VALUES["Text"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2021, 3, 16, 11, 25, 7, 916000), "2021-03-16T11:25:07.916"),
        (datetime(2021, 3, 16, 11, 25, 7, 916999), "2021-03-16T11:25:07.916"),
        (datetime(2021, 3, 16, 11, 25, 7, 510000), "2021-03-16T11:25:07.51"),
        (datetime(2021, 3, 16, 11, 25, 7, 500000), "2021-03-16T11:25:07.5"),
        (datetime(2021, 3, 16, 11, 25, 7, 1000), "2021-03-16T11:25:07.001"),
        (datetime(2021, 3, 16, 11, 25, 7), "2021-03-16T11:25:07"),
        (datetime(999, 1, 2, 3, 4, 5), "0999-01-02T03:04:05"),
    ],
)
def test_datetime_text_has_olingo_millisecond_form(value: datetime, expected: str) -> None:
    entry = xml(entry_atom(AUTHORIZED_USER, {"User": "u", "CreatedTime": value}, BASE))
    assert text(entry, "a:content/m:properties/d:CreatedTime") == expected


def test_updated_defaults_to_now_in_utc() -> None:
    stamp = text(xml(entry_atom(PARTNER, {"Pid": "P"}, BASE)), "a:updated")
    assert stamp.endswith("Z")
    assert (
        abs(
            datetime.fromisoformat(stamp[:-1]) - datetime.now(UTC).replace(tzinfo=None)
        ).total_seconds()
        < 60
    )


def test_select_limits_properties() -> None:
    entry = xml(entry_atom(STRING_PARAMETER, STRING_PARAM, BASE, select=["Value"]))
    props = one(entry, "a:content/m:properties")
    assert [etree.QName(p).localname for p in props] == ["Value"]
    assert text(entry, "a:id").endswith("(Pid='PartnerZ',Id='ReceiverAddress')")


def test_characters_xml_cannot_carry_become_replacement_characters() -> None:
    entry = xml(entry_atom(STRING_PARAMETER, {"Pid": "P", "Id": "I", "Value": "a\x00b\x1fc"}, BASE))
    assert text(entry, "a:content/m:properties/d:Value") == "a\ufffdb\ufffdc"


# -- feed ----------------------------------------------------------------------------------


def test_feed_with_count_and_next() -> None:
    rows = [STRING_PARAM, {**STRING_PARAM, "Id": "Other"}]
    next_url = BASE + "StringParameters?$skiptoken=1000&$select=Value"
    feed = xml(
        feed_atom(STRING_PARAMETER, rows, BASE, count=42, next_url=next_url, updated=UPDATED)
    )
    assert feed.tag == f"{{{ATOM_NS}}}feed"
    assert feed.get(XML_BASE) == BASE
    assert text(feed, "a:id") == BASE + "StringParameters"
    assert text(feed, "a:title") == "StringParameters"
    assert text(feed, "a:updated") == "2021-03-16T12:27:14.51Z"
    assert one(feed, "a:link[@rel='self']").get("href") == "StringParameters"
    assert text(feed, "m:count") == "42"
    assert one(feed, "a:link[@rel='next']").get("href") == next_url
    entries = feed.xpath("a:entry", namespaces=NS)
    assert [text(e, "a:content/m:properties/d:Id") for e in entries] == ["ReceiverAddress", "Other"]
    assert all(e.get(XML_BASE) is None for e in entries)
    assert [etree.QName(c).localname for c in feed][-1] == "link"


def test_feed_without_count_or_next() -> None:
    feed = xml(feed_atom(PARTNER, [], BASE))
    assert feed.xpath("m:count", namespaces=NS) == []
    assert feed.xpath("a:link[@rel='next']", namespaces=NS) == []
    assert feed.xpath("a:entry", namespaces=NS) == []


def test_feed_select_applies_to_every_entry() -> None:
    rows = [{"User": f"u{i}", "Pid": f"P{i}"} for i in range(3)]
    feed = xml(feed_atom(AUTHORIZED_USER, rows, BASE, select=["Pid"]))
    props = feed.xpath("a:entry/a:content/m:properties", namespaces=NS)
    assert [[etree.QName(p).localname for p in ps] for ps in props] == [["Pid"]] * 3


# -- reading -------------------------------------------------------------------------------


def test_every_edm_type_round_trips() -> None:
    assert parse_entity_atom(SAMPLE, entry_atom(SAMPLE, SAMPLE_VALUES, BASE)) == SAMPLE_VALUES
    flipped = {**SAMPLE_VALUES, "Flag": True, "Blob": b"", "Text": ""}
    assert parse_entity_atom(SAMPLE, entry_atom(SAMPLE, flipped, BASE)) == flipped


def test_nulls_round_trip() -> None:
    values: dict[str, object] = {"Key": "k", **{n: None for n in SAMPLE.property_names[1:]}}
    assert parse_entity_atom(SAMPLE, entry_atom(SAMPLE, values, BASE)) == values


def test_a_client_entry_body() -> None:
    body = f"""<?xml version="1.0" encoding="utf-8"?>
    <entry xmlns="{ATOM_NS}" xmlns:m="{METADATA_NS}" xmlns:d="{DATA_NS}">
      <category term="com.sap.hci.api.BinaryParameter" scheme="{SCHEME}"/>
      <content type="application/xml">
        <m:properties>
          <d:Pid>PartnerZ</d:Pid>
          <d:Id>Z_XSD</d:Id>
          <d:ContentType>xsd</d:ContentType>
          <d:Value m:type="Edm.Binary">
            PHhzOnNjaGVtYS8+
          </d:Value>
          <!-- a comment -->
        </m:properties>
      </content>
    </entry>""".encode()
    assert parse_entity_atom(BINARY_PARAMETER, body) == {
        "Pid": "PartnerZ",
        "Id": "Z_XSD",
        "ContentType": "xsd",
        "Value": b"<xs:schema/>",
    }


def test_bare_properties_and_properties_beside_content() -> None:
    assert parse_entity_atom(STRING_PARAMETER, props_body("<d:Value>v</d:Value>")) == {"Value": "v"}
    media = (
        f'<entry xmlns="{ATOM_NS}" xmlns:m="{METADATA_NS}" xmlns:d="{DATA_NS}">'
        '<content type="application/octet-stream" src="x"/>'
        "<m:properties><d:Value>v</d:Value></m:properties></entry>"
    )
    assert parse_entity_atom(STRING_PARAMETER, media.encode()) == {"Value": "v"}


def test_strings_keep_their_whitespace_and_empty_means_empty() -> None:
    body = props_body("<d:Value>  a\tb </d:Value><d:Id/>")
    assert parse_entity_atom(STRING_PARAMETER, body) == {"Value": "  a\tb ", "Id": ""}


def test_cdata_and_character_references() -> None:
    body = (
        f'<m:properties xmlns:m="{METADATA_NS}" xmlns:d="{DATA_NS}">'
        "<d:Value><![CDATA[<x>&]]>&#233;&amp;&#13;</d:Value></m:properties>"
    )
    assert parse_entity_atom(STRING_PARAMETER, body.encode()) == {"Value": "<x>&é&\r"}


def test_declared_latin1_body_is_read() -> None:
    body = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        f'<m:properties xmlns:m="{METADATA_NS}" xmlns:d="{DATA_NS}"><d:Value>Grüße</d:Value>'
        "</m:properties>"
    ).encode("latin-1")
    assert parse_entity_atom(STRING_PARAMETER, body) == {"Value": "Grüße"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("false", False), ("1", True), ("0", False), (" true ", True)],
)
def test_boolean_text(value: str, expected: bool) -> None:
    body = props_body(f"<d:Flag>{value}</d:Flag>")
    assert parse_entity_atom(SAMPLE, body) == {"Flag": expected}


def test_datetime_forms() -> None:
    props = (
        f'<m:properties xmlns:m="{METADATA_NS}" xmlns:d="{DATA_NS}">'
        "<d:CreatedTime>2021-03-16T12:25:07.9169+01:00</d:CreatedTime>"
        "<d:LastModifiedTime>/Date(1615893907916)/</d:LastModifiedTime></m:properties>"
    )
    assert parse_entity_atom(AUTHORIZED_USER, props.encode()) == {
        "CreatedTime": datetime(2021, 3, 16, 11, 25, 7, 916000),
        "LastModifiedTime": datetime(2021, 3, 16, 11, 25, 7, 916000),
    }


@pytest.mark.parametrize(
    ("inner", "needle"),
    [
        ("<d:Colour>red</d:Colour>", "'Colour'"),
        ("<Value>v</Value>", "'Value'"),
        ('<x:Value xmlns:x="urn:x">v</x:Value>', "namespace"),
        ("<d:Text>a</d:Text><d:Text>b</d:Text>", "twice"),
        ('<d:Big m:type="Edm.String">1</d:Big>', "Edm.Int64"),
        ('<d:Text m:type="Edm.Int32">1</d:Text>', "Edm.String"),
        ("<d:Text><b>bold</b></d:Text>", "child elements"),
        ("<d:Text>a<!-- c -->b</d:Text>", "child elements"),
        ('<d:Text m:null="yes"/>', "m:null"),
        ('<d:Text m:null="true">x</d:Text>', "m:null"),
        ("<d:Flag>yes</d:Flag>", "Edm.Boolean"),
        ("<d:Flag/>", "Edm.Boolean"),
        ("<d:Big>12L</d:Big>", "Edm.Int64"),
        ("<d:Big/>", "Edm.Int64"),
        ("<d:Big>9223372036854775808</d:Big>", "Edm.Int64"),
        ("<d:Small>2147483648</d:Small>", "Edm.Int32"),
        ("<d:Blob>not base64</d:Blob>", "base64"),
        ("<d:Blob>AAF=</d:Blob>", "base64"),
        ("<d:When>tomorrow</d:When>", "Edm.DateTime"),
        ("<d:When/>", "Edm.DateTime"),
        ("<d:When>10000-01-01T00:00:00</d:When>", "Edm.DateTime"),
    ],
)
def test_bad_properties_are_named(inner: str, needle: str) -> None:
    assert needle in bad(SAMPLE, props_body(inner))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"<m:properties>",
        props_body("<d:Text>").replace(b"</m:properties>", b""),
        b"<?xml version='1.0' encoding='utf-8'?><a>\xff\xfe</a>",
    ],
)
def test_malformed_xml(body: bytes) -> None:
    assert bad(STRING_PARAMETER, body).startswith("Invalid XML")


@pytest.mark.parametrize(
    "body",
    [
        b"<entry><content/></entry>",
        f'<feed xmlns="{ATOM_NS}"/>'.encode(),
        f'<properties xmlns="{DATA_NS}"/>'.encode(),
    ],
)
def test_wrong_root(body: bytes) -> None:
    assert "expected an Atom <entry> or <m:properties>" in bad(STRING_PARAMETER, body)


def test_entry_without_properties() -> None:
    body = f'<entry xmlns="{ATOM_NS}"><content type="application/xml"/></entry>'.encode()
    assert "no <m:properties>" in bad(STRING_PARAMETER, body)


# -- hostile XML ---------------------------------------------------------------------------


def test_external_entity_is_refused_and_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE m:properties [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
        f'<m:properties xmlns:m="{METADATA_NS}" xmlns:d="{DATA_NS}"><d:Value>&xxe;</d:Value>'
        "</m:properties>"
    ).encode()
    with pytest.raises(BadRequest) as info:
        parse_entity_atom(STRING_PARAMETER, body)
    assert "TOP-SECRET" not in info.value.message


def test_billion_laughs_is_refused() -> None:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    body = (
        f'<?xml version="1.0"?><!DOCTYPE m:properties [{"".join(entities)}]>'
        f'<m:properties xmlns:m="{METADATA_NS}" xmlns:d="{DATA_NS}"><d:Value>&lol9;</d:Value>'
        "</m:properties>"
    ).encode()
    bad(STRING_PARAMETER, body)


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'<!ENTITY secret "FROM-THE-NETWORK">')

    def log_message(self, *args: object) -> None:
        pass


def test_external_dtd_is_refused_without_fetching() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/evil.dtd"
        for value in ("v", "&secret;"):
            body = (
                f'<?xml version="1.0"?><!DOCTYPE m:properties SYSTEM "{url}">'
                f'<m:properties xmlns:m="{METADATA_NS}" xmlns:d="{DATA_NS}">'
                f"<d:Value>{value}</d:Value></m:properties>"
            ).encode()
            assert "document type" in bad(STRING_PARAMETER, body)
    finally:
        server.shutdown()
        server.server_close()
    assert _Recorder.hits == []


def test_external_dtd_file_is_not_read(tmp_path: Path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY secret "TOP-SECRET">')
    body = (
        f'<!DOCTYPE m:properties SYSTEM "{dtd.as_uri()}">'
        f'<m:properties xmlns:m="{METADATA_NS}" xmlns:d="{DATA_NS}">'
        "<d:Value>&secret;</d:Value></m:properties>"
    ).encode()
    assert "TOP-SECRET" not in bad(STRING_PARAMETER, body)


def test_plain_doctype_is_refused() -> None:
    body = f'<!DOCTYPE x><m:properties xmlns:m="{METADATA_NS}"/>'.encode()
    assert "document type" in bad(STRING_PARAMETER, body)


def test_very_deep_document_is_refused() -> None:
    body = props_body("<d:Text>" + "<x>" * 10_000 + "</x>" * 10_000 + "</d:Text>")
    bad(SAMPLE, body)

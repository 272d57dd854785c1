"""OData V2 JSON verbose: shapes SAP sends, values both ways, and every way a body can be bad.

Shapes follow SAP's captured CF responses (SAP-samples partner-directory accelerator
exports) and OData V2 JSON Format §2.2.6.3; pyodata's own Edm traits check that a real
client reads what we write and that we read what it sends.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote

import pytest
from pyodata.v2.model import (
    EdmDateTimeTypTraits,
    EdmLongIntTypTraits,
)

from partnergate.model.entities import (
    ALTERNATIVE_PARTNER,
    AUTHORIZED_USER,
    BINARY_PARAMETER,
    CERTIFICATE_USER_MAPPING,
    PARTNER,
    STRING_PARAMETER,
    EdmType,
    EntityType,
    Property,
)
from partnergate.odata.errors import BadRequest, ODataError, error_json
from partnergate.odata.json_format import (
    count_text,
    entry_json,
    feed_json,
    negotiate,
    parse_entity_json,
)
from partnergate.odata.keys import parse_key

BASE = "http://127.0.0.1:8080/api/v1/"

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
"""One property of every Edm type the model knows (no Partner Directory type has Boolean)."""

SAMPLE_VALUES: dict[str, object] = {
    "Key": "k1",
    "Text": "Grüße \"quoted\" <tag> & 'apostrophe'\n\t",
    "Blob": bytes(range(256)),
    "When": datetime(2021, 3, 16, 11, 25, 7, 916000),
    "Big": 2**63 - 1,
    "Small": -(2**31),
    "Flag": True,
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


def d(body: bytes) -> dict[str, object]:
    document = json.loads(body)
    assert list(document) == ["d"]
    return document["d"]


def bad(entity_type: EntityType, body: bytes) -> str:
    with pytest.raises(BadRequest) as info:
        parse_entity_json(entity_type, body)
    assert info.value.status == 400
    return info.value.message


# -- entry and feed shapes -----------------------------------------------------------------


def test_entry_has_sap_shape() -> None:
    uri = "http://127.0.0.1:8080/api/v1/StringParameters(Pid='PartnerZ',Id='ReceiverAddress')"
    assert json.loads(entry_json(STRING_PARAMETER, STRING_PARAM, BASE)) == {
        "d": {
            "__metadata": {"id": uri, "uri": uri, "type": "com.sap.hci.api.StringParameter"},
            "Pid": "PartnerZ",
            "Id": "ReceiverAddress",
            "LastModifiedBy": "myuser",
            "LastModifiedTime": "/Date(1615893907916)/",
            "CreatedBy": "myuser",
            "CreatedTime": "/Date(1615893907916)/",
            "Value": "http://receiverZ.receiver_org.com",
        }
    }


def test_entry_is_compact_utf8_with_metadata_first() -> None:
    body = entry_json(AUTHORIZED_USER, {"User": "müller", "Pid": "P"}, BASE)
    assert body.startswith(b'{"d":{"__metadata":{"id":"http://127.0.0.1:8080/api/v1/Authorized')
    assert "müller".encode() in body
    assert b" " not in body.replace(b"127.0.0.1:8080", b"")


def test_missing_and_none_values_are_null() -> None:
    entry = d(entry_json(PARTNER, {"Pid": "P1"}, BASE))
    assert entry["Pid"] == "P1"
    entry = d(entry_json(AUTHORIZED_USER, {"User": "u", "Pid": "P", "CreatedTime": None}, BASE))
    assert entry["CreatedTime"] is None
    assert entry["LastModifiedBy"] is None


def test_alternative_partner_uri_uses_the_three_hex_keys() -> None:
    values = {
        "Hexagency": "4167656E637958595A",
        "Hexscheme": "536368656D65",
        "Hexid": "4964",
        "Agency": "AgencyXYZ",
        "Scheme": "Scheme",
        "Id": "Id",
        "Pid": "P",
    }
    meta = d(entry_json(ALTERNATIVE_PARTNER, values, BASE))["__metadata"]
    assert meta == {
        "id": BASE + "AlternativePartners(Hexagency='4167656E637958595A',"
        "Hexscheme='536368656D65',Hexid='4964')",
        "uri": meta["id"],
        "type": "com.sap.hci.api.AlternativePartner",
    }


def test_uri_percent_encodes_key_text_and_decodes_back_to_the_key() -> None:
    values = {"Pid": "P 1/x?#%", "Id": "ü'd", "Value": "v"}
    uri = d(entry_json(STRING_PARAMETER, values, BASE))["__metadata"]["uri"]
    assert uri == BASE + "StringParameters(Pid='P%201%2Fx%3F%23%25',Id='%C3%BC''d')"
    predicate = unquote(uri[len(BASE + "StringParameters(") : -1])
    assert parse_key(STRING_PARAMETER, predicate) == {"Pid": "P 1/x?#%", "Id": "ü'd"}


def test_select_limits_properties_and_does_not_force_keys() -> None:
    entry = d(entry_json(STRING_PARAMETER, STRING_PARAM, BASE, select=["Value"]))
    assert list(entry) == ["__metadata", "Value"]
    assert entry["__metadata"]["uri"].endswith("(Pid='PartnerZ',Id='ReceiverAddress')")


def test_select_keeps_metadata_order_and_star_means_all() -> None:
    entry = d(entry_json(STRING_PARAMETER, STRING_PARAM, BASE, select=["Value", "Pid"]))
    assert list(entry) == ["__metadata", "Pid", "Value"]
    entry = d(entry_json(STRING_PARAMETER, STRING_PARAM, BASE, select=["*"]))
    assert list(entry)[1:] == list(STRING_PARAMETER.property_names)


def test_feed_shape_with_count_as_string_and_next() -> None:
    rows = [STRING_PARAM, {**STRING_PARAM, "Id": "Other"}]
    next_url = BASE + "StringParameters?$skiptoken=1000"
    feed = d(feed_json(STRING_PARAMETER, rows, BASE, count=1234, next_url=next_url))
    assert list(feed) == ["results", "__count", "__next"]
    assert feed["__count"] == "1234"
    assert feed["__next"] == next_url
    assert [r["Id"] for r in feed["results"]] == ["ReceiverAddress", "Other"]
    assert feed["results"][0] == d(entry_json(STRING_PARAMETER, STRING_PARAM, BASE))


def test_feed_without_count_or_next_has_results_only() -> None:
    assert json.loads(feed_json(PARTNER, iter([]), BASE)) == {"d": {"results": []}}
    assert d(feed_json(PARTNER, [], BASE, count=0)) == {"results": [], "__count": "0"}


def test_feed_select_applies_to_every_row() -> None:
    rows = [{"Pid": f"P{i}", "User": f"u{i}"} for i in range(3)]
    feed = d(feed_json(AUTHORIZED_USER, rows, BASE, select=["Pid"]))
    assert [list(r) for r in feed["results"]] == [["__metadata", "Pid"]] * 3


def test_count_text() -> None:
    assert count_text(0) == b"0"
    assert count_text(1572864) == b"1572864"


def test_error_body_shape() -> None:
    with pytest.raises(BadRequest) as info:
        parse_entity_json(STRING_PARAMETER, b'{"Nope": 1}')
    body = json.loads(error_json(info.value.code, info.value.message))
    assert body == {
        "error": {
            "code": "Bad Request",
            "message": {
                "lang": "en",
                "value": "Property 'Nope' does not exist in type com.sap.hci.api.StringParameter",
            },
        }
    }


# -- values both ways ----------------------------------------------------------------------


def test_every_edm_type_round_trips() -> None:
    entry = d(entry_json(SAMPLE, SAMPLE_VALUES, BASE))
    assert entry["Big"] == "9223372036854775807"
    assert entry["Small"] == -2147483648
    assert entry["Flag"] is True
    assert entry["When"] == "/Date(1615893907916)/"
    assert parse_entity_json(SAMPLE, entry_json(SAMPLE, SAMPLE_VALUES, BASE)) == SAMPLE_VALUES


def test_nulls_round_trip() -> None:
    nulls: dict[str, object] = {name: None for name in SAMPLE.property_names if name != "Key"}
    values = {"Key": "k", **nulls}
    entry = d(entry_json(SAMPLE, values, BASE))
    assert all(entry[name] is None for name in nulls)
    assert parse_entity_json(SAMPLE, entry_json(SAMPLE, values, BASE)) == values


def test_binary_is_standard_base64() -> None:
    entry = d(entry_json(BINARY_PARAMETER, {"Pid": "P", "Id": "I", "Value": b"\xfb\xff"}, BASE))
    assert entry["Value"] == "+/8="


def test_binary_accepts_memoryview_from_the_store() -> None:
    values = {"Pid": "P", "Id": "I", "Value": memoryview(b"abc")}
    assert d(entry_json(BINARY_PARAMETER, values, BASE))["Value"] == "YWJj"


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("", b""),
        ("+/8=", b"\xfb\xff"),
        ("-_8=", b"\xfb\xff"),
        ("-_8", b"\xfb\xff"),
        ("AAE", b"\x00\x01"),
        ("AAE=", b"\x00\x01"),
        ("PHhzOnNjaGVtYS8+", b"<xs:schema/>"),
    ],
)
def test_binary_reads_standard_and_url_safe_base64(text: str, data: bytes) -> None:
    assert parse_entity_json(BINARY_PARAMETER, json.dumps({"Value": text}).encode()) == {
        "Value": data
    }


@pytest.mark.parametrize(
    "text",
    ["not base64!", "A", "AAE=x", "+/8", "+_8=", "AAF=", "AA E=", "AAE=\n", "====", "A=A=", "é"],
)
def test_bad_base64_names_the_property(text: str) -> None:
    message = bad(BINARY_PARAMETER, json.dumps({"Value": text}).encode())
    assert "'Value'" in message
    assert "base64" in message


def test_datetime_keeps_milliseconds_and_drops_finer_digits() -> None:
    values = {"User": "u", "CreatedTime": datetime(2021, 3, 16, 11, 25, 7, 916999)}
    entry = d(entry_json(AUTHORIZED_USER, values, BASE))
    assert entry["CreatedTime"] == "/Date(1615893907916)/"
    parsed = parse_entity_json(AUTHORIZED_USER, b'{"CreatedTime": "/Date(1615893907916)/"}')
    assert parsed["CreatedTime"] == datetime(2021, 3, 16, 11, 25, 7, 916000)


def test_datetime_before_1970_and_aware_values() -> None:
    before = datetime(1969, 12, 31, 23, 59, 59, 999000)
    entry = d(entry_json(AUTHORIZED_USER, {"User": "u", "CreatedTime": before}, BASE))
    assert entry["CreatedTime"] == "/Date(-1)/"
    assert parse_entity_json(AUTHORIZED_USER, b'{"CreatedTime":"/Date(-1)/"}') == {
        "CreatedTime": before
    }
    aware = datetime(2021, 3, 16, 12, 25, 7, 916000, tzinfo=timezone(timedelta(hours=1)))
    entry = d(entry_json(AUTHORIZED_USER, {"User": "u", "CreatedTime": aware}, BASE))
    assert entry["CreatedTime"] == "/Date(1615893907916)/"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/Date(1615893907916)/", datetime(2021, 3, 16, 11, 25, 7, 916000)),
        ("/Date(1615893907916+0060)/", datetime(2021, 3, 16, 12, 25, 7, 916000)),
        ("/Date(1615893907916-0030)/", datetime(2021, 3, 16, 10, 55, 7, 916000)),
        ("2021-03-16T11:25:07.916", datetime(2021, 3, 16, 11, 25, 7, 916000)),
        ("2021-03-16T11:25:07.9169999", datetime(2021, 3, 16, 11, 25, 7, 916000)),
        ("2021-03-16T11:25:07", datetime(2021, 3, 16, 11, 25, 7)),
        ("2021-03-16T11:25", datetime(2021, 3, 16, 11, 25)),
        ("2021-03-16T11:25:07.5Z", datetime(2021, 3, 16, 11, 25, 7, 500000)),
        ("2021-03-16T12:25:07+01:00", datetime(2021, 3, 16, 11, 25, 7)),
        ("2021-03-16T00:30:00-01:00", datetime(2021, 3, 16, 1, 30)),
    ],
)
def test_datetime_reads_json_date_and_iso_8601(text: str, expected: datetime) -> None:
    body = json.dumps({"CreatedTime": text}).encode()
    assert parse_entity_json(AUTHORIZED_USER, body) == {"CreatedTime": expected}


def test_escaped_slashes_in_json_date_are_the_same_text() -> None:
    body = b'{"CreatedTime": "\\/Date(0)\\/"}'
    assert parse_entity_json(AUTHORIZED_USER, body) == {"CreatedTime": datetime(1970, 1, 1)}


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "/Date()/",
        "/Date(12.5)/",
        "/Date(1+60)/",
        "/Date(99999999999999999999)/",
        "2021-03-16",
        "2021-02-30T00:00:00",
        "2021-03-16T25:00:00",
        "2021-03-16 11:25:07",
        "0001-01-01T00:00:00+01:00",
        "２０２１-03-16T11:25:07",
    ],
)
def test_bad_datetime_names_the_property(text: str) -> None:
    message = bad(AUTHORIZED_USER, json.dumps({"CreatedTime": text}).encode())
    assert "'CreatedTime'" in message


def test_int64_reads_strings_and_numbers() -> None:
    read = parse_entity_json(CERTIFICATE_USER_MAPPING, b'{"ValidUntil": "1616343770463"}')
    assert read == {"ValidUntil": 1616343770463}
    read = parse_entity_json(CERTIFICATE_USER_MAPPING, b'{"ValidUntil": -5}')
    assert read == {"ValidUntil": -5}
    assert parse_entity_json(SAMPLE, b'{"Small": "7", "Big": "-9223372036854775808"}') == {
        "Small": 7,
        "Big": -(2**63),
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"Big": "9223372036854775808"}', "Edm.Int64"),
        (b'{"Big": 1.5}', "Edm.Int64"),
        (b'{"Big": 1e3}', "Edm.Int64"),
        (b'{"Big": "12L"}', "Edm.Int64"),
        (b'{"Big": " 12"}', "Edm.Int64"),
        (b'{"Big": "\xd9\xa1"}', "Edm.Int64"),
        (b'{"Big": true}', "Edm.Int64"),
        (b'{"Small": 2147483648}', "Edm.Int32"),
        (b'{"Flag": "true"}', "Edm.Boolean"),
        (b'{"Flag": 1}', "Edm.Boolean"),
        (b'{"Text": 5}', "Edm.String"),
        (b'{"Text": ["a"]}', "Edm.String"),
        (b'{"Text": {"a": 1}}', "Edm.String"),
        (b'{"Text": false}', "Edm.String"),
        (b'{"Blob": 5}', "Edm.Binary"),
        (b'{"When": 1615893907916}', "Edm.DateTime"),
    ],
)
def test_wrong_json_type_names_property_and_expected_type(body: bytes, expected: str) -> None:
    message = bad(SAMPLE, body)
    name = next(iter(json.loads(body)))
    assert f"'{name}'" in message
    assert expected in message


# -- body structure ----------------------------------------------------------------------


def test_reads_bare_object_and_d_wrapper_and_ignores_metadata() -> None:
    bare = b'{"Pid": "PartnerZ", "Id": "X", "Value": "v"}'
    wrapped = (
        b'{"d": {"__metadata": {"type": "com.sap.hci.api.StringParameter"},'
        b' "Pid": "PartnerZ", "Id": "X", "Value": "v"}}'
    )
    expected = {"Pid": "PartnerZ", "Id": "X", "Value": "v"}
    assert parse_entity_json(STRING_PARAMETER, bare) == expected
    assert parse_entity_json(STRING_PARAMETER, wrapped) == expected


def test_returns_only_what_the_body_holds() -> None:
    assert parse_entity_json(STRING_PARAMETER, b'{"Value": "new"}') == {"Value": "new"}
    assert parse_entity_json(STRING_PARAMETER, b"{}") == {}


def test_utf8_with_bom_is_read() -> None:
    body = "\ufeff" + '{"Value": "Grüße"}'
    assert parse_entity_json(STRING_PARAMETER, body.encode()) == {"Value": "Grüße"}


def test_unknown_property_is_named() -> None:
    message = bad(STRING_PARAMETER, b'{"Pid": "P", "Colour": "red"}')
    assert "'Colour'" in message
    assert "com.sap.hci.api.StringParameter" in message


def test_d_wrapper_with_siblings_is_not_unwrapped() -> None:
    assert "'d'" in bad(STRING_PARAMETER, b'{"d": {"Pid": "P"}, "Id": "x"}')


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"Pid": "P",}',
        b"{'Pid': 'P'}",
        b'{"Pid": "P"} trailing',
        b'{"Big": NaN}',
        b'{"Big": Infinity}',
    ],
)
def test_malformed_json(body: bytes) -> None:
    assert bad(SAMPLE, body).startswith("Invalid JSON")


def test_non_utf8_body() -> None:
    assert "UTF-8" in bad(STRING_PARAMETER, '{"Value": "Grüße"}'.encode("latin-1"))


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"42", b"null", b'{"d": []}', b"true"])
def test_non_object(body: bytes) -> None:
    assert "expected an object" in bad(STRING_PARAMETER, body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"Pid": "a", "Pid": "b"}',
        b'{"d": {"Value": "a", "Value": "b"}}',
        b'{"__metadata": {"type": "x", "type": "y"}, "Pid": "a"}',
    ],
)
def test_duplicate_names_are_refused(body: bytes) -> None:
    assert "appears twice" in bad(STRING_PARAMETER, body)


def test_deep_nesting_is_a_bad_request_not_a_crash() -> None:
    body = b'{"Value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert bad(STRING_PARAMETER, body).startswith("Invalid JSON")


def test_lone_surrogate_is_refused() -> None:
    assert "'Value'" in bad(STRING_PARAMETER, b'{"Value": "a\\ud800b"}')


def test_unknown_name_with_lone_surrogate_still_gives_a_utf8_error_body() -> None:
    message = bad(STRING_PARAMETER, b'{"\\udc80x": 1}')
    error_json("Bad Request", message).decode("utf-8")


def test_huge_integer_text_is_a_bad_request() -> None:
    body = b'{"Big": ' + b"9" * 5000 + b"}"
    bad(SAMPLE, body)


# -- a real client: pyodata's Edm traits --------------------------------------------------


def test_pyodata_reads_our_values() -> None:
    entry = d(entry_json(SAMPLE, SAMPLE_VALUES, BASE))
    when = EdmDateTimeTypTraits().from_json(entry["When"])
    assert when == SAMPLE_VALUES["When"].replace(tzinfo=UTC)  # type: ignore[union-attr]
    assert EdmLongIntTypTraits().from_json(entry["Big"]) == SAMPLE_VALUES["Big"]


def test_we_read_what_pyodata_sends() -> None:
    when = datetime(2021, 3, 16, 11, 25, 7, 916000, tzinfo=UTC)
    body = json.dumps(
        {"When": EdmDateTimeTypTraits().to_json(when), "Big": EdmLongIntTypTraits().to_json(42)}
    ).encode()
    assert parse_entity_json(SAMPLE, body) == {"When": when.replace(tzinfo=None), "Big": 42}


# -- content negotiation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "format_option", "expected"),
    [
        (None, None, "atom"),
        ("", None, "atom"),
        ("*/*", None, "atom"),
        ("application/json", None, "json"),
        ("application/json;odata=verbose", None, "json"),
        ("Application/JSON; charset=utf-8", None, "json"),
        ("application/atom+xml", None, "atom"),
        ("application/xml", None, "atom"),
        ("application/json, application/xml", None, "json"),
        ("application/xml, application/json", None, "atom"),
        ("application/json;q=0.5, application/xml", None, "atom"),
        ("application/xml;q=0.5, application/json", None, "json"),
        ("application/json;q=0, */*", None, "atom"),
        ("*/*;q=0.1, application/json", None, "json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None, "atom"),
        ("text/html", None, "atom"),
        ("application/json;q=oops, application/xml", None, "atom"),
        (None, "json", "json"),
        ("application/atom+xml", "json", "json"),
        ("application/json", "atom", "atom"),
        ("application/json", "xml", "atom"),
        (None, "JSON", "json"),
        (None, "application/json", "json"),
    ],
)
def test_negotiate(accept: str | None, format_option: str | None, expected: str) -> None:
    assert negotiate(accept, format_option) == expected


def test_unknown_format_option_is_not_acceptable() -> None:
    with pytest.raises(ODataError) as info:
        negotiate("application/json", "csv")
    assert info.value.status == 406
    assert "'csv'" in info.value.message

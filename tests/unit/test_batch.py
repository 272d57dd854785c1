"""``$batch`` parse and serialise: SAP's documented example, pyodata's own bytes, and
every malformed body we refuse.

Sources: SAP-doc "Mass Create/Change/Delete Operations in One Transaction for
StringParameter, BinaryParameter, AlternativePartner, and AuthorizedUser" (loio
fe81049e51af492bbd30c4591e2aa6f8); RFC 2046 §5.1; [MS-ODATA] §2.2.7.6.
"""

from __future__ import annotations

import email.parser
import json
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pyodata
import pytest
from pyodata.exceptions import HttpError

from partnergate.model.entities import ENTITY_TYPES
from partnergate.odata.batch import (
    BatchPart,
    BatchResponse,
    ChangeSet,
    Headers,
    parse_batch,
    serialize_batch,
)
from partnergate.odata.errors import BadRequest
from partnergate.odata.paths import parse_resource

# The request exactly as SAP's page shows it, from its Content-type line on (bare LF).
SAP_CONTENT_TYPE = "multipart/mixed; boundary=batch_34fcd829-64e4-4139-b880-f24aa4ee9235"
SAP_REQUEST = b"""--batch_34fcd829-64e4-4139-b880-f24aa4ee9235
Content-Type: multipart/mixed; boundary=changeset_845b320f-7f06-423d-b10a-a24048a27b1c
--changeset_845b320f-7f06-423d-b10a-a24048a27b1c
Content-Type: application/http
Content-Transfer-Encoding: binary

POST StringParameters?user=userAbc HTTP/1.1
Content-Length: 46
Accept: application/json
content-type: application/json

{"Pid":"partner7","Id":"sp11","Value":"sp11v"}
--changeset_845b320f-7f06-423d-b10a-a24048a27b1c
Content-Type: application/http
Content-Transfer-Encoding: binary

POST StringParameters?user=userAbc HTTP/1.1
Content-Length: 46
Accept: application/json
content-type: application/json

{"Pid":"partner7","Id":"sp12","Value":"sp12v"}
--changeset_845b320f-7f06-423d-b10a-a24048a27b1c
Content-Type: application/http
Content-Transfer-Encoding: binary

PUT StringParameters(Pid='partner2',Id='sp3')?user=AriabaUserId HTTP/1.1
Content-Length: 53
Accept: application/json
content-type: application/json

{"Value":"sp3v_modified"}
--changeset_845b320f-7f06-423d-b10a-a24048a27b1c--
--batch_34fcd829-64e4-4139-b880-f24aa4ee9235--
"""

# SAP's documented answer to it, from the same page (trailing blank after the last line).
SAP_RESPONSE = """--batch_46440294-4efe-4c78-8d38-6414e44382d0
Content-Type: multipart/mixed; boundary=changeset_8a1989b1-9382-446c-8479-f9330108b1f4
--changeset_8a1989b1-9382-446c-8479-f9330108b1f4
Content-Type: application/http
Content-Transfer-Encoding: binary
HTTP/1.1 201 Created
DataServiceVersion: 2.0
Location: https://<host address>/api/v1/StringParameters(Pid='partner7',Id='sp11')
Content-Type: application/json
Content-Length: 328

{"d":{"__metadata":{"id":"https://<host address>/api/v1/StringParameters(Pid='partner7',Id='sp11')","uri":"https://<host address>/api/v1/StringParameters(Pid='partner7',Id='sp11')","type":"pd.StringParameter"},"Pid":"partner7","Id":"sp11","LastModifiedBy":"userAbc","LastModifiedTime":null,"CreatedBy":"userAbc","CreatedTime":null,"Value":"sp11v"}}
--changeset_8a1989b1-9382-446c-8479-f9330108b1f4
Content-Type: application/http
Content-Transfer-Encoding: binary
HTTP/1.1 201 Created
DataServiceVersion: 2.0
Location: https://<host address>/api/v1/StringParameters(Pid='partner7',Id='sp12')
Content-Type: application/json
Content-Length: 328

{"d":{"__metadata":{"id":"https://<host address>/api/v1/StringParameters(Pid='partner7',Id='sp12')","uri":"https://<host address>/api/v1/StringParameters(Pid='partner7',Id='sp12')","type":"pd.StringParameter"},"Pid":"partner7","Id":"sp12","LastModifiedBy":"userAbc","LastModifiedTime":null,"CreatedBy":"userAbc","CreatedTime":null,"Value":"sp12v"}}
--changeset_8a1989b1-9382-446c-8479-f9330108b1f4
Content-Type: application/http
Content-Transfer-Encoding: binary
HTTP/1.1 204 No Content
DataServiceVersion: 2.0
--changeset_8a1989b1-9382-446c-8479-f9330108b1f4--
--batch_46440294-4efe-4c78-8d38-6414e44382d0-- \n"""  # noqa: E501 (SAP's lines, verbatim)

HOST = "https://<host address>/api/v1/"


def _created(pid: str, pid_id: str, value: str) -> BatchResponse:
    """The 201 SAP shows for a StringParameter created in a batch."""
    uri = f"{HOST}StringParameters(Pid='{pid}',Id='{pid_id}')"
    entity = {
        "__metadata": {"id": uri, "uri": uri, "type": "pd.StringParameter"},
        "Pid": pid,
        "Id": pid_id,
        "LastModifiedBy": "userAbc",
        "LastModifiedTime": None,
        "CreatedBy": "userAbc",
        "CreatedTime": None,
        "Value": value,
    }
    body = json.dumps({"d": entity}, separators=(",", ":")).encode()
    return BatchResponse(201, {"Location": uri, "Content-Type": "application/json"}, body)


def _only(items: list[BatchPart | ChangeSet]) -> ChangeSet:
    assert len(items) == 1 and isinstance(items[0], ChangeSet)
    return items[0]


# --------------------------------------------------------------------- SAP's example


def test_parses_sap_documented_request() -> None:
    change_set = _only(parse_batch(SAP_CONTENT_TYPE, SAP_REQUEST))
    methods_urls = [(p.method, p.url) for p in change_set.parts]
    assert methods_urls == [
        ("POST", "StringParameters?user=userAbc"),
        ("POST", "StringParameters?user=userAbc"),
        ("PUT", "StringParameters(Pid='partner2',Id='sp3')?user=AriabaUserId"),
    ]
    first, _, put = change_set.parts
    assert json.loads(first.body) == {"Pid": "partner7", "Id": "sp11", "Value": "sp11v"}
    assert first.headers["Content-Type"] == "application/json"  # sent as content-type
    assert first.content_id is None
    # SAP's page declares Content-Length 53 for this 25-byte body: the delimiter wins.
    assert put.headers["content-length"] == "53"
    assert put.body == b'{"Value":"sp3v_modified"}'


def test_sap_request_with_crlf_parses_the_same() -> None:
    crlf = SAP_REQUEST.replace(b"\n", b"\r\n")
    assert parse_batch(SAP_CONTENT_TYPE, crlf) == parse_batch(SAP_CONTENT_TYPE, SAP_REQUEST)


def _normalised_lines(text: str) -> list[str]:
    """Non-empty lines with boundaries and Content-Length values made comparable.

    SAP's page drops the blank lines the MIME and HTTP grammars need, so those are not
    compared; everything else is, in order.
    """
    text = re.sub(r"batch_[0-9a-f-]{36}", "batch_B", text)
    text = re.sub(r"changeset_[0-9a-f-]{36}", "changeset_C", text)
    text = re.sub(r"Content-Length: \d+", "Content-Length: N", text)
    return [line.rstrip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def test_answer_to_sap_example_has_the_lines_of_sap_documented_response() -> None:
    content_type, body = serialize_batch(
        [
            [
                _created("partner7", "sp11", "sp11v"),
                _created("partner7", "sp12", "sp12v"),
                BatchResponse(204),
            ]
        ]
    )
    assert content_type.startswith("multipart/mixed; boundary=batch_")
    assert _normalised_lines(body.decode()) == _normalised_lines(SAP_RESPONSE)


# ---------------------------------------------------------------- pyodata 1.12.1

METADATA = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx"
    xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
  <edmx:DataServices m:DataServiceVersion="2.0">
    <Schema Namespace="com.sap.hci.api" xmlns="http://schemas.microsoft.com/ado/2008/09/edm">
      <EntityType Name="StringParameter">
        <Key><PropertyRef Name="Pid"/><PropertyRef Name="Id"/></Key>
        <Property Name="Pid" Type="Edm.String" Nullable="false" MaxLength="60"/>
        <Property Name="Id" Type="Edm.String" Nullable="false" MaxLength="150"/>
        <Property Name="Value" Type="Edm.String" MaxLength="4000"/>
      </EntityType>
      <EntityContainer Name="EntityContainer" m:IsDefaultEntityContainer="true">
        <EntitySet Name="StringParameters" EntityType="com.sap.hci.api.StringParameter"/>
      </EntityContainer>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
"""


class _Wire:
    """Stands in for pyodata's requests.Session: what pyodata sends goes through
    ``parse_batch``, ``answer`` turns the parsed items into responses, and those go
    back through ``serialize_batch``."""

    def __init__(self, answer: Callable[[list[BatchPart | ChangeSet]], list[Any]]) -> None:
        self.answer = answer
        self.parsed: list[BatchPart | ChangeSet] = []

    def request(
        self, method: str, url: str, headers: dict[str, str], params: str, data: str
    ) -> SimpleNamespace:
        assert (method, url) == ("POST", HOST + "$batch")
        self.parsed = parse_batch(headers["Content-Type"], data.encode("utf-8"))
        content_type, body = serialize_batch(self.answer(self.parsed))
        return SimpleNamespace(
            url=url, status_code=202, headers={"Content-Type": content_type}, content=body
        )


def _pyodata_batch(wire: _Wire) -> Any:
    """GET one parameter, then a change set creating one and updating another."""
    client = pyodata.Client(HOST, wire, metadata=METADATA.encode())
    params = client.entity_sets.StringParameters
    batch = client.create_batch("1111_2222_3333")
    batch.add_request(params.get_entity(Pid="partner1", Id="sp1"))
    change_set = client.create_changeset("4444_5555_6666")
    change_set.add_request(params.create_entity().set(Pid="partner7", Id="sp11", Value="v"))
    update = params.update_entity(Pid="partner2", Id="sp3", method="PUT").set(Value="w")
    change_set.add_request(update)
    batch.add_request(change_set)
    return batch


def test_parses_what_pyodata_sends() -> None:
    batch = _pyodata_batch(_Wire(lambda items: []))
    content_type = batch.get_headers()["Content-Type"]
    assert content_type == "multipart/mixed;boundary=batch_1111_2222_3333"
    items = parse_batch(content_type, batch.get_body().encode())

    assert len(items) == 2
    get, change_set = items
    assert isinstance(get, BatchPart) and isinstance(change_set, ChangeSet)
    # pyodata percent-encodes the key predicate; the URL stays as written.
    assert get.method == "GET"
    assert get.url == "StringParameters%28Pid%3D%27partner1%27%2CId%3D%27sp1%27%29"
    assert get.body == b""
    create, update = change_set.parts
    assert (create.method, create.url) == ("POST", "StringParameters")
    assert create.headers["x-requested-with"] == "X"
    assert json.loads(create.body) == {"Pid": "partner7", "Id": "sp11", "Value": "v"}
    assert update.method == "PUT"
    assert json.loads(update.body) == {"Value": "w"}


def test_pyodata_reads_our_answer() -> None:
    def answer(items: list[BatchPart | ChangeSet]) -> list[Any]:
        got = {"d": {"Pid": "partner1", "Id": "sp1", "Value": "one"}}
        ok = BatchResponse(200, {"Content-Type": "application/json"}, json.dumps(got).encode())
        return [ok, [_created("partner7", "sp11", "v"), BatchResponse(204)]]

    wire = _Wire(answer)
    got, (created, updated) = _pyodata_batch(wire).execute()
    assert (got.Pid, got.Id, got.Value) == ("partner1", "sp1", "one")
    assert (created.Pid, created.Id, created.Value) == ("partner7", "sp11", "v")
    assert updated is None


def test_pyodata_sees_failed_change_set_as_one_response() -> None:
    error = BatchResponse(
        400, {"Content-Type": "application/json"}, b'{"error":{"code":"Bad Request"}}'
    )

    def answer(items: list[BatchPart | ChangeSet]) -> list[Any]:
        ok = BatchResponse(200, {"Content-Type": "application/json"}, b'{"d":{}}')
        return [ok, [_created("partner7", "sp11", "v"), error]]

    with pytest.raises(HttpError, match="single response received, status code: 400"):
        _pyodata_batch(_Wire(answer)).execute()


# ------------------------------------------------------------------------- round trip


def test_serialised_answer_parses_as_mime_with_matching_structure() -> None:
    ok = BatchResponse(200, {"Content-Type": "application/json"}, b'{"d":{"results":[]}}')
    created = BatchResponse(201, {"Location": "StringParameters(Pid='a',Id='b')"}, b"{}")
    created.content_id = "1"
    content_type, body = serialize_batch([ok, [created, BatchResponse(204)]])

    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    first, change_set = message.get_payload()
    assert first.get_content_type() == "application/http"
    assert first["Content-Transfer-Encoding"] == "binary"
    assert first.get_payload().startswith("HTTP/1.1 200 OK\r\nDataServiceVersion: 2.0\r\n")
    assert first.get_payload().endswith("Content-Length: 20\r\n\r\n" + '{"d":{"results":[]}}')
    inner = change_set.get_payload()
    assert [part["Content-ID"] for part in inner] == ["1", None]
    assert inner[0].get_payload().startswith("HTTP/1.1 201 Created\r\n")
    assert inner[1].get_payload() == "HTTP/1.1 204 No Content\r\nDataServiceVersion: 2.0\r\n\r\n"


def test_failed_change_set_is_answered_by_its_error_alone() -> None:
    error = BatchResponse(404, {"Content-Type": "application/json"}, b"{}")
    _, body = serialize_batch([[BatchResponse(204), error, BatchResponse(204)]])
    assert b"changeset_" not in body
    assert body.count(b"HTTP/1.1 ") == 1
    assert b"HTTP/1.1 404 Not Found\r\n" in body


def test_error_response_in_place_of_change_set() -> None:
    error = BatchResponse(400, {}, b"x")
    assert b"HTTP/1.1 400 Bad Request\r\n" in serialize_batch([error])[1]


def test_request_round_trip_through_own_serialisation() -> None:
    """Write a request batch with the same framing we answer with, and read it back."""
    parts = [
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"GET AlternativePartners?$filter=Pid%20eq%20'p' HTTP/1.1\r\nAccept: application/json"
        b"\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=cs\r\n\r\n--cs\r\n"
        b"Content-Type: application/http\r\nContent-ID: 7\r\n\r\n"
        b"DELETE BinaryParameters(Pid='p',Id='b') HTTP/1.1\r\n\r\n--cs--",
    ]
    body = b"".join(b"--b\r\n" + part + b"\r\n" for part in parts) + b"--b--\r\n"
    get, change_set = parse_batch('multipart/mixed; boundary="b"', body)
    assert isinstance(get, BatchPart) and isinstance(change_set, ChangeSet)
    assert get.url == "AlternativePartners?$filter=Pid%20eq%20'p'"
    assert get.body == b""
    (delete,) = change_set.parts
    assert (delete.method, delete.url, delete.content_id) == (
        "DELETE",
        "BinaryParameters(Pid='p',Id='b')",
        "7",
    )


def test_fresh_boundaries_each_time() -> None:
    one = serialize_batch([BatchResponse(204)])[0]
    two = serialize_batch([BatchResponse(204)])[0]
    assert one != two


# ----------------------------------------------------------------------- leniency


def _batch(*parts: bytes, boundary: bytes = b"b") -> bytes:
    delimiter = b"--" + boundary
    return b"".join(delimiter + b"\r\n" + p + b"\r\n" for p in parts) + delimiter + b"--\r\n"


def _get(url: bytes = b"Partners", extra: bytes = b"") -> bytes:
    return b"Content-Type: application/http\r\n" + extra + b"\r\nGET " + url + b" HTTP/1.1\r\n\r\n"


def _change_set(*requests: bytes, boundary: bytes = b"cs") -> bytes:
    head = b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n"
    return head + _batch(*requests, boundary=boundary).rstrip(b"\r\n")


def _change(line: bytes, body: bytes = b"", mime: bytes = b"") -> bytes:
    return b"Content-Type: application/http\r\n" + mime + b"\r\n" + line + b"\r\n\r\n" + body


def test_preamble_epilogue_and_transport_padding() -> None:
    body = b"preamble text\r\n" + _batch(_get()).replace(b"--b\r\n", b"--b  \r\n", 1)
    body += b"epilogue\r\n--b\r\nnot a part\r\n"
    (part,) = parse_batch("multipart/mixed; boundary=b", body)
    assert isinstance(part, BatchPart) and part.url == "Partners"


def test_content_id_in_inner_headers_and_folded_header() -> None:
    request = b"POST Partners HTTP/1.1\r\nContent-ID: 1\r\nX-Long: a\r\n  b\r\n\r\n{}"
    change_set = _only(
        parse_batch(
            "multipart/mixed;boundary=b",
            _batch(_change_set(b"Content-Type: application/http\r\n\r\n" + request)),
        )
    )
    (part,) = change_set.parts
    assert part.content_id == "1"
    assert part.headers["x-long"] == "a b"


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    headers = Headers([("Accept", "a"), ("ACCEPT", "b"), ("If-Match", "*")])
    assert headers["accept"] == "a, b"
    assert "if-match" in headers and "IF-MATCH" in headers
    assert headers.raw[1] == ("ACCEPT", "b")
    assert dict(headers) == {"accept": "a, b", "if-match": "*"}


def test_body_keeps_its_own_line_breaks() -> None:
    body = b'{"Value":"line1\r\nline2"}\r\n'
    change_set = _only(
        parse_batch(
            "multipart/mixed; boundary=b",
            _batch(_change_set(_change(b"PUT StringParameters(Pid='a',Id='b') HTTP/1.1", body))),
        )
    )
    assert change_set.parts[0].body == body


def test_empty_lines_before_request_line_are_skipped() -> None:
    part = b"Content-Type: application/http\r\n\r\n\r\nGET Partners HTTP/1.1\r\n"
    (item,) = parse_batch("multipart/mixed; boundary=b", _batch(part))
    assert isinstance(item, BatchPart) and item.method == "GET"


# ----------------------------------------------------------------- malformed input

MALFORMED = {
    "no content type": ("", _batch(_get())),
    "not multipart": ("application/json", _batch(_get())),
    "no boundary": ("multipart/mixed", _batch(_get())),
    "boundary too long": ("multipart/mixed; boundary=" + "x" * 71, _batch(_get())),
    "bad content type syntax": ("multipart/mixed; boundary", _batch(_get())),
    "no delimiter": ("multipart/mixed; boundary=b", b"GET Partners HTTP/1.1\r\n"),
    "missing closing delimiter": ("multipart/mixed; boundary=b", _batch(_get())[:-7]),
    "no parts": ("multipart/mixed; boundary=b", b"--b--\r\n"),
    "other boundary": ("multipart/mixed; boundary=a", _batch(_get())),
    "part without content type": ("multipart/mixed; boundary=b", _batch(b"\r\nGET X HTTP/1.1")),
    "part of wrong type": (
        "multipart/mixed; boundary=b",
        _batch(b"Content-Type: text/plain\r\n\r\nGET X HTTP/1.1"),
    ),
    "base64 transfer encoding": (
        "multipart/mixed; boundary=b",
        _batch(_get(extra=b"Content-Transfer-Encoding: base64\r\n")),
    ),
    "bad request line": (
        "multipart/mixed; boundary=b",
        _batch(b"Content-Type: application/http\r\n\r\nGET Partners\r\n"),
    ),
    "lower-case method": (
        "multipart/mixed; boundary=b",
        _batch(b"Content-Type: application/http\r\n\r\nget Partners HTTP/1.1\r\n"),
    ),
    "HTTP/2 request line": (
        "multipart/mixed; boundary=b",
        _batch(b"Content-Type: application/http\r\n\r\nGET Partners HTTP/2\r\n"),
    ),
    "unknown method": (
        "multipart/mixed; boundary=b",
        _batch(_change_set(_change(b"OPTIONS Partners HTTP/1.1"))),
    ),
    "empty request part": (
        "multipart/mixed; boundary=b",
        _batch(b"Content-Type: application/http"),
    ),
    "malformed inner header": (
        "multipart/mixed; boundary=b",
        _batch(b"Content-Type: application/http\r\n\r\nGET Partners HTTP/1.1\r\nAccept json\r\n"),
    ),
    "space before colon": (
        "multipart/mixed; boundary=b",
        _batch(b"Content-Type: application/http\r\n\r\nGET Partners HTTP/1.1\r\nAccept : x\r\n"),
    ),
    "GET inside change set": (
        "multipart/mixed; boundary=b",
        _batch(_change_set(_change(b"GET Partners HTTP/1.1"))),
    ),
    "POST outside change set": (
        "multipart/mixed; boundary=b",
        _batch(_change(b"POST Partners HTTP/1.1", b"{}")),
    ),
    "DELETE outside change set": (
        "multipart/mixed; boundary=b",
        _batch(_change(b"DELETE Partners('p') HTTP/1.1")),
    ),
    "nested change set": (
        "multipart/mixed; boundary=b",
        _batch(_change_set(_change_set(_change(b"DELETE Partners('p') HTTP/1.1"), boundary=b"in"))),
    ),
    "change set without boundary": (
        "multipart/mixed; boundary=b",
        _batch(b"Content-Type: multipart/mixed\r\n\r\n--cs\r\n--cs--"),
    ),
    "change set without closing delimiter": (
        "multipart/mixed; boundary=b",
        _batch(
            b"Content-Type: multipart/mixed; boundary=cs\r\n\r\n--cs\r\n"
            + _change(b"POST X HTTP/1.1")
        ),
    ),
    "empty change set": (
        "multipart/mixed; boundary=b",
        _batch(b"Content-Type: multipart/mixed; boundary=cs\r\n\r\n--cs--"),
    ),
    "duplicate Content-ID": (
        "multipart/mixed; boundary=b",
        _batch(
            _change_set(
                _change(b"DELETE Partners('a') HTTP/1.1", mime=b"Content-ID: 1\r\n"),
                _change(b"DELETE Partners('b') HTTP/1.1", mime=b"Content-ID: 1\r\n"),
            )
        ),
    ),
}


@pytest.mark.parametrize("content_type, body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_batch_is_bad_request(content_type: str, body: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_batch(content_type, body)
    assert caught.value.status == 400
    assert caught.value.message


def test_error_names_the_part() -> None:
    body = _batch(_get(), _change_set(_change(b"POST X HTTP/1.1"), _change(b"GET X HTTP/1.1")))
    with pytest.raises(BadRequest, match=r"part 2\.2: GET is not allowed inside a change set"):
        parse_batch("multipart/mixed; boundary=b", body)


def test_too_many_parts() -> None:
    body = _batch(*[_get()] * 4)
    assert len(parse_batch("multipart/mixed; boundary=b", body, max_parts=4)) == 4
    with pytest.raises(BadRequest, match="more than 3 requests"):
        parse_batch("multipart/mixed; boundary=b", body, max_parts=3)


def test_change_set_members_count_towards_the_limit() -> None:
    body = _batch(_get(), _change_set(*[_change(b"DELETE X('a') HTTP/1.1")] * 3))
    with pytest.raises(BadRequest, match="more than 3 requests"):
        parse_batch("multipart/mixed; boundary=b", body, max_parts=3)


def test_default_part_limit_is_5000() -> None:
    body = _batch(*[_get()] * 5001)
    with pytest.raises(BadRequest, match="more than 5000 requests"):
        parse_batch("multipart/mixed; boundary=b", body)


@pytest.mark.parametrize(
    "part",
    [
        _get(extra=b"X-Big: " + b"a" * 20_000 + b"\r\n"),
        b"Content-Type: application/http\r\n\r\nGET P HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n",
        b"Content-Type: application/http\r\n\r\nGET /" + b"a" * 20_000 + b" HTTP/1.1\r\n",
        b"Content-Type: application/http\r\n\r\nGET P HTTP/1.1\r\n" + b"X: 1\r\n" * 101,
    ],
    ids=["mime header", "http header", "request line", "header count"],
)
def test_absurd_headers_are_refused(part: bytes) -> None:
    with pytest.raises(BadRequest, match="header|request line"):
        parse_batch("multipart/mixed; boundary=b", _batch(part))


# --------------------------------------------------------------- serialiser guards


def test_serialiser_refuses_header_injection() -> None:
    with pytest.raises(ValueError):
        serialize_batch([BatchResponse(200, {"Location": "x\r\nX-Evil: 1"}, b"")])
    with pytest.raises(ValueError):
        serialize_batch([BatchResponse(200, {"Bad Name": "x"}, b"")])


def test_serialiser_refuses_body_on_204_and_empty_change_set() -> None:
    with pytest.raises(ValueError):
        serialize_batch([BatchResponse(204, {}, b"x")])
    with pytest.raises(ValueError):
        serialize_batch([[]])


def test_content_length_is_computed_and_dsv_kept_if_given() -> None:
    response = BatchResponse(
        200, {"content-length": "999", "DataServiceVersion": "1.0"}, "é".encode()
    )
    _, body = serialize_batch([response])
    assert b"Content-Length: 2\r\n" in body
    assert b"content-length: 999" not in body
    assert body.count(b"DataServiceVersion") == 1 and b"DataServiceVersion: 1.0" in body


def test_a_part_whose_url_is_not_utf8_parses_and_its_path_is_400() -> None:
    """One rule for path octets: a raw octet in a part's URL is kept percent-encoded, and
    the part, not the whole ``$batch``, is refused when its path is decoded."""
    body = _batch(b"Content-Type: application/http\r\n\r\nGET Partners('\xff') HTTP/1.1\r\n")
    (part,) = parse_batch("multipart/mixed; boundary=b", body)
    assert isinstance(part, BatchPart) and "%FF" in part.url
    with pytest.raises(BadRequest) as caught:
        parse_resource(part.url, ENTITY_TYPES)
    assert caught.value.status == 400

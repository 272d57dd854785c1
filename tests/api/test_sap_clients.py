"""What SAP's own clients rely on: Content-ID in $batch answers, ordering binary
parameters, $format refusals everywhere, and one reading of the request path."""

from __future__ import annotations

import base64
import json
import re
import socket
from urllib.parse import urlsplit

from ..conftest import Api, Server

ENTITY_SETS = [
    "StringParameters",
    "BinaryParameters",
    "AlternativePartners",
    "AuthorizedUsers",
    "UserCredentialParameters",
    "Partners",
    "CertificateUserMappings",
    "CertificateMappingRules",
    "MessageProcessingLogs",
    "MessageProcessingLogAttachments",
]


def send_batch(api: Api, lines: list[str], boundary: str = "batch_sc"):
    body = "\r\n".join([*lines, f"--{boundary}--", ""]).encode()
    return api.post(
        "$batch", content=body, headers={"Content-Type": f"multipart/mixed; boundary={boundary}"}
    )


def query_part(url: str, content_id: str | None = None, boundary: str = "batch_sc") -> list[str]:
    mime = [f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        mime.append(f"Content-ID: {content_id}")
    return [*mime, "", f"GET {url} HTTP/1.1", "Accept: application/json", "", ""]


def change_set(
    operations: list[tuple[str, str, dict | None, str]], boundary: str = "batch_sc"
) -> list[str]:
    inner = "changeset_sc"
    lines = [f"--{boundary}", f"Content-Type: multipart/mixed; boundary={inner}", ""]
    for method, url, body, content_id in operations:
        lines += [
            f"--{inner}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {content_id}",
            "",
            f"{method} {url} HTTP/1.1",
            "Content-Type: application/json",
            "Accept: application/json",
            "",
            json.dumps(body) if body is not None else "",
            "",
        ]
    return [*lines, f"--{inner}--", ""]


def answers(body: bytes) -> list[tuple[str | None, int, bytes]]:
    """Each application/http part of a batch answer: (Content-ID, status, part bytes)."""
    found = []
    for part in re.split(rb"\r\n--[^\r\n]+", body):
        status = re.search(rb"HTTP/1\.1 (\d{3}) ", part)
        if status is None:
            continue
        content_id = re.search(rb"(?im)^Content-ID: *(\S+)\r?$", part.split(b"HTTP/1.1", 1)[0])
        found.append((content_id[1].decode() if content_id else None, int(status[1]), part))
    return found


# -- Content-ID (issue 13; [MS-ODATA] §2.2.7.6.6, OData V2 batch processing) ----------


def test_batch_answers_echo_content_ids(api: Api, pid: str) -> None:
    """SAP Cloud SDK and Olingo match each answer to its request by Content-ID."""
    lines = [
        *query_part(f"StringParameters(Pid='{pid}',Id='missing')", content_id="q1"),
        *change_set(
            [
                ("POST", "StringParameters", {"Pid": pid, "Id": "a", "Value": "1"}, "c1"),
                ("POST", "StringParameters", {"Pid": pid, "Id": "b", "Value": "2"}, "c2"),
            ]
        ),
        *query_part(f"StringParameters(Pid='{pid}',Id='a')", content_id="q2"),
        *query_part(f"StringParameters(Pid='{pid}',Id='b')"),
    ]
    response = send_batch(api, lines)
    assert response.status_code == 202, response.text
    got = [(cid, status) for cid, status, _ in answers(response.content)]
    assert got == [("q1", 404), ("c1", 201), ("c2", 201), ("q2", 200), (None, 200)]


def test_failed_change_set_answers_with_the_failing_content_id(api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "taken", "Value": "v"})
    lines = change_set(
        [
            ("POST", "StringParameters", {"Pid": pid, "Id": "new", "Value": "1"}, "first"),
            ("POST", "StringParameters", {"Pid": pid, "Id": "taken", "Value": "2"}, "second"),
        ]
    )
    response = send_batch(api, lines)
    assert response.status_code == 202
    assert [(cid, status) for cid, status, _ in answers(response.content)] == [("second", 400)]
    assert api.get(f"StringParameters(Pid='{pid}',Id='new')").status_code == 404


# -- $orderby on BinaryParameters (issue 13; SAP's API spec lists $orderby=Value) ------


def test_binary_parameters_order_by_value(api: Api, pid: str) -> None:
    for ident, value in [("x1", b"<b/>"), ("x2", b"<a/>"), ("x3", b"<c/>")]:
        created = api.post(
            "BinaryParameters",
            json={
                "Pid": pid,
                "Id": ident,
                "ContentType": "xml",
                "Value": base64.b64encode(value).decode(),
            },
        )
        assert created.status_code == 201, created.text
    for order, expected in [("Value", ["x2", "x1", "x3"]), ("Value desc", ["x3", "x1", "x2"])]:
        listed = api.get(
            "BinaryParameters", params={"$filter": f"Pid eq '{pid}'", "$orderby": order}
        )
        assert listed.status_code == 200, listed.text
        assert [e["Id"] for e in listed.json()["d"]["results"]] == expected


def test_binary_values_still_cannot_be_compared(api: Api, pid: str) -> None:
    response = api.get("BinaryParameters", params={"$filter": "Value gt Value"})
    assert response.status_code == 400
    assert "Edm.Binary" in response.json()["error"]["message"]["value"]


# -- $format refused alike everywhere (issue 13) ---------------------------------------


def test_unknown_format_is_406_with_an_odata_error_on_every_entity_set(api: Api) -> None:
    for name in ENTITY_SETS:
        response = api.get(name, params={"$format": "bogus"})
        assert response.status_code == 406, (name, response.status_code, response.text)
        assert response.json()["error"]["code"], name
    response = api.get("StringParameters(Pid='P',Id='I')", params={"$format": "bogus"})
    assert response.status_code == 406
    assert response.json()["error"]["message"]["value"]


def test_unknown_format_is_406_in_a_batch_part(api: Api, pid: str) -> None:
    lines = [
        *query_part("StringParameters?$format=bogus", content_id="f1"),
        *query_part("BinaryParameters?$format=bogus", content_id="f2"),
        *change_set(
            [("POST", "StringParameters?$format=bogus", {"Pid": pid, "Id": "f", "Value": "1"}, "w")]
        ),
    ]
    response = send_batch(api, lines)
    assert response.status_code == 202
    parts = answers(response.content)
    assert [(cid, status) for cid, status, _ in parts] == [("f1", 406), ("f2", 406), ("w", 406)]
    for _, _, part in parts:
        assert b'"error"' in part
    assert api.get(f"StringParameters(Pid='{pid}',Id='f')").status_code == 404


# -- one reading of the request path ---------------------------------------------------


def test_line_feed_in_path_gets_an_odata_error(api: Api) -> None:
    paths = ["StringParameters%0A", "String%0AParameters", "StringParameters(Pid='a%0A',Id='b')"]
    for path in paths:
        response = api.get(path)
        assert response.status_code in (400, 404), (path, response.text)
        assert response.headers["content-type"].startswith("application/json"), path
        assert response.json()["error"]["message"]["value"], path


def raw_get(server: Server, target: bytes) -> tuple[int, bytes]:
    """A GET whose request target goes on the wire byte for byte."""
    parts = urlsplit(server.url)
    auth = base64.b64encode(":".join(server.admin).encode())
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
            b"Authorization: Basic " + auth + b"\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_path_octets_read_alike_alone_and_in_batch(server: Server, api: Api, pid: str) -> None:
    """A raw octet and its %XX form are one thing; octets that are not UTF-8 are a 400
    with an OData error, whether the request comes alone or as a $batch part."""
    api.post("StringParameters", json={"Pid": pid, "Id": "e", "Value": "v"})
    alone = {
        b"%FF": api.get("StringParameters(Pid='%FF',Id='e')"),
    }
    for target, response in alone.items():
        assert response.status_code == 400, target
        assert "UTF-8" in response.json()["error"]["message"]["value"]
    status, body = raw_get(server, b"/api/v1/StringParameters(Pid='\xff',Id='e')")
    if status != 400 or b"UTF-8" not in body:
        # an HTTP server may refuse a raw octet before the application sees it
        assert status == 400, body
    lines = [
        *query_part("StringParameters(Pid='%FF',Id='e')", content_id="pct"),
        *query_part(f"StringParameters(Pid='{pid}',Id='%65')", content_id="ok"),
    ]
    raw = "\r\n".join([*lines, "--batch_sc--", ""]).encode()
    raw += b"--batch_sc\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    raw += b"Content-ID: raw\r\n\r\nGET StringParameters(Pid='\xff',Id='e') HTTP/1.1\r\n"
    raw += b"Accept: application/json\r\n\r\n\r\n--batch_sc--\r\n"
    raw = raw.replace(b"--batch_sc--\r\n--batch_sc", b"--batch_sc", 1)
    response = api.post(
        "$batch", content=raw, headers={"Content-Type": "multipart/mixed; boundary=batch_sc"}
    )
    assert response.status_code == 202, response.text
    parts = answers(response.content)
    assert [(cid, status) for cid, status, _ in parts] == [("pct", 400), ("ok", 200), ("raw", 400)]
    assert b"UTF-8" in parts[0][2] and b"UTF-8" in parts[2][2]

"""A client's mistake gets a clear 4xx with an OData error body and changes nothing."""

from __future__ import annotations

import httpx

from ..conftest import Api, Server


def error_text(r: httpx.Response) -> str:
    return r.json()["error"]["message"]["value"]


def assert_nothing_stored(api: Api, pid: str) -> None:
    r = api.get("StringParameters", params={"$filter": f"Pid eq '{pid}'"})
    assert r.json()["d"]["results"] == []


def test_malformed_json(api: Api, pid: str) -> None:
    for body in (
        b'{"Pid": ',
        b"[1,2]",
        b'"text"',
        b"\xff\xfe",
        b'{"Pid":"a","Pid":"b","Id":"x","Value":"v"}',
    ):
        r = api.post("StringParameters", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, body
        assert error_text(r)
    assert_nothing_stored(api, pid)


def test_unknown_property_and_wrong_type(api: Api, pid: str) -> None:
    r = api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "v", "Colour": "red"})
    assert r.status_code == 400 and "Colour" in error_text(r)
    r = api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": 42})
    assert r.status_code == 400 and "Value" in error_text(r)
    r = api.post("StringParameters", json={"Pid": pid, "Id": "A"})
    assert r.status_code == 400 and "Value" in error_text(r)
    r = api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": None})
    assert r.status_code == 400
    assert_nothing_stored(api, pid)


def test_wrong_content_type_is_415(api: Api, pid: str) -> None:
    r = api.post(
        "StringParameters",
        content=b"Pid=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415
    assert_nothing_stored(api, pid)


def test_hostile_xml_is_400(api: Api, pid: str) -> None:
    m = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
    d = "http://schemas.microsoft.com/ado/2007/08/dataservices"
    xxe = (
        '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        f'<entry xmlns="http://www.w3.org/2005/Atom" xmlns:m="{m}" xmlns:d="{d}">'
        '<content type="application/xml"><m:properties>'
        f"<d:Pid>{pid}</d:Pid><d:Id>X</d:Id><d:Value>&x;</d:Value>"
        "</m:properties></content></entry>"
    )
    r = api.post("StringParameters", content=xxe, headers={"Content-Type": "application/atom+xml"})
    assert r.status_code == 400
    assert "root:" not in r.text
    r = api.post(
        "StringParameters",
        content=b"<entry><unclosed>",
        headers={"Content-Type": "application/atom+xml"},
    )
    assert r.status_code == 400
    assert_nothing_stored(api, pid)


def test_bad_key_predicates(api: Api) -> None:
    for path in (
        "StringParameters(Pid='a')",
        "StringParameters(Pid='a',Nope='b')",
        "StringParameters(Pid='a,Id='b')",
        "StringParameters(Pid=a,Id=b)",
        "StringParameters('a')",
        "StringParameters(Pid='a',Id='b'",
    ):
        r = api.get(path)
        assert r.status_code == 400, path
        assert error_text(r)


def test_unknown_entity_set_and_path(api: Api) -> None:
    r = api.get("Nonsense")
    assert r.status_code == 404 and "StringParameters" in error_text(r)
    assert api.get("StringParameters(Pid='a',Id='b')/Value/more").status_code == 404


def test_unsupported_methods_are_405(api: Api, pid: str) -> None:
    assert api.put("StringParameters", json={"Value": "x"}).status_code == 405
    assert api.delete("StringParameters").status_code == 405
    assert api.post("$metadata").status_code == 405
    assert api.get("$batch").status_code == 405


def test_oversized_body_is_413_before_it_is_read(server: Server, pid: str) -> None:
    cap = 8 * 1024 * 1024
    with Api(server) as api:
        r = api.post(
            "BinaryParameters",
            content=b"{" + b" " * (cap + 10) + b"}",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413

        def chunks():
            for _ in range(9):
                yield b" " * (1024 * 1024)

        r = api.post(
            "StringParameters", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413
        assert_nothing_stored(api, pid)

"""StringParameters: create, read, update the Value, delete; keys, limits, audit fields."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

from lxml import etree

from ..conftest import Api

NS = {
    "a": "http://www.w3.org/2005/Atom",
    "m": "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata",
    "d": "http://schemas.microsoft.com/ado/2007/08/dataservices",
}


def test_create_read_update_delete(api: Api, pid: str) -> None:
    before = int(time.time() * 1000) - 1000
    r = api.post(
        "StringParameters", json={"Pid": pid, "Id": "ADDRESS", "Value": "https://r1/cxf/receiver_1"}
    )
    assert r.status_code == 201, r.text
    entity = r.json()["d"]
    location = r.headers["location"]
    assert location.endswith(f"/api/v1/StringParameters(Pid='{pid}',Id='ADDRESS')")
    assert location.startswith("http://")
    assert entity["__metadata"]["type"] == "com.sap.hci.api.StringParameter"
    assert entity["__metadata"]["uri"] == location
    assert entity["Value"] == "https://r1/cxf/receiver_1"
    assert entity["CreatedBy"] == entity["LastModifiedBy"] == api.user
    created = int(re.fullmatch(r"/Date\((\d+)\)/", entity["CreatedTime"]).group(1))
    assert created >= before

    got = api.get(f"StringParameters(Pid='{pid}',Id='ADDRESS')")
    assert got.status_code == 200
    assert got.json()["d"]["Value"] == "https://r1/cxf/receiver_1"

    put = api.put(f"StringParameters(Pid='{pid}',Id='ADDRESS')", json={"Value": "https://r2"})
    assert put.status_code == 204, put.text
    assert put.content == b""
    after = api.get(f"StringParameters(Pid='{pid}',Id='ADDRESS')").json()["d"]
    assert after["Value"] == "https://r2"
    assert after["CreatedTime"] == entity["CreatedTime"]

    assert api.delete(f"StringParameters(Pid='{pid}',Id='ADDRESS')").status_code == 204
    missing = api.get(f"StringParameters(Pid='{pid}',Id='ADDRESS')")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"]


def test_audit_fields_name_the_caller_or_the_user_option(api: Api, pid: str) -> None:
    plain = api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).json()["d"]
    assert plain["CreatedBy"] == plain["LastModifiedBy"] == api.user
    on_behalf = api.post(
        "StringParameters?user=myuser", json={"Pid": pid, "Id": "B", "Value": "1"}
    ).json()["d"]
    assert on_behalf["CreatedBy"] == "myuser" and on_behalf["LastModifiedBy"] == "myuser"
    api.put(f"StringParameters(Pid='{pid}',Id='A')?user=other", json={"Value": "2"})
    changed = api.get(f"StringParameters(Pid='{pid}',Id='A')").json()["d"]
    assert changed["LastModifiedBy"] == "other" and changed["CreatedBy"] == plain["CreatedBy"]


def test_duplicate_key_is_400_and_keeps_the_first(api: Api, pid: str) -> None:
    assert (
        api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "first"}).status_code
        == 201
    )
    r = api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "second"})
    assert r.status_code == 400
    assert "already exists" in r.json()["error"]["message"]["value"]
    assert api.get(f"StringParameters(Pid='{pid}',Id='A')").json()["d"]["Value"] == "first"


def test_value_limit_is_4000_characters(api: Api, pid: str) -> None:
    assert (
        api.post(
            "StringParameters", json={"Pid": pid, "Id": "MAX", "Value": "é" * 4000}
        ).status_code
        == 201
    )
    r = api.post("StringParameters", json={"Pid": pid, "Id": "OVER", "Value": "x" * 4001})
    assert r.status_code == 400
    assert "Value" in r.json()["error"]["message"]["value"]
    assert api.get(f"StringParameters(Pid='{pid}',Id='OVER')").status_code == 404


def test_pid_and_id_charset_and_lengths(api: Api, pid: str) -> None:
    ok = api.post("StringParameters", json={"Pid": pid, "Id": "a-Z.0_~<>@", "Value": "v"})
    assert ok.status_code == 201, ok.text
    cases = [
        ({"Pid": "bad pid", "Id": "A", "Value": "v"}, "Pid"),
        ({"Pid": "bad/pid", "Id": "A", "Value": "v"}, "Pid"),
        ({"Pid": pid, "Id": "bad#id", "Value": "v"}, "Id"),
        ({"Pid": "P" * 61, "Id": "A", "Value": "v"}, "Pid"),
        ({"Pid": pid, "Id": "I" * 1501, "Value": "v"}, "Id"),
        ({"Pid": "", "Id": "A", "Value": "v"}, "Pid"),
    ]
    for body, field in cases:
        r = api.post("StringParameters", json=body)
        assert r.status_code == 400, body
        assert f"'{field}'" in r.json()["error"]["message"]["value"], r.text


def test_id_of_1500_characters_and_quote_in_key(api: Api, pid: str) -> None:
    long_id = "L" * 1500
    assert (
        api.post("StringParameters", json={"Pid": pid, "Id": long_id, "Value": "v"}).status_code
        == 201
    )
    assert api.get(f"StringParameters(Pid='{pid}',Id='{long_id}')").status_code == 200


def test_put_may_change_only_the_value(api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "v"})
    r = api.put(f"StringParameters(Pid='{pid}',Id='A')", json={"Pid": "Other", "Value": "w"})
    assert r.status_code == 400
    same_key = api.put(
        f"StringParameters(Pid='{pid}',Id='A')", json={"Pid": pid, "Id": "A", "Value": "w"}
    )
    assert same_key.status_code == 204
    assert (
        api.put(f"StringParameters(Pid='{pid}',Id='NOPE')", json={"Value": "w"}).status_code == 404
    )


def test_merge_and_x_http_method(api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "v"})
    r = api.request("MERGE", f"StringParameters(Pid='{pid}',Id='A')", json={"Value": "merged"})
    assert r.status_code == 204
    r = api.post(
        f"StringParameters(Pid='{pid}',Id='A')",
        json={"Value": "tunnelled"},
        headers={"X-HTTP-Method": "MERGE"},
    )
    assert r.status_code == 204
    assert api.get(f"StringParameters(Pid='{pid}',Id='A')").json()["d"]["Value"] == "tunnelled"


def test_atom_is_the_default_format(api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "atom <&> value"})
    r = api.get(f"StringParameters(Pid='{pid}',Id='A')", headers={"Accept": "application/atom+xml"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/atom+xml")
    entry = etree.fromstring(r.content)
    assert entry.xpath("a:category/@term", namespaces=NS) == ["com.sap.hci.api.StringParameter"]
    assert entry.xpath("a:content/m:properties/d:Value/text()", namespaces=NS) == ["atom <&> value"]
    feed = api.get(
        "StringParameters", params={"$filter": f"Pid eq '{pid}'"}, headers={"Accept": "*/*"}
    )
    assert etree.fromstring(feed.content).tag == "{http://www.w3.org/2005/Atom}feed"
    as_json = api.get(
        f"StringParameters(Pid='{pid}',Id='A')",
        params={"$format": "json"},
        headers={"Accept": "*/*"},
    )
    assert as_json.json()["d"]["Value"] == "atom <&> value"


def test_atom_request_body(api: Api, pid: str) -> None:
    body = f"""<?xml version="1.0" encoding="utf-8"?>
<entry xmlns="http://www.w3.org/2005/Atom" xmlns:m="{NS["m"]}" xmlns:d="{NS["d"]}">
  <content type="application/xml"><m:properties>
    <d:Pid>{pid}</d:Pid><d:Id>FROM_ATOM</d:Id><d:Value>x</d:Value>
  </m:properties></content></entry>"""
    r = api.post("StringParameters", content=body, headers={"Content-Type": "application/atom+xml"})
    assert r.status_code == 201, r.text


def test_percent_encoded_keys(api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "a<b>@c", "Value": "v"})
    path = quote(f"StringParameters(Pid='{pid}',Id='a<b>@c')", safe="()=,")
    assert api.get(path).json()["d"]["Id"] == "a<b>@c"

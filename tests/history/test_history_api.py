"""The change history through the API: one entry per changed entity for every write
path, none for a failed write, secrets never shown, and ``/AuditEntries`` read-only."""

from __future__ import annotations

import base64
import json
import uuid

import pyodata
import pytest
import requests

from ..conftest import Api, Server
from .conftest import entries

CREDENTIAL_PASSWORD = "s3cret-" + uuid.uuid4().hex


def test_single_writes_leave_one_entry_each(api: Api, pid: str) -> None:
    created = api.post("StringParameters", json={"Pid": pid, "Id": "ADDRESS", "Value": "a"})
    assert created.status_code == 201, created.text
    key = f"StringParameters(Pid='{pid}',Id='ADDRESS')"
    assert api.put(key, json={"Value": "b"}).status_code == 204
    assert api.delete(key).status_code == 204

    found = entries(api, pid)
    assert [e["Operation"] for e in found] == ["Create", "Update", "Delete"]
    assert all(e["User"] == api.user for e in found)
    assert all(e["EntitySet"] == "StringParameters" for e in found)
    create, change, gone = found
    assert create["Before"] is None and json.loads(create["After"])["Value"] == "a"
    assert json.loads(change["Before"])["Value"] == "a"
    assert json.loads(change["After"])["Value"] == "b"
    assert json.loads(gone["Before"])["Value"] == "b" and gone["After"] is None
    assert len({e["ChangeId"] for e in found}) == 3


def test_a_refused_write_leaves_no_entry(api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"})
    again = api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "2"})
    assert again.status_code == 400
    bad = api.put(f"StringParameters(Pid='{pid}',Id='A')", json={"Value": "x" * 5000})
    assert bad.status_code == 400
    assert [e["Operation"] for e in entries(api, pid)] == ["Create"]


def test_user_option_does_not_hide_who_wrote(api: Api, pid: str) -> None:
    """SAP's ``user`` option sets CreatedBy; the history names the caller who signed in."""
    done = api.post(
        "StringParameters",
        params={"user": "someone_else"},
        json={"Pid": pid, "Id": "A", "Value": "1"},
    )
    assert done.json()["d"]["CreatedBy"] == "someone_else"
    (entry,) = entries(api, pid)
    assert entry["User"] == api.user


BATCH = "batch_history"
CHANGESET = "changeset_history"


def _batch(parts: list[str]) -> bytes:
    change_set = "".join(
        f"--{CHANGESET}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary"
        f"\r\n\r\n{part}\r\n"
        for part in parts
    )
    return (
        f"--{BATCH}\r\nContent-Type: multipart/mixed; boundary={CHANGESET}\r\n\r\n"
        f"{change_set}--{CHANGESET}--\r\n--{BATCH}--\r\n"
    ).encode()


def _post(pid: str, ident: str, value: str) -> str:
    body = json.dumps({"Pid": pid, "Id": ident, "Value": value})
    return (
        "POST StringParameters HTTP/1.1\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )


def _put(pid: str, ident: str, value: str) -> str:
    body = json.dumps({"Value": value})
    return (
        f"PUT StringParameters(Pid='{pid}',Id='{ident}') HTTP/1.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )


def _send_batch(api: Api, parts: list[str]) -> str:
    answer = api.post(
        "$batch",
        content=_batch(parts),
        headers={"Content-Type": f"multipart/mixed; boundary={BATCH}"},
    )
    assert answer.status_code == 202, answer.text
    return answer.text


def test_batch_change_set_is_one_change(api: Api, pid: str) -> None:
    """Each entity once, even when the change set touched it twice; one ChangeId."""
    text = _send_batch(api, [_post(pid, "A", "1"), _post(pid, "B", "2"), _put(pid, "A", "3")])
    assert "HTTP/1.1 201" in text
    found = entries(api, pid)
    assert sorted(e["Label"] for e in found) == ["A", "B"]
    assert {e["Operation"] for e in found} == {"Create"}
    assert len({e["ChangeId"] for e in found}) == 1
    a = next(e for e in found if e["Label"] == "A")
    assert json.loads(a["After"])["Value"] == "3"


def test_failed_change_set_leaves_no_entry(api: Api, pid: str) -> None:
    text = _send_batch(api, [_post(pid, "A", "1"), _post(pid, "A", "2")])
    assert "HTTP/1.1 400" in text
    assert entries(api, pid) == []


def test_credential_passwords_never_in_history(api: Api, pid: str) -> None:
    body = {"Pid": pid, "Id": "CRED", "User": "u1", "Password": CREDENTIAL_PASSWORD}
    assert api.post("UserCredentialParameters", json=body).status_code == 201
    body["Password"] = CREDENTIAL_PASSWORD + "-2"
    assert api.post("UserCredentialParameters", json=body).status_code == 201
    body["User"] = "u2"
    assert api.post("UserCredentialParameters", json=body).status_code == 201
    found = entries(api, pid)
    assert [e["Operation"] for e in found] == ["Create", "Update", "Update"]
    raw = api.get("AuditEntries", params={"$filter": f"Pid eq '{pid}'"}).text
    assert CREDENTIAL_PASSWORD not in raw
    assert json.loads(found[1]["After"])["Password"] == "(hidden, changed)"
    assert json.loads(found[2]["After"])["Password"] == "(hidden)"
    assert json.loads(found[2]["After"])["User"] == "u2"


def test_binary_values_kept_whole_or_by_hash(api: Api, pid: str) -> None:
    small = b"<a/>"
    large = b"x" * (70 * 1024)
    for ident, value in (("SMALL", small), ("LARGE", large)):
        body = {"Pid": pid, "Id": ident, "ContentType": "xml", "Value": base64.b64encode(value)}
        body["Value"] = body["Value"].decode()
        assert api.post("BinaryParameters", json=body).status_code == 201
    found = {e["Label"]: json.loads(e["After"])["Value"] for e in entries(api, pid)}
    assert base64.b64decode(found["SMALL"]["base64"]) == small
    assert "base64" not in found["LARGE"]
    assert found["LARGE"]["size"] == len(large) and len(found["LARGE"]["sha256"]) == 64


def test_partner_delete_and_move_are_recorded(api: Api, pid: str) -> None:
    other = pid + "_b"
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"})
    api.post("AuthorizedUsers", json={"Pid": pid, "User": f"u_{pid.lower()}"})
    moved = api.put(f"AuthorizedUsers('u_{pid.lower()}')", json={"Pid": other})
    assert moved.status_code == 204, moved.text
    assert api.delete(f"Partners('{pid}')").status_code == 204
    found = entries(api, pid)
    move = next(e for e in found if e["Operation"] == "Update")
    assert (move["Operation"], move["Pid"], move["PreviousPid"]) == ("Update", other, pid)
    gone = [e for e in found if e["Operation"] == "Delete"]
    assert [e["Label"] for e in gone] == ["A"]


def test_history_is_read_only(api: Api) -> None:
    refused = api.post("AuditEntries", json={"Id": "x"})
    assert refused.status_code == 405
    listed = api.get("AuditEntries", params={"$top": "1"})
    assert listed.status_code == 200
    (entry,) = listed.json()["d"]["results"]
    one = api.get(f"AuditEntries('{entry['Id']}')")
    assert one.status_code == 200 and one.json()["d"]["Id"] == entry["Id"]
    assert api.delete(f"AuditEntries('{entry['Id']}')").status_code == 405


def test_history_pages_and_filters(api: Api, pid: str) -> None:
    for n in range(35):
        api.post("StringParameters", json={"Pid": pid, "Id": f"P{n:02d}", "Value": "v"})
    first = api.get(
        "AuditEntries", params={"$filter": f"Pid eq '{pid}'", "$inlinecount": "allpages"}
    )
    body = first.json()["d"]
    assert body["__count"] == "35" and len(body["results"]) == 30 and "__next" in body
    assert len(entries(api, pid)) == 35
    since = body["results"][0]["Time"]
    timed = api.get(
        "AuditEntries",
        params={
            "$filter": f"EntitySet eq 'StringParameters' and Pid eq '{pid}' and "
            f"Time ge datetime'{_iso(since)}'",
            "$top": "3",
        },
    )
    assert timed.status_code == 200, timed.text
    assert len(timed.json()["d"]["results"]) == 3


def _iso(date: str) -> str:
    from datetime import UTC, datetime

    ms = int(date[len("/Date(") : -len(")/")])
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_pyodata_reads_the_history(server: Server, api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"})
    session = requests.Session()
    session.auth = server.admin
    client = pyodata.Client(server.api + "/", session)
    found = client.entity_sets.AuditEntries.get_entities().filter(f"Pid eq '{pid}'").execute()
    assert [e.Operation for e in found] == ["Create"]


@pytest.fixture(autouse=True)
def _no_secret_in_log(server: Server):
    yield
    assert CREDENTIAL_PASSWORD not in server.log()


def test_mapping_rules_have_a_history_too(api: Api) -> None:
    """Sets that belong to no partner are recorded alike, found by EntitySet and Label."""
    rid = "R_" + uuid.uuid4().hex[:8]
    body = {"Id": rid, "Kind": "Thumbprint", "User": "u1", "Thumbprint": "ab" * 32}
    assert api.post("CertificateMappingRules", json=body).status_code == 201
    assert api.put(f"CertificateMappingRules('{rid}')", json={"User": "u2"}).status_code == 204
    assert api.delete(f"CertificateMappingRules('{rid}')").status_code == 204
    found = api.get(
        "AuditEntries",
        params={"$filter": f"EntitySet eq 'CertificateMappingRules' and Label eq '{rid}'"},
    ).json()["d"]["results"]
    assert [e["Operation"] for e in found] == ["Create", "Update", "Delete"]
    assert all(e["Pid"] is None for e in found)
    assert json.loads(found[1]["After"])["User"] == "u2"

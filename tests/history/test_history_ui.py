"""History, restore, copy and rename through the UI's forms and the CLI, on the store
under test: one entry per changed entity, a refused form leaves none, secrets never show."""

from __future__ import annotations

import base64
import json
import re

import httpx

from ..conftest import Api, Server
from ..ui.conftest import csrf_of
from .conftest import entries

SECRET = "pw-" + "x7Qk9"


def post_form(ui: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    form = ui.get(path)
    assert form.status_code == 200, form.text
    return ui.post(path, data={"csrf": csrf_of(form.text), **data})


def test_ui_forms_leave_one_entry_each(ui: httpx.Client, api: Api, server: Server, pid: str):
    made = post_form(
        ui,
        "/ui/new-partner?kind=string-parameters",
        {"kind": "string-parameters", "Pid": pid, "Id": "ADDRESS", "Value": "https://a"},
    )
    assert made.status_code == 303, made.text
    changed = post_form(
        ui, f"/ui/partners/{pid}/string-parameters/edit?id=ADDRESS", {"Value": "https://b"}
    )
    assert changed.status_code == 303
    refused = post_form(
        ui, f"/ui/partners/{pid}/string-parameters/new", {"Id": "bad id!", "Value": "x"}
    )
    assert refused.status_code == 400
    found = entries(api, pid)
    assert [e["Operation"] for e in found] == ["Create", "Update"]
    assert {e["User"] for e in found} == {server.admin[0]}

    page = ui.get(f"/ui/partners/{pid}/history")
    assert page.status_code == 200
    assert "https://a" in page.text and "https://b" in page.text
    assert page.text.index("Update") < page.text.index("Create")  # newest first

    gone = post_form(ui, f"/ui/partners/{pid}/string-parameters/delete?id=ADDRESS", {})
    assert gone.status_code == 303
    assert [e["Operation"] for e in entries(api, pid)][-1] == "Delete"


def test_restore_brings_a_value_back(ui: httpx.Client, api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "first"})
    api.put(f"StringParameters(Pid='{pid}',Id='A')", json={"Value": "second"})
    update = entries(api, pid)[1]
    page = ui.get(f"/ui/partners/{pid}/history")
    done = ui.post(
        f"/ui/partners/{pid}/history/{update['Id']}/restore", data={"csrf": csrf_of(page.text)}
    )
    assert done.status_code == 303
    value = api.get(f"StringParameters(Pid='{pid}',Id='A')").json()["d"]["Value"]
    assert value == "first"
    last = entries(api, pid)[-1]
    assert last["Operation"] == "Restore"
    assert json.loads(last["After"])["Value"] == "first"

    # Restoring the create deletes it; restoring that delete brings it back.
    create = entries(api, pid)[0]
    ui.post(f"/ui/partners/{pid}/history/{create['Id']}/restore", data={"csrf": csrf_of(page.text)})
    assert api.get(f"StringParameters(Pid='{pid}',Id='A')").status_code == 404
    delete = entries(api, pid)[-1]
    assert delete["After"] is None
    ui.post(f"/ui/partners/{pid}/history/{delete['Id']}/restore", data={"csrf": csrf_of(page.text)})
    assert api.get(f"StringParameters(Pid='{pid}',Id='A')").json()["d"]["Value"] == "first"


def test_restore_without_token_changes_nothing(ui: httpx.Client, api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"})
    (create,) = entries(api, pid)
    refused = ui.post(f"/ui/partners/{pid}/history/{create['Id']}/restore", data={})
    assert refused.status_code == 403
    assert len(entries(api, pid)) == 1


def _credential(api: Api, pid: str, ident: str) -> str:
    answer = api.get(
        f"UserCredentialParameters(Pid='{pid}',Id='{ident}')",
        params={"returnHashedPassword": "SHA256"},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["d"]["Password"]


def test_rename_is_one_change(ui: httpx.Client, api: Api, pid: str) -> None:
    new = pid + "_new"
    user = f"u_{pid.lower()}"
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"})
    api.post(
        "UserCredentialParameters", json={"Pid": pid, "Id": "C", "User": "x", "Password": SECRET}
    )
    api.post("AlternativePartners", json={"Pid": pid, "Agency": "ag", "Scheme": "sc", "Id": pid})
    api.post("AuthorizedUsers", json={"Pid": pid, "User": user})
    hashed = _credential(api, pid, "C")
    before = len(entries(api, pid))

    done = post_form(ui, f"/ui/partners/{pid}/rename", {"Pid": new})
    assert done.status_code == 303, done.text
    assert done.headers["location"].endswith(f"/ui/partners/{new}")
    assert ui.get(f"/ui/partners/{pid}").status_code == 404
    assert api.get(f"StringParameters(Pid='{new}',Id='A')").status_code == 200
    assert api.get(f"AuthorizedUsers('{user}')").json()["d"]["Pid"] == new
    assert _credential(api, new, "C") == hashed

    renamed = entries(api, new)
    assert len(entries(api, pid)) == before + 4
    assert len(renamed) == 4 and {e["Operation"] for e in renamed} == {"Rename"}
    assert len({e["ChangeId"] for e in renamed}) == 1
    assert {e["PreviousPid"] for e in renamed} == {pid}
    page = ui.get(f"/ui/partners/{new}/history")
    assert f"Renamed {pid} → {new}" in page.text
    assert SECRET not in page.text

    # Renaming onto an existing partner is refused and changes nothing.
    api.post("StringParameters", json={"Pid": pid, "Id": "B", "Value": "2"})
    taken = post_form(ui, f"/ui/partners/{new}/rename", {"Pid": pid})
    assert taken.status_code == 400 and "already exists" in taken.text
    assert len(entries(api, new)) == 4


def test_copy_partner_and_entry(ui: httpx.Client, api: Api, pid: str) -> None:
    target = pid + "_copy"
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"})
    api.post(
        "UserCredentialParameters", json={"Pid": pid, "Id": "C", "User": "x", "Password": SECRET}
    )
    api.post("AuthorizedUsers", json={"Pid": pid, "User": f"u_{pid.lower()}"})
    done = post_form(ui, f"/ui/partners/{pid}/copy", {"Pid": target})
    assert done.status_code == 303, done.text
    assert _credential(api, target, "C") == _credential(api, pid, "C")
    copied = entries(api, target)
    assert sorted(e["Label"] for e in copied) == ["A", "C"]
    assert {e["Operation"] for e in copied} == {"Copy"}
    assert len({e["ChangeId"] for e in copied}) == 1

    one = post_form(ui, f"/ui/partners/{pid}/string-parameters/copy?id=A", {"Pid": pid, "Id": "A2"})
    assert one.status_code == 303, one.text
    assert api.get(f"StringParameters(Pid='{pid}',Id='A2')").json()["d"]["Value"] == "1"
    again = post_form(ui, f"/ui/partners/{pid}/string-parameters/copy?id=A", {"Pid": target})
    assert again.status_code == 400 and "already exists" in again.text
    alt = post_form(
        ui,
        f"/ui/partners/{pid}/authorized-users/copy?user=u_{pid.lower()}",
        {"Pid": target, "User": f"v_{pid.lower()}"},
    )
    assert alt.status_code == 303, alt.text
    assert api.get(f"AuthorizedUsers('v_{pid.lower()}')").json()["d"]["Pid"] == target
    page = ui.get(f"/ui/partners/{target}/history")
    assert SECRET not in page.text and "(hidden)" in page.text


def test_cli_rename_and_copy(server: Server, api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"})
    api.post(
        "BinaryParameters", json={"Pid": pid, "Id": "B", "ContentType": "text", "Value": "aGVsbG8="}
    )
    renamed = server.cli("partners", "rename", pid, pid + "_r")
    assert renamed.returncode == 0, renamed.stderr
    assert "2 entities moved" in renamed.stdout
    copied = server.cli("partners", "copy", pid + "_r", pid + "_c")
    assert copied.returncode == 0, copied.stderr
    moved = entries(api, pid + "_r")
    assert [e["Operation"] for e in moved] == ["Rename", "Rename"]
    assert all(re.fullmatch(r"cli:.+", e["User"]) for e in moved)
    assert [e["Operation"] for e in entries(api, pid + "_c")] == ["Copy", "Copy"]
    missing = server.cli("partners", "rename", pid, pid + "_x")
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    assert entries(api, pid + "_x") == []


def test_what_history_does_not_keep_is_not_restored(ui: httpx.Client, api: Api, pid: str):
    """A large binary value and a deleted credential's password: refused, nothing changes."""
    large = base64.b64encode(b"x" * (70 * 1024)).decode()
    api.post(
        "BinaryParameters", json={"Pid": pid, "Id": "BIG", "ContentType": "text", "Value": large}
    )
    api.put(
        f"BinaryParameters(Pid='{pid}',Id='BIG')", json={"ContentType": "text", "Value": "eQ=="}
    )
    body = {"Pid": pid, "Id": "C", "User": "x", "Password": SECRET}
    api.post("UserCredentialParameters", json=body)
    api.delete(f"UserCredentialParameters(Pid='{pid}',Id='C')")
    found = entries(api, pid)
    csrf = csrf_of(ui.get(f"/ui/partners/{pid}/history").text)
    for entry in (found[1], found[3]):
        done = ui.post(f"/ui/partners/{pid}/history/{entry['Id']}/restore", data={"csrf": csrf})
        assert done.status_code == 303
        page = ui.get(done.headers["location"])
        assert "Nothing was restored" in page.text
    assert len(entries(api, pid)) == 4
    current = api.get(f"BinaryParameters(Pid='{pid}',Id='BIG')").json()["d"]["Value"]
    assert current == "eQ=="


def test_a_deleted_partner_comes_back_with_one_undo(ui: httpx.Client, api: Api, pid: str):
    user = f"u_{pid.lower()}"
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"})
    api.post(
        "BinaryParameters", json={"Pid": pid, "Id": "B", "ContentType": "xml", "Value": "PGEvPg=="}
    )
    api.post("AuthorizedUsers", json={"Pid": pid, "User": user})
    assert api.delete(f"Partners('{pid}')").status_code == 204
    missing = ui.get(f"/ui/partners/{pid}")
    assert missing.status_code == 404 and f"/ui/partners/{pid}/history" in missing.text
    gone = [e for e in entries(api, pid) if e["Operation"] == "Delete"]
    assert len(gone) == 3 and len({e["ChangeId"] for e in gone}) == 1
    page = ui.get(f"/ui/partners/{pid}/history")
    assert "Undo this whole change (3 entities)" in page.text
    done = ui.post(
        f"/ui/partners/{pid}/history/changes/{gone[0]['ChangeId']}/undo",
        data={"csrf": csrf_of(page.text)},
    )
    assert done.status_code == 303
    assert api.get(f"StringParameters(Pid='{pid}',Id='A')").json()["d"]["Value"] == "1"
    assert api.get(f"BinaryParameters(Pid='{pid}',Id='B')").json()["d"]["Value"] == "PGEvPg=="
    assert api.get(f"AuthorizedUsers('{user}')").json()["d"]["Pid"] == pid
    back = entries(api, pid)[-3:]
    assert {e["Operation"] for e in back} == {"Restore"} and len({e["ChangeId"] for e in back}) == 1


def test_account_changes_by_cli_are_recorded(server: Server, api: Api, pid: str) -> None:
    name = "acct_" + pid.lower()
    password = "Pw-" + pid
    server.add_user(name, password, "ESBMessaging.send")
    done = server.cli("users", "set-roles", name, "--role", "Other")
    assert done.returncode == 0, done.stderr
    done = server.cli("users", "set-password", name, "--password-stdin", stdin=password + "x\n")
    assert done.returncode == 0, done.stderr
    assert server.cli("users", "remove", name).returncode == 0
    assert server.cli("users", "remove", name).returncode != 0
    answer = api.get(
        "AuditEntries", params={"$filter": f"EntitySet eq 'LocalUsers' and Label eq '{name}'"}
    )
    found = answer.json()["d"]["results"]
    assert [e["Operation"] for e in found] == ["Create", "Update", "Update", "Delete"]
    assert json.loads(found[1]["Before"]) == {"Roles": "ESBMessaging.send"}
    assert json.loads(found[1]["After"]) == {"Roles": "Other"}
    assert json.loads(found[2]["After"]) == {"Secret": "(hidden, changed)"}
    assert all(e["User"].startswith("cli:") for e in found)
    assert password not in answer.text

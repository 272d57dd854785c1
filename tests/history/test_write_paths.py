"""Every write path leaves exactly one history entry per changed entity, and an unchanged
entity none: the API one by one and in a ``$batch`` change set, the UI's forms, bulk grid,
document editor and zip import, and the command line (``partners rename``, ``pd import``)."""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from collections import Counter
from html import unescape
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from ..conftest import Api, Server
from ..ui.conftest import csrf_of
from ..ui.test_certificates_browser import make_certificate
from .conftest import entries
from .test_history_api import _send_batch

KEY = re.compile(r'name="key" value="([^"]+)"')


def since(api: Api, pid: str, before: int) -> list[dict]:
    """The entries written after the first ``before`` of them."""
    return entries(api, pid)[before:]


def per_entity(found: list[dict]) -> Counter[tuple[str, str, str]]:
    return Counter((e["EntitySet"], e["Label"], e["Operation"]) for e in found)


def assert_one_change(found: list[dict], expected: dict[tuple[str, str], str]) -> None:
    """One entry per entity, with the operation expected, all in one change."""
    counted = per_entity(found)
    want = Counter((s, label, op) for (s, label), op in expected.items())
    assert counted == want, f"entries: {sorted(counted.items())}"
    assert len({e["ChangeId"] for e in found}) == 1, "one change, one ChangeId"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def post_form(ui: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    form = ui.get(path)
    assert form.status_code == 200, form.text
    return ui.post(path, data={"csrf": csrf_of(form.text), **data})


# The API


def test_api_single_writes_of_each_kind(api: Api, pid: str) -> None:
    user = f"u_{pid.lower()}"
    writes = [
        ("post", "StringParameters", {"Pid": pid, "Id": "S", "Value": "1"}),
        ("put", f"StringParameters(Pid='{pid}',Id='S')", {"Value": "2"}),
        (
            "post",
            "BinaryParameters",
            {"Pid": pid, "Id": "B", "ContentType": "xml", "Value": b64(b"<a/>")},
        ),
        (
            "put",
            f"BinaryParameters(Pid='{pid}',Id='B')",
            {"ContentType": "xml", "Value": b64(b"<b/>")},
        ),
        (
            "post",
            "UserCredentialParameters",
            {"Pid": pid, "Id": "C", "User": "x", "Password": "p1"},
        ),
        (
            "post",
            "UserCredentialParameters",
            {"Pid": pid, "Id": "C", "User": "y", "Password": "p2"},
        ),
        ("post", "AlternativePartners", {"Pid": pid, "Agency": "A", "Scheme": "S", "Id": "1"}),
        ("post", "AuthorizedUsers", {"Pid": pid, "User": user}),
    ]
    for method, path, body in writes:
        answer = api.request(method.upper(), path, json=body)
        assert answer.status_code in (201, 204), (path, answer.text)
    found = entries(api, pid)
    assert [e["Operation"] for e in found] == ["Create", "Update"] * 3 + ["Create", "Create"]
    assert len({e["ChangeId"] for e in found}) == len(writes), "each request is its own change"

    before = len(found)
    deletes = [
        f"StringParameters(Pid='{pid}',Id='S')",
        f"BinaryParameters(Pid='{pid}',Id='B')",
        f"UserCredentialParameters(Pid='{pid}',Id='C')",
        f"AuthorizedUsers('{user}')",
    ]
    for path in deletes:
        assert api.delete(path).status_code == 204, path
    gone = since(api, pid, before)
    assert [(e["EntitySet"], e["Operation"]) for e in gone] == [
        ("StringParameters", "Delete"),
        ("BinaryParameters", "Delete"),
        ("UserCredentialParameters", "Delete"),
        ("AuthorizedUsers", "Delete"),
    ]
    # Deleting the partner deletes what is left of it, its alternative partner, once.
    before = len(entries(api, pid))
    assert api.delete(f"Partners('{pid}')").status_code == 204
    last = since(api, pid, before)
    assert [(e["EntitySet"], e["Operation"]) for e in last] == [("AlternativePartners", "Delete")]


def _request(method: str, path: str, body: dict | None = None) -> str:
    if body is None:
        return f"{method} {path} HTTP/1.1\r\n\r\n"
    text = json.dumps(body)
    return (
        f"{method} {path} HTTP/1.1\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(text)}\r\n\r\n{text}"
    )


def test_api_batch_change_set_of_several_operations(api: Api, pid: str) -> None:
    for ident in ("KEEP", "CHANGE", "DROP"):
        body = {"Pid": pid, "Id": ident, "Value": "old"}
        assert api.post("StringParameters", json=body).status_code == 201
    before = len(entries(api, pid))
    text = _send_batch(
        api,
        [
            _request("POST", "StringParameters", {"Pid": pid, "Id": "NEW", "Value": "n"}),
            _request("PUT", f"StringParameters(Pid='{pid}',Id='CHANGE')", {"Value": "new"}),
            _request("DELETE", f"StringParameters(Pid='{pid}',Id='DROP')"),
            _request("POST", "AuthorizedUsers", {"Pid": pid, "User": f"b_{pid.lower()}"}),
            _request(
                "POST",
                "BinaryParameters",
                {"Pid": pid, "Id": "MAP", "ContentType": "xml", "Value": b64(b"<m/>")},
            ),
        ],
    )
    assert text.count("HTTP/1.1 201") == 3 and text.count("HTTP/1.1 204") == 2, text
    assert_one_change(
        since(api, pid, before),
        {
            ("StringParameters", "NEW"): "Create",
            ("StringParameters", "CHANGE"): "Update",
            ("StringParameters", "DROP"): "Delete",
            ("AuthorizedUsers", f"b_{pid.lower()}"): "Create",
            ("BinaryParameters", "MAP"): "Create",
        },
    )


# The UI


def test_ui_forms(ui: httpx.Client, api: Api, pid: str) -> None:
    made = post_form(
        ui,
        "/ui/new-partner?kind=string-parameters",
        {"kind": "string-parameters", "Pid": pid, "Id": "ADDRESS", "Value": "https://a"},
    )
    assert made.status_code == 303, made.text
    edit = f"/ui/partners/{pid}/string-parameters/edit?id=ADDRESS"
    assert post_form(ui, edit, {"Value": "https://b"}).status_code == 303
    added = post_form(ui, f"/ui/partners/{pid}/authorized-users/new", {"User": f"f_{pid.lower()}"})
    assert added.status_code == 303, added.text
    gone = post_form(ui, f"/ui/partners/{pid}/string-parameters/delete?id=ADDRESS", {})
    assert gone.status_code == 303
    found = entries(api, pid)
    assert [(e["EntitySet"], e["Operation"]) for e in found] == [
        ("StringParameters", "Create"),
        ("StringParameters", "Update"),
        ("AuthorizedUsers", "Create"),
        ("StringParameters", "Delete"),
    ]
    assert len({e["ChangeId"] for e in found}) == 4


def test_ui_bulk_grid_apply(ui: httpx.Client, api: Api, pid: str) -> None:
    for ident in ("A", "B", "C"):
        body = {"Pid": pid, "Id": ident, "Value": "10"}
        assert api.post("StringParameters", json=body).status_code == 201
    before = len(entries(api, pid))
    query = {"set": "string-parameters", "filter": f"Pid eq '{pid}'"}
    page = ui.get("/ui/grid", params=query)
    keys = [unescape(k) for k in KEY.findall(page.text)]
    assert len(keys) == 3
    chosen = [k for k in keys if json.loads(k)["Id"] != "B"]
    change = {"operation": "edit", "column": "Value", "value": "30", "key": chosen}
    csrf = csrf_of(page.text)
    preview = ui.post(
        "/ui/grid/bulk", params=query, data={"csrf": csrf, **change, "step": "preview"}
    )
    assert preview.status_code == 200
    assert since(api, pid, before) == [], "a preview writes no history"
    done = ui.post("/ui/grid/bulk", params=query, data={"csrf": csrf, **change, "step": "apply"})
    assert done.status_code == 303, done.text
    assert_one_change(
        since(api, pid, before),
        {("StringParameters", "A"): "Update", ("StringParameters", "C"): "Update"},
    )

    target = pid + "_copy"
    copy = {"operation": "copy", "target": target, "key": keys, "step": "apply", "csrf": csrf}
    assert ui.post("/ui/grid/bulk", params=query, data=copy).status_code == 303
    assert_one_change(
        entries(api, target),
        {("StringParameters", i): "Copy" for i in ("A", "B", "C")},
    )

    before = len(entries(api, pid))
    delete = {"operation": "delete", "key": keys, "step": "apply", "csrf": csrf}
    assert ui.post("/ui/grid/bulk", params=query, data=delete).status_code == 303
    assert_one_change(
        since(api, pid, before),
        {("StringParameters", i): "Delete" for i in ("A", "B", "C")},
    )
    assert {e["User"] for e in entries(api, pid) + entries(api, target)} == {api.user}


def test_ui_document_upload_and_save(ui: httpx.Client, api: Api, pid: str) -> None:
    csrf = csrf_of(ui.get("/ui/new-document").text)
    uploaded = ui.post(
        "/ui/new-document",
        data={"csrf": csrf, "pid": pid, "id": "CONF", "ContentType": "auto"},
        files={"File": ("c.json", b'{"a": 1}')},
    )
    assert uploaded.status_code == 303, uploaded.text
    assert [(e["Label"], e["Operation"]) for e in entries(api, pid)] == [("CONF", "Create")]
    path = f"/ui/documents/{pid}/CONF"
    csrf = csrf_of(ui.get(path).text)
    refused = ui.post(path, data={"csrf": csrf, "action": "save", "Text": '{"a": }'})
    assert refused.status_code == 422
    saved = ui.post(path, data={"csrf": csrf, "action": "save", "Text": '{"a": 2}'})
    assert saved.status_code == 303, saved.text
    found = entries(api, pid)
    assert [(e["Label"], e["Operation"]) for e in found] == [("CONF", "Create"), ("CONF", "Update")]
    after = json.loads(found[-1]["After"])["Value"]
    assert base64.b64decode(after["base64"]) == b'{"a": 2}'


def test_ui_certificate_that_authorises_its_user(ui: httpx.Client, api: Api, pid: str) -> None:
    """A mapping and the authorized user it needs: two entities, one entry each, one change."""
    user = f"m_{pid.lower()}"
    pem = make_certificate(f"CN_{user}", days=90).public_bytes(serialization.Encoding.PEM)
    csrf = csrf_of(ui.get("/ui/new-certificate").text)
    done = ui.post(
        "/ui/new-certificate",
        data={"csrf": csrf, "User": user, "Text": pem.decode(), "Pid": pid},
    )
    assert done.status_code == 303, done.text
    mapping = api.get("CertificateUserMappings", params={"$filter": f"User eq '{user}'"})
    (mapped,) = mapping.json()["d"]["results"]
    label = f"{user} ({mapped['Id']})"
    made = api.get(
        "AuditEntries",
        params={"$filter": f"EntitySet eq 'CertificateUserMappings' and Label eq '{label}'"},
    ).json()["d"]["results"]
    assert [e["Operation"] for e in made] == ["Create"]
    authorised = entries(api, pid)
    assert [(e["EntitySet"], e["Label"], e["Operation"]) for e in authorised] == [
        ("AuthorizedUsers", user, "Create")
    ]
    assert made[0]["ChangeId"] == authorised[0]["ChangeId"]


def test_ui_certificate_and_rule_forms_name_who_wrote(
    ui: httpx.Client, api: Api, server: Server, pid: str
) -> None:
    """Made and deleted on their pages: one entry each, naming the signed-in admin."""
    user = f"w_{pid.lower()}"
    pem = make_certificate(f"CN_{user}", days=90).public_bytes(serialization.Encoding.PEM)
    made = post_form(ui, "/ui/new-certificate", {"User": user, "Text": pem.decode()})
    assert made.status_code == 303, made.text
    mapping = api.get("CertificateUserMappings", params={"$filter": f"User eq '{user}'"})
    (mapped,) = mapping.json()["d"]["results"]
    gone = post_form(ui, f"/ui/certificates/{mapped['Id']}/delete", {})
    assert gone.status_code == 303, gone.text
    rule = {"kind": "Thumbprint", "Id": pid, "User": user, "Thumbprint": "ab" * 32}
    assert post_form(ui, "/ui/new-rule", rule).status_code == 303
    assert post_form(ui, f"/ui/rules/{pid}/delete", {}).status_code == 303
    for entity_set, label in (
        ("CertificateUserMappings", f"{user} ({mapped['Id']})"),
        ("CertificateMappingRules", pid),
    ):
        found = api.get(
            "AuditEntries",
            params={"$filter": f"EntitySet eq '{entity_set}' and Label eq '{label}'"},
        ).json()["d"]["results"]
        assert [(e["Operation"], e["User"]) for e in found] == [
            ("Create", server.admin[0]),
            ("Delete", server.admin[0]),
        ], entity_set


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name}"
    return unescape(found.group(1))


def test_ui_users_and_clients_pages(ui: httpx.Client, api: Api, server: Server, pid: str) -> None:
    """Each change on the users and clients pages is one entry, naming who made it."""
    name = "ui_acct_" + pid.lower()
    csrf = csrf_of(ui.get("/ui/accounts").text)
    for slug in ("users", "clients"):
        done = ui.post(f"/ui/new-account/{slug}", data={"csrf": csrf, "name": name})
        assert done.status_code == 200, done.text
        path = f"/ui/accounts/{slug}/{name}"
        for form in (
            {"action": "roles", "role-ESBMessaging.send": "on"},
            {"action": "reset"},
            {"action": "remove", "confirm": name},
        ):
            done = ui.post(path, data={"csrf": csrf, **form})
            assert done.status_code in (200, 303), done.text
    for entity_set in ("LocalUsers", "OAuthClients"):
        found = api.get(
            "AuditEntries",
            params={"$filter": f"EntitySet eq '{entity_set}' and Label eq '{name}'"},
        ).json()["d"]["results"]
        assert [e["Operation"] for e in found] == ["Create", "Update", "Update", "Delete"]
        assert {e["User"] for e in found} == {server.admin[0]}, entity_set
        assert len({e["ChangeId"] for e in found}) == 4


def test_ui_zip_import(ui: httpx.Client, api: Api, pid: str) -> None:
    assert (
        api.post("StringParameters", json={"Pid": pid, "Id": "SAME", "Value": "s"}).status_code
        == 201
    )
    assert (
        api.post("StringParameters", json={"Pid": pid, "Id": "OLD", "Value": "1"}).status_code
        == 201
    )
    before = len(entries(api, pid))
    upload = _zip(
        {
            f"partner-directory/{pid}/String.properties": b"NEW=n\nOLD=2\nSAME=s\n",
            f"partner-directory/{pid}/AuthorizedUsers.yaml": f"- z_{pid.lower()}\n".encode(),
        }
    )
    csrf = csrf_of(ui.get("/ui/import").text)
    planned = ui.post(
        "/ui/import",
        data={"csrf": csrf, "mode": "replace"},
        files={"file": ("pd.zip", upload, "application/zip")},
    )
    assert planned.status_code == 200, planned.text
    assert since(api, pid, before) == [], "a plan writes no history"
    confirm = {
        "csrf": csrf,
        "mode": "replace",
        "zip": _hidden(planned.text, "zip"),
        "digest": _hidden(planned.text, "digest"),
    }
    assert ui.post("/ui/import", data=confirm).status_code == 303
    assert_one_change(
        since(api, pid, before),
        {
            ("StringParameters", "NEW"): "Create",
            ("StringParameters", "OLD"): "Update",
            ("AuthorizedUsers", f"z_{pid.lower()}"): "Create",
        },
    )


# The command line


def test_cli_partners_rename(server: Server, api: Api, pid: str) -> None:
    user = f"r_{pid.lower()}"
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"})
    api.post(
        "BinaryParameters",
        json={"Pid": pid, "Id": "B", "ContentType": "xml", "Value": b64(b"<a/>")},
    )
    api.post("AuthorizedUsers", json={"Pid": pid, "User": user})
    before = len(entries(api, pid))
    new = pid + "_r"
    done = server.cli("partners", "rename", pid, new)
    assert done.returncode == 0, done.stderr
    found = since(api, pid, before)
    assert_one_change(
        found,
        {
            ("StringParameters", "A"): "Rename",
            ("BinaryParameters", "B"): "Rename",
            ("AuthorizedUsers", user): "Rename",
        },
    )
    assert {(e["Pid"], e["PreviousPid"]) for e in found} == {(new, pid)}
    assert all(e["User"].startswith("cli:") for e in found)


def test_cli_pd_import(server: Server, api: Api, pid: str, tmp_path: Path) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "SAME", "Value": "s"})
    api.post("StringParameters", json={"Pid": pid, "Id": "OLD", "Value": "1"})
    api.post("StringParameters", json={"Pid": pid, "Id": "GONE", "Value": "g"})
    before = len(entries(api, pid))
    folder = tmp_path / "partner-directory" / pid
    (folder / "Binary").mkdir(parents=True)
    (folder / "String.properties").write_text("NEW=n\nOLD=2\nSAME=s\n")
    (folder / "Binary" / "MAP.xml").write_bytes(b"<m/>")
    (folder / "AuthorizedUsers.yaml").write_text(f"- c_{pid.lower()}\n")
    root = str(tmp_path / "partner-directory")

    dry = server.cli("pd", "import", root, "--pids", pid, "--mode", "sync", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert since(api, pid, before) == [], "a dry run writes no history"
    done = server.cli("pd", "import", root, "--pids", pid, "--mode", "sync")
    assert done.returncode == 0, done.stderr
    found = since(api, pid, before)
    assert_one_change(
        found,
        {
            ("StringParameters", "NEW"): "Create",
            ("StringParameters", "OLD"): "Update",
            ("StringParameters", "GONE"): "Delete",
            ("BinaryParameters", "MAP"): "Create",
            ("AuthorizedUsers", f"c_{pid.lower()}"): "Create",
        },
    )
    assert all(e["User"].startswith("cli:") for e in found)

    before = len(entries(api, pid))
    again = server.cli("pd", "import", root, "--pids", pid, "--mode", "sync")
    assert again.returncode == 0, again.stderr
    assert since(api, pid, before) == [], "importing what is there changes nothing"

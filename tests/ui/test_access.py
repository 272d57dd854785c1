"""Who may use the UI, and forms that did not come from it (plain HTTP, no browser)."""

from __future__ import annotations

import re

import httpx
import pytest

from ..conftest import ADMIN_ROLE, Api, Server
from .conftest import csrf_of, sign_in


def test_pages_ask_to_sign_in_first(server: Server) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/").headers["location"] == "/ui/"
        r = anonymous.get("/ui/partners/Sender_CERT?x=1")
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/signin?next=%2Fui%2Fpartners%2FSender_CERT%3Fx%3D1"
        posted = anonymous.post("/ui/partners/X/delete", data={"csrf": "x"})
        assert posted.status_code == 303
        assert posted.headers["location"] == "/ui/signin"


def test_a_wrong_password_is_refused_without_saying_which_part(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        token = csrf_of(client.get("/ui/signin").text)
        for name, password in ((server.admin[0], "wrong"), ("nobody_here", "wrong")):
            r = client.post("/ui/signin", data={"name": name, "password": password, "csrf": token})
            assert r.status_code == 400
            assert "The user name or the password is wrong." in r.text
            assert "PG_SESSIONID" not in r.cookies


def test_the_sign_in_form_needs_its_own_token(server: Server) -> None:
    """Another site cannot sign a browser in under its own account (login CSRF)."""
    with httpx.Client(base_url=server.url) as client:
        name, password = server.admin
        r = client.post("/ui/signin", data={"name": name, "password": password, "csrf": "forged"})
        assert r.status_code == 403
        assert "PG_SESSIONID" not in r.cookies


def test_sign_in_goes_back_only_to_the_ui(server: Server) -> None:
    name, password = server.admin
    for target, expected in (
        ("/ui/partners?q=abc", "/ui/partners?q=abc"),
        ("//evil.example/ui/", "/ui/partners"),
        ("https://evil.example/", "/ui/partners"),
        ("/api/v1/", "/ui/partners"),
    ):
        with httpx.Client(base_url=server.url) as client:
            token = csrf_of(client.get("/ui/signin").text)
            data = {"name": name, "password": password, "csrf": token, "next": target}
            r = client.post("/ui/signin", data=data)
            assert r.status_code == 303
            assert r.headers["location"] == expected


@pytest.mark.parametrize("token", [None, "", "wrong", "other-session"])
def test_forms_without_the_session_token_change_nothing(
    server: Server, api: Api, ui: httpx.Client, pid: str, token: str | None
) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).raise_for_status()
    if token == "other-session":
        with sign_in(server, *server.admin) as other:
            token = csrf_of(other.get("/ui/partners").text)
    data = {} if token is None else {"csrf": token}
    attempts = [
        (f"/ui/partners/{pid}/string-parameters/new", {"Id": "B", "Value": "2"}),
        (f"/ui/partners/{pid}/string-parameters/edit?id=A", {"Value": "changed"}),
        (f"/ui/partners/{pid}/string-parameters/delete?id=A", {}),
        (f"/ui/partners/{pid}/delete", {}),
        ("/ui/new-partner", {"kind": "string-parameters", "Pid": pid + "N", "Id": "C"}),
    ]
    for url, fields in attempts:
        r = ui.post(url, data={**fields, **data})
        assert r.status_code == 403, url
        assert "nothing was changed" in r.text
    rows = api.get("StringParameters", params={"$filter": f"startswith(Pid,'{pid}')"}).json()
    assert [(e["Pid"], e["Id"], e["Value"]) for e in rows["d"]["results"]] == [(pid, "A", "1")]


def test_the_token_of_the_page_is_accepted(ui: httpx.Client, api: Api, pid: str) -> None:
    token = csrf_of(ui.get("/ui/new-partner").text)
    r = ui.post(
        "/ui/new-partner",
        data={"csrf": token, "kind": "string-parameters", "Pid": pid, "Id": "A", "Value": "v"},
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/ui/partners/{pid}"
    assert api.get(f"StringParameters(Pid='{pid}',Id='A')").json()["d"]["Value"] == "v"


def test_a_user_without_the_role_sees_nothing_and_is_told_why(
    server: Server, api: Api, pid: str
) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "SECRET", "Value": "v"}).raise_for_status()
    server.add_user("viewer_" + pid.lower(), "viewer-pw", "ESBMessaging.send")
    with sign_in(server, "viewer_" + pid.lower(), "viewer-pw") as viewer:
        for url in ("/ui/partners", f"/ui/partners/{pid}", f"/ui/partners?q={pid}"):
            r = viewer.get(url)
            assert r.status_code == 403
            assert f"does not have the role\n  <code>{ADMIN_ROLE}</code>" in r.text
            assert pid not in r.text
            assert "SECRET" not in r.text
        assert f"--role ESBMessaging.send --role {ADMIN_ROLE}" in r.text
        token = csrf_of(r.text)  # the sign-out form
        r = viewer.post(f"/ui/partners/{pid}/delete", data={"csrf": token})
        assert r.status_code == 403
        r = viewer.post("/ui/signout", data={"csrf": token})
        assert r.status_code == 303
    assert api.get(f"StringParameters(Pid='{pid}',Id='SECRET')").status_code == 200


def test_pages_load_nothing_from_elsewhere(ui: httpx.Client) -> None:
    r = ui.get("/ui/partners")
    policy = r.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert r.headers["x-frame-options"] == "DENY"
    # Addresses shown as text are data; only what the browser would fetch counts.
    fetched = re.findall(r'(?:src|href|action|srcset)\s*=\s*"([^"]*)"', r.text)
    assert fetched, "the page links to nothing"
    elsewhere = [url for url in fetched if re.match(r"(?i)\s*(?:[a-z][a-z0-9+.-]*:|//)", url)]
    assert elsewhere == []
    assert "@import" not in r.text and "url(http" not in r.text


def test_a_binary_download_is_an_attachment(ui: httpx.Client, api: Api, pid: str) -> None:
    body = {"Pid": pid, "Id": "doc<1>", "ContentType": "xml", "Value": "PHg+PHNjcmlwdC8+PC94Pg=="}
    api.post("BinaryParameters", json=body).raise_for_status()
    r = ui.get(f"/ui/partners/{pid}/binary-parameters/download", params={"id": "doc<1>"})
    assert r.status_code == 200
    assert r.content == b"<x><script/></x>"
    assert r.headers["content-type"] == "application/xml"
    assert r.headers["content-disposition"] == "attachment; filename*=UTF-8''doc%3C1%3E.xml"
    assert "sandbox" in r.headers["content-security-policy"]
    shown = ui.get(f"/ui/partners/{pid}/binary-parameters/edit", params={"id": "doc<1>"})
    assert "<script/>" not in shown.text
    assert "&lt;" in shown.text


def test_unknown_things_are_404_pages(ui: httpx.Client, api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).raise_for_status()
    for url in (
        "/ui/partners/No_Such_Partner",
        f"/ui/partners/{pid}/string-parameters/edit?id=NOPE",
        f"/ui/partners/{pid}/string-parameters/edit",
        f"/ui/partners/{pid}/gadgets/new",
        f"/ui/partners/{pid}_other/string-parameters/edit?id=A",
    ):
        r = ui.get(url)
        assert r.status_code == 404, url
        assert "<h1>" in r.text


def test_a_pid_of_dots_has_a_page(ui: httpx.Client, api: Api) -> None:
    api.post("StringParameters", json={"Pid": "..", "Id": "A", "Value": "1"}).raise_for_status()
    try:
        listing = ui.get("/ui/partners", params={"q": ".."}).text
        assert 'href="/ui/partners/!.."' in listing
        r = ui.get("/ui/partners/!..")
        assert r.status_code == 200
        assert "/ui/partners/!../string-parameters/edit?id=A" in r.text
    finally:
        api.delete("StringParameters(Pid='..',Id='A')")

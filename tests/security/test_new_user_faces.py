"""The API, OAuth and UI faces as a new user meets them: ``partnergate serve`` run from a
fresh, empty directory, with no ``PARTNERGATE_*`` variable and the default settings (the
store and ``data_dir`` relative to that directory), the admin created as the README says.

Only the listener's port is given (``--http``), since the default 8080 may be taken; on
PostgreSQL the store is given with ``--db``, as the README shows.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ..conftest import ADMIN_ROLE, STORE, free_port, stop_process, wait_until_healthy

POSTED_AGAIN = ("UserCredentialParameters", "CertificateUserMappings")
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class NewUser:
    home: Path
    url: str
    admin: tuple[str, str]
    token: str
    process: subprocess.Popen[bytes]

    @property
    def api(self) -> str:
        return self.url + "/api/v1/"


def run(home: Path, db: list[str], *args: str, stdin: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERGATE_")}
    done = subprocess.run(
        [sys.executable, "-m", "partnergate", *db, *args],
        cwd=home,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # no terminal: a password prompt reads standard input
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def new_user(tmp_path_factory: pytest.TempPathFactory, own_store: str) -> Iterator[NewUser]:
    home = tmp_path_factory.mktemp("new_user_home")
    assert not any(home.iterdir())
    db = [] if STORE == "sqlite" else ["--db", own_store]
    password = secrets.token_urlsafe(12)
    # README, "Who may call": partnergate users add NAME --role ROLE… --password-stdin
    run(
        home,
        db,
        "users",
        "add",
        "admin",
        "--role",
        ADMIN_ROLE,
        "--password-stdin",
        stdin=password + "\n",
    )
    secret = secrets.token_urlsafe(16)
    run(
        home,
        db,
        "clients",
        "add",
        "robot",
        "--role",
        ADMIN_ROLE,
        "--secret-stdin",
        stdin=secret + "\n",
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERGATE_")}
    log_path = home.parent / f"{home.name}-serve.log"
    log = open(log_path, "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "partnergate", "serve", "--http", f"127.0.0.1:{port}", *db],
        cwd=home,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log_path)
        r = httpx.post(
            url + "/oauth/token", data={"grant_type": "client_credentials"}, auth=("robot", secret)
        )
        assert r.status_code == 200, r.text
        assert r.json()["token_type"].lower() == "bearer"
        yield NewUser(home, url, ("admin", password), r.json()["access_token"], process)
    finally:
        stop_process(process)
        log.close()


def test_defaults_keep_their_files_in_the_directory(new_user: NewUser) -> None:
    """The store (on SQLite) and the credential key land where the README says."""
    assert (new_user.home / ".partnergate" / "credentials.key").is_file()
    if STORE == "sqlite":
        assert (new_user.home / "partnergate.db").is_file()


def test_token_endpoint_refuses_wrong_secrets(new_user: NewUser) -> None:
    r = httpx.post(
        new_user.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("robot", "wrong"),
    )
    assert r.status_code == 401
    r = httpx.get(new_user.api + "StringParameters", headers={"Authorization": "Bearer x.y.z"})
    assert r.status_code == 401


@pytest.fixture
def basic(new_user: NewUser) -> Iterator[httpx.Client]:
    """The README's curl session: Basic, a CSRF token fetched with the session cookie."""
    with httpx.Client(base_url=new_user.api, auth=new_user.admin, timeout=30) as client:
        fetched = client.get("", headers={"X-CSRF-Token": "Fetch"})
        assert fetched.status_code == 200, fetched.text
        client.headers.update(
            {"X-CSRF-Token": fetched.headers["x-csrf-token"], "Accept": "application/json"}
        )
        yield client


@pytest.fixture
def bearer(new_user: NewUser) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {new_user.token}", "Accept": "application/json"}
    with httpx.Client(base_url=new_user.api, headers=headers, timeout=30) as client:
        yield client


def mapping_body(new_user: NewUser) -> dict[str, str]:
    """The README's way to a CertificateUserMappings body: the CLI's development PKI."""
    db: list[str] = []
    if not (new_user.home / "pki").exists():
        run(new_user.home, db, "pki", "init", "pki")
        run(
            new_user.home,
            db,
            "pki",
            "client",
            "pki",
            "sender_cert",
            "--password-stdin",
            stdin="keystore-pw\n",
        )
    out = run(
        new_user.home,
        db,
        "pki",
        "mapping-body",
        "pki/sender_cert.crt",
        "--user",
        "user_for_sender_cert",
    )
    return json.loads(out)


def entities(new_user: NewUser) -> list[tuple[str, dict[str, object], str, dict[str, object]]]:
    """Per entity set: a body to create, its key predicate, and a change."""
    cert = mapping_body(new_user)
    return [
        (
            "StringParameters",
            {"Pid": "NU_P", "Id": "ADDRESS", "Value": "https://r.example"},
            "(Pid='NU_P',Id='ADDRESS')",
            {"Value": "https://r2.example"},
        ),
        (
            "BinaryParameters",
            {"Pid": "NU_P", "Id": "XSLT", "ContentType": "xsl", "Value": "PGEvPg=="},
            "(Pid='NU_P',Id='XSLT')",
            {"ContentType": "xml", "Value": "PGIvPg=="},
        ),
        (
            "UserCredentialParameters",
            {"Pid": "NU_P", "Id": "USER", "User": "u", "Password": "secret-1"},
            "(Pid='NU_P',Id='USER')",
            {"User": "u2", "Password": "secret-2"},
        ),
        (
            "AlternativePartners",
            {"Agency": "AG", "Scheme": "SC", "Id": "ALT", "Pid": "NU_P"},
            None,
            {"Pid": "NU_Q"},
        ),
        ("AuthorizedUsers", {"User": "nu_user", "Pid": "NU_P"}, "('nu_user')", {"Pid": "NU_Q"}),
        (
            "CertificateMappingRules",
            {"Id": "nu_rule", "Kind": "Thumbprint", "User": "nu_user", "Thumbprint": "ab" * 32},
            "('nu_rule')",
            {"User": "other_user"},
        ),
        ("CertificateUserMappings", cert, None, {"User": "other_user"}),
    ]


@pytest.mark.parametrize("face", ["basic", "bearer"])
def test_create_read_update_delete_every_entity_set(
    new_user: NewUser, face: str, request: pytest.FixtureRequest
) -> None:
    client: httpx.Client = request.getfixturevalue(face)
    for entity_set, body, key, change in entities(new_user):
        r = client.post(entity_set, json=body)
        assert r.status_code == 201, f"{entity_set}: {r.text}"
        location = r.headers["location"]
        uri = r.json()["d"]["__metadata"]["uri"]
        assert location == uri
        if key is not None:
            assert location.endswith(entity_set + key.replace("'", "%27")) or location.endswith(
                entity_set + key
            )
        read = client.get(location)
        assert read.status_code == 200, read.text
        assert "Password" not in read.text or "secret-1" not in read.text
        for name, value in body.items():
            if name not in ("Password", "Value", "Certificate"):
                assert read.json()["d"][name] == value, (entity_set, name)
        if entity_set in POSTED_AGAIN:  # changed by posting the whole entity again (SAP)
            r = client.post(entity_set, json={**body, **change})
            assert r.status_code in (200, 201, 204), f"{entity_set} POST again: {r.text}"
        else:
            r = client.request(
                "MERGE", location, json=change, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 204, f"{entity_set} MERGE: {r.text}"
        read = client.get(location).json()["d"]
        for name, value in change.items():
            if name not in ("Password", "Value"):
                assert read[name] == value, (entity_set, name)
        assert client.delete(location).status_code == 204, entity_set
        assert client.get(location).status_code == 404, entity_set
    partners = client.get("Partners?$format=json").json()["d"]["results"]
    assert not [p for p in partners if p["Pid"] in ("NU_P", "NU_Q")]


def test_metadata(bearer: httpx.Client) -> None:
    r = bearer.get("$metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    assert 'Name="StringParameters"' in r.text


def test_batch(basic: httpx.Client) -> None:
    parts = [
        "--b",
        "Content-Type: multipart/mixed; boundary=c",
        "",
    ]
    for n in range(3):
        parts += [
            "--c",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "POST StringParameters HTTP/1.1",
            "Content-Type: application/json",
            "",
            json.dumps({"Pid": "NU_BATCH", "Id": f"P{n}", "Value": "v"}),
        ]
    parts += [
        "--c--",
        "--b",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        "GET StringParameters?$filter=Pid%20eq%20'NU_BATCH' HTTP/1.1",
        "Accept: application/json",
        "",
        "",
        "--b--",
        "",
    ]
    r = basic.post(
        "$batch",
        content="\r\n".join(parts).encode(),
        headers={"Content-Type": "multipart/mixed; boundary=b"},
    )
    assert r.status_code == 202, r.text
    assert r.text.count("HTTP/1.1 201 Created") == 3
    listed = basic.get("StringParameters?$filter=Pid eq 'NU_BATCH'").json()["d"]["results"]
    assert sorted(e["Id"] for e in listed) == ["P0", "P1", "P2"]
    assert basic.delete("Partners('NU_BATCH')").status_code == 204


def test_ui_sign_in_and_a_partner_page(new_user: NewUser, bearer: httpx.Client) -> None:
    r = bearer.post("StringParameters", json={"Pid": "NU_UI", "Id": "ADDRESS", "Value": "<b>x"})
    assert r.status_code == 201, r.text
    with httpx.Client(base_url=new_user.url, timeout=30) as browser:
        assert browser.get("/ui/partners").status_code in (302, 303, 307)
        form = browser.get("/ui/signin")
        assert form.status_code == 200
        token = CSRF_FIELD.search(form.text)
        assert token, form.text
        name, password = new_user.admin
        r = browser.post(
            "/ui/signin",
            data={"name": name, "password": "wrong", "csrf": token.group(1), "next": ""},
        )
        assert 400 <= r.status_code < 500 and "PG_SESSIONID" not in browser.cookies
        token = CSRF_FIELD.search(browser.get("/ui/signin").text)
        assert token
        r = browser.post(
            "/ui/signin",
            data={"name": name, "password": password, "csrf": token.group(1), "next": ""},
        )
        assert r.status_code in (302, 303), r.text
        assert "PG_SESSIONID" in browser.cookies
        page = browser.get("/ui/partners/NU_UI")
        assert page.status_code == 200, page.text
        assert "NU_UI" in page.text and "ADDRESS" in page.text
        assert "<b>x" not in page.text and "&lt;b&gt;x" in page.text
    assert bearer.delete("Partners('NU_UI')").status_code == 204

"""Who may call the API: Basic, OAuth bearer, roles, and CSRF as SAP does it."""

from __future__ import annotations

import uuid

import httpx
import jwt

from ..conftest import ADMIN_ROLE, Api, Server


def test_no_credentials_is_401_with_challenge(server: Server) -> None:
    r = httpx.get(server.api + "/StringParameters", headers={"Accept": "application/json"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    assert r.json()["error"]["message"]["value"]


def test_wrong_password_is_401_and_logged(server: Server) -> None:
    r = httpx.get(server.api + "/StringParameters", auth=(server.admin[0], "wrong"))
    assert r.status_code == 401
    assert f"wrong secret for user '{server.admin[0]}'" in server.log()


def test_malformed_basic_header_is_401(server: Server) -> None:
    r = httpx.get(server.api + "/", headers={"Authorization": "Basic %%%not-base64"})
    assert r.status_code == 401


def test_user_without_role_is_403(server: Server) -> None:
    name = "norole_" + uuid.uuid4().hex[:6]
    server.add_user(name, "pw-123456", "ESBMessaging.send")
    r = httpx.get(
        server.api + "/StringParameters",
        auth=(name, "pw-123456"),
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 403
    assert ADMIN_ROLE in r.json()["error"]["message"]["value"]


def test_write_without_csrf_token_is_403_required(server: Server, pid: str) -> None:
    r = httpx.post(
        server.api + "/StringParameters",
        auth=server.admin,
        json={"Pid": pid, "Id": "A", "Value": "v"},
    )
    assert r.status_code == 403
    assert r.headers["x-csrf-token"] == "Required"
    with Api(server) as api:
        assert api.get(f"StringParameters(Pid='{pid}',Id='A')").status_code == 404


def test_csrf_token_from_another_session_is_refused(server: Server, pid: str) -> None:
    with Api(server) as first, Api(server) as second:
        first.headers["X-CSRF-Token"] = second.headers["X-CSRF-Token"]
        r = first.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "v"})
        assert r.status_code == 403
        assert r.headers["x-csrf-token"] == "Required"


def test_csrf_token_without_its_cookie_is_refused(server: Server, pid: str) -> None:
    with Api(server) as api:
        token = api.headers["X-CSRF-Token"]
    r = httpx.post(
        server.api + "/StringParameters",
        auth=server.admin,
        headers={"X-CSRF-Token": token},
        json={"Pid": pid, "Id": "A", "Value": "v"},
    )
    assert r.status_code == 403


def test_csrf_fetch_then_write_succeeds(api: Api, pid: str) -> None:
    r = api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "v"})
    assert r.status_code == 201, r.text


def _token(server: Server, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        server.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )


def test_oauth_client_credentials_and_bearer_writes_without_csrf(server: Server, pid: str) -> None:
    client_id = "cli_" + uuid.uuid4().hex[:6]
    server.add_client(client_id, "s3cret-value", ADMIN_ROLE)
    r = _token(server, client_id, "s3cret-value")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    headers = {"Authorization": f"Bearer {body['access_token']}", "Accept": "application/json"}
    created = httpx.post(
        server.api + "/StringParameters",
        headers=headers,
        json={"Pid": pid, "Id": "T", "Value": "x"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["d"]["CreatedBy"] == f"oauth_client_{client_id}"


def test_oauth_client_in_form_fields(server: Server) -> None:
    client_id = "cli_" + uuid.uuid4().hex[:6]
    server.add_client(client_id, "form-secret", ADMIN_ROLE)
    r = httpx.post(
        server.url + "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": "form-secret",
        },
    )
    assert r.status_code == 200, r.text


def test_oauth_wrong_secret_and_unknown_client(server: Server) -> None:
    client_id = "cli_" + uuid.uuid4().hex[:6]
    server.add_client(client_id, "right", ADMIN_ROLE)
    for cid, secret in ((client_id, "wrong"), ("nobody_" + client_id, "right")):
        r = _token(server, cid, secret)
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_client"


def test_oauth_unsupported_grant_and_missing_grant(server: Server) -> None:
    r = httpx.post(server.url + "/oauth/token", data={"grant_type": "password"}, auth=("a", "b"))
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = httpx.post(server.url + "/oauth/token", data={}, auth=("a", "b"))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_tampered_and_foreign_tokens_are_401(server: Server) -> None:
    client_id = "cli_" + uuid.uuid4().hex[:6]
    server.add_client(client_id, "sec", ADMIN_ROLE)
    token = _token(server, client_id, "sec").json()["access_token"]
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    forged = jwt.encode(
        {"sub": client_id, "iss": "partnergate", "roles": [ADMIN_ROLE]},
        "guess-the-signing-key-of-the-server",
        algorithm="HS256",
    )
    for bad in (tampered, forged, "not-a-token"):
        r = httpx.get(server.api + "/StringParameters", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401, bad


def test_rotated_secret_invalidates_tokens(server: Server) -> None:
    client_id = "cli_" + uuid.uuid4().hex[:6]
    server.add_client(client_id, "old-secret", ADMIN_ROLE)
    token = _token(server, client_id, "old-secret").json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(server.api + "/Partners", headers=headers).status_code == 200
    done = server.cli("clients", "set-secret", client_id, "--secret-stdin", stdin="new-secret\n")
    assert done.returncode == 0, done.stderr
    assert httpx.get(server.api + "/Partners", headers=headers).status_code == 401
    assert _token(server, client_id, "old-secret").status_code == 401
    assert _token(server, client_id, "new-secret").status_code == 200


def test_changed_password_takes_effect_at_once(server: Server) -> None:
    name = "chg_" + uuid.uuid4().hex[:6]
    server.add_user(name, "first-pw", ADMIN_ROLE)
    assert httpx.get(server.api + "/Partners", auth=(name, "first-pw")).status_code == 200
    done = server.cli("users", "set-password", name, "--password-stdin", stdin="second-pw\n")
    assert done.returncode == 0, done.stderr
    assert httpx.get(server.api + "/Partners", auth=(name, "first-pw")).status_code == 401
    assert httpx.get(server.api + "/Partners", auth=(name, "second-pw")).status_code == 200
    assert server.cli("users", "remove", name).returncode == 0
    assert httpx.get(server.api + "/Partners", auth=(name, "second-pw")).status_code == 401


def test_no_secret_in_logs(server: Server) -> None:
    log = server.log()
    assert server.admin[1] not in log

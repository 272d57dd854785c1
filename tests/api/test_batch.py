"""$batch: GET parts and one change set that is all or nothing."""

from __future__ import annotations

import json

from ..conftest import Api


def batch_body(
    boundary: str, changeset: str, parts: list[tuple[str, str, dict | None]], gets: list[str] = ()
) -> bytes:
    lines: list[str] = []
    for url in gets:
        lines += [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            f"GET {url} HTTP/1.1",
            "Accept: application/json",
            "",
            "",
        ]
    if parts:
        lines += [f"--{boundary}", f"Content-Type: multipart/mixed; boundary={changeset}", ""]
        for method, url, body in parts:
            lines += [
                f"--{changeset}",
                "Content-Type: application/http",
                "Content-Transfer-Encoding: binary",
                "",
                f"{method} {url} HTTP/1.1",
                "Content-Type: application/json",
                "Accept: application/json",
                "",
            ]
            lines += [json.dumps(body) if body is not None else "", ""]
        lines += [f"--{changeset}--", ""]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode()


def send(api: Api, body: bytes, boundary: str = "batch_1"):
    return api.post(
        "$batch", content=body, headers={"Content-Type": f"multipart/mixed; boundary={boundary}"}
    )


def test_change_set_commits_together(api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "OLD", "Value": "v"})
    body = batch_body(
        "batch_1",
        "changeset_1",
        [
            ("POST", "StringParameters?user=userAbc", {"Pid": pid, "Id": "sp1", "Value": "1"}),
            ("POST", "AuthorizedUsers", {"User": pid.lower() + "_u", "Pid": pid}),
            ("PUT", f"StringParameters(Pid='{pid}',Id='OLD')", {"Value": "new"}),
        ],
        gets=[f"StringParameters(Pid='{pid}',Id='OLD')"],
    )
    r = send(api, body)
    assert r.status_code == 202, r.text
    assert r.headers["content-type"].startswith("multipart/mixed")
    text = r.text
    assert (
        text.count("HTTP/1.1 201 Created") == 2
        and "HTTP/1.1 204 No Content" in text
        and "HTTP/1.1 200 OK" in text
    )
    created = api.get(f"StringParameters(Pid='{pid}',Id='sp1')").json()["d"]
    assert created["CreatedBy"] == "userAbc"
    assert api.get(f"StringParameters(Pid='{pid}',Id='OLD')").json()["d"]["Value"] == "new"


def test_third_change_fails_nothing_stored(api: Api, pid: str) -> None:
    body = batch_body(
        "batch_2",
        "changeset_2",
        [
            ("POST", "StringParameters", {"Pid": pid, "Id": "a", "Value": "1"}),
            ("POST", "StringParameters", {"Pid": pid, "Id": "b", "Value": "2"}),
            ("POST", "StringParameters", {"Pid": "bad pid", "Id": "c", "Value": "3"}),
        ],
    )
    r = send(api, body, "batch_2")
    assert r.status_code == 202
    assert "HTTP/1.1 400 Bad Request" in r.text and "201 Created" not in r.text
    assert api.get(f"StringParameters(Pid='{pid}',Id='a')").status_code == 404
    assert api.get(f"StringParameters(Pid='{pid}',Id='b')").status_code == 404


def test_user_credentials_alone_in_their_change_set(api: Api, pid: str) -> None:
    ucp = (
        "POST",
        "UserCredentialParameters",
        {"Pid": pid, "Id": "U", "User": "u", "Password": "p"},
    )
    mixed = batch_body(
        "b3", "c3", [ucp, ("POST", "StringParameters", {"Pid": pid, "Id": "s", "Value": "1"})]
    )
    r = send(api, mixed, "b3")
    assert "400 Bad Request" in r.text
    assert api.get(f"StringParameters(Pid='{pid}',Id='s')").status_code == 404
    alone = send(api, batch_body("b4", "c4", [ucp]), "b4")
    assert "201 Created" in alone.text
    assert api.get(f"UserCredentialParameters(Pid='{pid}',Id='U')").status_code == 200


def test_malformed_batch_is_400(api: Api) -> None:
    r = api.post(
        "$batch", content=b"garbage", headers={"Content-Type": "multipart/mixed; boundary=x"}
    )
    assert r.status_code == 400
    r = api.post("$batch", content=b"--x--", headers={"Content-Type": "multipart/mixed"})
    assert r.status_code == 400


def test_batch_needs_csrf(api: Api) -> None:
    del api.headers["X-CSRF-Token"]
    r = send(api, batch_body("b5", "c5", [], gets=["Partners"]), "b5")
    assert r.status_code == 403

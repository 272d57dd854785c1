"""An answer tells the truth: a write is committed exactly when its answer is a success.

Finding 3 of issue 10: a user whose name could not go into the ``Location`` header was
stored while the client got a 500 (or a dropped connection); the same inside a change set
committed all five operations; a bad query part made the whole ``$batch`` a 406 while its
change set stayed committed. Each test reads the directory back through the API.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest

from ..conftest import Api, Server
from .directory_state import (
    assert_odata_error,
    part_statuses,
    send_batch,
    send_json,
    state,
)

# -- a single write ------------------------------------------------------------------------

UNUSUAL_USERS = [
    "euro€user",
    "emoji😀user",
    "zwj👨‍👩‍👧family",
    "quote'user",
    "slash/user",
    "percent%41user",
    "hash#and?query",
    "space user",
    "latin1éuser",
    "amp&eq=plus+",
]


@pytest.mark.parametrize("name", UNUSUAL_USERS)
def test_unusual_user_is_created_and_its_location_works(api: Api, pid: str, name: str) -> None:
    user = f"{name}_{pid}".lower()
    r = send_json(api, "POST", "AuthorizedUsers", {"User": user, "Pid": pid})
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location.isascii() and not re.search(r"[\s\"<>\\^`{|}]", location)
    assert location == r.json()["d"]["__metadata"]["uri"]
    path = urlsplit(location).path
    assert path.startswith("/api/v1/AuthorizedUsers(")
    assert unquote(path.removeprefix("/api/v1/")) == "AuthorizedUsers(" + quote_key(user) + ")"
    got = api.get(location)
    assert got.status_code == 200, got.text
    assert got.json()["d"]["User"] == user
    assert state(api, pid)["AuthorizedUsers"][0]["User"] == user


def quote_key(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@pytest.mark.parametrize(
    "name",
    ["nl\nuser", "cr\ruser", "tab\tuser", "nul\x00user", "ls\u2028user", "nel\x85user", "del\x7f"],
)
def test_user_with_a_control_character_is_refused_and_not_stored(
    api: Api, pid: str, name: str
) -> None:
    before = state(api, pid)
    r = send_json(api, "POST", "AuthorizedUsers", {"User": name, "Pid": pid})
    message = assert_odata_error(r, 400)
    assert "User" in message
    assert "location" not in r.headers
    assert state(api, pid) == before


def test_lone_surrogate_is_refused(api: Api, pid: str) -> None:
    before = state(api, pid)
    r = send_json(api, "POST", "AuthorizedUsers", {"User": "a\ud800b", "Pid": pid})
    assert_odata_error(r, 400)
    r = api.post(
        "AuthorizedUsers",
        content=b'{"User":"a\\udc00b","Pid":"' + pid.encode() + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert_odata_error(r, 400)
    assert state(api, pid) == before


def test_every_entity_set_answers_a_location_that_reads_back(
    api: Api, pid: str, tmp_path: object
) -> None:
    from partnergate.security import pki

    ca = pki.init_ca(tmp_path)  # type: ignore[arg-type]
    cert = pki.issue_client(ca, tmp_path, "loc_" + pid, password="pw").certificate  # type: ignore[arg-type]
    from cryptography.hazmat.primitives import serialization

    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    bodies = {
        "StringParameters": {"Pid": pid, "Id": "a~b<c>@d", "Value": "v"},
        "BinaryParameters": {
            "Pid": pid,
            "Id": "bin.1",
            "ContentType": "text",
            "Value": base64.b64encode(b"x").decode(),
        },
        "UserCredentialParameters": {"Pid": pid, "Id": "cred", "User": "u€", "Password": "p"},
        "AlternativePartners": {"Agency": "Agé/ncy", "Scheme": "S'c h", "Id": "Ïd%", "Pid": pid},
        "AuthorizedUsers": {"User": f"ü'/ser{pid.lower()}", "Pid": pid},
        "CertificateMappingRules": {
            "Id": "rule_" + pid,
            "Kind": "Thumbprint",
            "User": "rüle user",
            "Thumbprint": "ab" * 32,
        },
        "CertificateUserMappings": {"User": "mäpping user", "Certificate": pem},
    }
    for entity_set, body in bodies.items():
        r = send_json(api, "POST", entity_set, body)
        assert r.status_code == 201, (entity_set, r.text)
        location = r.headers["location"]
        assert location.isascii() and " " not in location, location
        assert location == r.json()["d"]["__metadata"]["uri"]
        got = api.get(location)
        assert got.status_code == 200, (entity_set, location, got.text)
        created = {k: v for k, v in r.json()["d"].items() if k != "Password"}
        read = {k: v for k, v in got.json()["d"].items() if k != "Password"}
        assert read == created or entity_set == "CertificateUserMappings"
        assert api.delete(location).status_code == 204, entity_set
        assert api.get(location).status_code == 404


def test_put_merge_delete_address_an_unusual_key(api: Api, pid: str) -> None:
    other = pid + "_2"
    user = f"€ 'x/y%z😀{pid.lower()}"
    assert send_json(api, "POST", "AuthorizedUsers", {"User": user, "Pid": pid}).status_code == 201
    url = "AuthorizedUsers(" + quote(quote_key(user), safe="'") + ")"
    assert send_json(api, "PUT", url, {"Pid": other}).status_code == 204
    assert api.get(url).json()["d"]["Pid"] == other
    merge = send_json(api, "POST", url, {"Pid": pid}, headers={"X-HTTP-Method": "MERGE"})
    assert merge.status_code == 204, merge.text
    assert api.get(url).json()["d"]["Pid"] == pid
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


@pytest.mark.parametrize("raw", ["cr%0D", "tab%09", "nul%00", "ls%E2%80%A8", "nel%C2%85"])
def test_put_merge_delete_with_a_control_character_in_the_key_are_400(
    api: Api, pid: str, raw: str
) -> None:
    send_json(api, "POST", "StringParameters", {"Pid": pid, "Id": "keep", "Value": "v"})
    before = state(api, pid)
    url = f"AuthorizedUsers('{raw}')"
    assert_odata_error(api.get(url), 400)
    assert_odata_error(send_json(api, "PUT", url, {"Pid": pid}), 400)
    assert_odata_error(send_json(api, "MERGE", url, {"Pid": pid}), 400)
    assert_odata_error(api.delete(url), 400)
    assert_odata_error(api.delete(f"Partners('{raw}')"), 400)
    assert_odata_error(api.delete(f"StringParameters(Pid='{pid}',Id='{raw}')"), 400)
    assert state(api, pid) == before


def test_key_that_is_not_utf8_is_400(api: Api) -> None:
    assert_odata_error(api.get("AuthorizedUsers('%FF%FE')"), 400)
    assert_odata_error(api.get("AuthorizedUsers('%ED%A0%80')"), 400)  # an encoded surrogate


# -- $format -------------------------------------------------------------------------------


def test_unknown_format_is_406_with_an_odata_error(server: Server, api: Api) -> None:
    r = api.get("", params={"$format": "bogus"})
    assert_odata_error(r, 406)
    xml = api.get("", params={"$format": "bogus"}, headers={"Accept": "application/xml"})
    assert "Not Acceptable" in assert_odata_error(xml, 406)
    anonymous = httpx.get(server.api + "/?$format=bogus", timeout=30)
    assert_odata_error(anonymous, 401)
    assert_odata_error(api.get("StringParameters", params={"$format": "x;y"}), 406)


def test_write_with_unknown_format_is_406_and_writes_nothing(api: Api, pid: str) -> None:
    before = state(api, pid)
    body = {"Pid": pid, "Id": "fmt", "Value": "v"}
    r = send_json(api, "POST", "StringParameters", body, params={"$format": "bogus"})
    assert_odata_error(r, 406)
    assert state(api, pid) == before


# -- $batch --------------------------------------------------------------------------------


def five_creates(pid: str) -> list[tuple[str, str, object]]:
    return [
        ("POST", "StringParameters", {"Pid": pid, "Id": f"s{i}", "Value": str(i)})
        for i in range(1, 5)
    ]


@pytest.mark.parametrize("bad", ["nl\nuser", "nul\x00", "cr\r", "x" * 151, "İ" * 76])
def test_change_set_whose_fifth_operation_fails_writes_nothing(
    api: Api, pid: str, bad: str
) -> None:
    before = state(api, pid)
    fifth = ("POST", "AuthorizedUsers", {"User": bad, "Pid": pid})
    r = send_batch(api, [[*five_creates(pid), fifth]])
    assert r.status_code == 202, r.text
    assert part_statuses(r) == [400]
    assert state(api, pid) == before


def test_change_set_whose_fifth_user_is_unusual_commits_all_with_working_locations(
    api: Api, pid: str
) -> None:
    user = f"euro€user\u00e9😀'{pid.lower()}"
    fifth = ("POST", "AuthorizedUsers", {"User": user, "Pid": pid})
    r = send_batch(api, [[*five_creates(pid), fifth]])
    assert r.status_code == 202, r.text
    assert part_statuses(r) == [201] * 5
    locations = re.findall(r"^Location: (\S+)\r$", r.text, re.MULTILINE)
    assert len(locations) == 5
    for location in locations:
        assert location.isascii()
        assert api.get(location).status_code == 200, location
    after = state(api, pid)
    assert len(after["StringParameters"]) == 4
    assert [u["User"] for u in after["AuthorizedUsers"]] == [user]


def test_third_of_five_failing_writes_nothing(api: Api, pid: str) -> None:
    ops = five_creates(pid)
    ops.insert(2, ("POST", "StringParameters", {"Pid": "bad pid", "Id": "x", "Value": "v"}))
    before = state(api, pid)
    r = send_batch(api, [ops])
    assert part_statuses(r) == [400]
    assert state(api, pid) == before


def test_bad_query_part_does_not_hide_a_committed_change_set(api: Api, pid: str) -> None:
    r = send_batch(
        api,
        [
            five_creates(pid),
            ("GET", "StringParameters?$format=bogus", None),
            ("GET", "NoSuchSet", None),
            ("GET", f"StringParameters(Pid='{pid}',Id='s1')", None),
        ],
    )
    assert r.status_code == 202, r.text
    assert part_statuses(r) == [201, 201, 201, 201, 406, 404, 200]
    assert '"Not Acceptable"' in r.text
    assert len(state(api, pid)["StringParameters"]) == 4


def test_query_part_before_a_failing_change_set(api: Api, pid: str) -> None:
    send_json(api, "POST", "StringParameters", {"Pid": pid, "Id": "old", "Value": "v"})
    before = state(api, pid)
    r = send_batch(
        api,
        [
            ("GET", f"StringParameters(Pid='{pid}',Id='old')?$format=bogus", None),
            [
                ("PUT", f"StringParameters(Pid='{pid}',Id='old')", {"Value": "new"}),
                ("DELETE", f"StringParameters(Pid='{pid}',Id='old')", None),
                ("POST", "AuthorizedUsers", {"User": "a\nb", "Pid": pid}),
            ],
            [("POST", "StringParameters", {"Pid": pid, "Id": "later", "Value": "ok"})],
        ],
    )
    assert r.status_code == 202, r.text
    assert part_statuses(r) == [406, 400, 201]
    after = {p["Id"]: p for p in state(api, pid)["StringParameters"]}
    assert sorted(after) == ["later", "old"]
    assert after["old"] == before["StringParameters"][0]


def test_batch_with_unknown_format_of_its_own_is_406(api: Api, pid: str) -> None:
    from .directory_state import batch

    before = state(api, pid)
    ctype, body = batch([five_creates(pid)])
    r = api.post("$batch?$format=bogus", content=body, headers={"Content-Type": ctype})
    assert_odata_error(r, 406)
    assert state(api, pid) == before


# -- the path is decoded once --------------------------------------------------------------


def test_encoded_user_credential_parameters_still_stand_alone(api: Api, pid: str) -> None:
    before = state(api, pid)
    ucp = {"Pid": pid, "Id": "cred", "User": "u", "Password": "p"}
    for name in ("UserCredential%50arameters", "%55serCredentialParameters"):
        r = send_batch(
            api,
            [
                [
                    ("POST", name, ucp),
                    ("POST", "StringParameters", {"Pid": pid, "Id": "s", "Value": "v"}),
                ]
            ],
        )
        assert part_statuses(r) == [400], r.text
        assert "must contain only that one request" in r.text
    mapping = ("DELETE", "CertificateUser%4Dappings('00')", None)
    r = send_batch(
        api, [[mapping, ("POST", "StringParameters", {"Pid": pid, "Id": "s", "Value": "v"})]]
    )
    assert part_statuses(r) == [400]
    assert state(api, pid) == before


def test_encoded_entity_set_names_in_plain_requests_and_change_sets(api: Api, pid: str) -> None:
    r = send_json(api, "POST", "StringParameter%73", {"Pid": pid, "Id": "enc", "Value": "v"})
    assert r.status_code == 201, r.text
    assert "/StringParameters(" in r.headers["location"]
    assert api.get(f"%53tringParameters(Pid='{pid}',Id='enc')").status_code == 200
    r = send_batch(
        api, [[("POST", "Authorized%55sers", {"User": f"enc_{pid.lower()}", "Pid": pid})]]
    )
    assert part_statuses(r) == [201]
    # decoded once: %2553 is "%53", which names no entity set
    before = state(api, pid)
    twice = send_json(api, "POST", "%2553tringParameters", {"Pid": pid, "Id": "x", "Value": "v"})
    assert_odata_error(twice, 404)
    r = send_batch(api, [[("POST", "%2553tringParameters", {"Pid": pid, "Id": "y", "Value": "v"})]])
    assert part_statuses(r) == [404]
    assert state(api, pid) == before


def test_roles_read_the_decoded_path(server: Server, api: Api, pid: str) -> None:
    name, password = "monitor_" + pid.lower(), "pw-" + pid
    server.add_user(name, password, "AuthGroup_BusinessExpert")
    headers = {"Accept": "application/json"}
    with httpx.Client(base_url=server.api + "/", auth=(name, password), headers=headers) as mon:
        assert mon.get("MessageProcessing%4Cogs").status_code == 200
        assert mon.get("MessageProcessingLogs").status_code == 200
        denied = send_json(mon, "POST", "StringParameter%73", {"Pid": pid, "Id": "m", "Value": "v"})
        assert "role" in assert_odata_error(denied, 403)
        assert "role" in assert_odata_error(mon.get("%53tringParameters"), 403)
    assert state(api, pid)["StringParameters"] == []


@pytest.mark.parametrize("raw", ["nl%0Auser", "cr%0D", "nul%00", "ls%E2%80%A8"])
def test_change_set_addressing_a_key_with_a_control_character_writes_nothing(
    api: Api, pid: str, raw: str
) -> None:
    before = state(api, pid)
    for method, body in (("PUT", {"Pid": pid}), ("MERGE", {"Pid": pid}), ("DELETE", None)):
        r = send_batch(api, [[*five_creates(pid), (method, f"AuthorizedUsers('{raw}')", body)]])
        assert part_statuses(r) == [400], r.text
    assert state(api, pid) == before


def test_encoded_newline_in_a_plain_url_changes_nothing(api: Api, pid: str) -> None:
    send_json(api, "POST", "StringParameters", {"Pid": pid, "Id": "keep", "Value": "v"})
    before = state(api, pid)
    for r in (
        send_json(api, "PUT", "AuthorizedUsers('nl%0Auser')", {"Pid": pid}),
        api.delete(f"StringParameters(Pid='{pid}',Id='k%0Aeep')"),
        api.delete(f"Partners('{pid}%0A')"),
    ):
        assert 400 <= r.status_code < 500, r.text
    assert state(api, pid) == before


# -- the rules themselves, without a server -------------------------------------------------


def test_path_segments_are_decoded_once_and_strictly() -> None:
    from partnergate.odata.errors import BadRequest
    from partnergate.odata.paths import entity_set_name, parse_resource, split_path
    from partnergate.web.odata_service import SERVED

    assert split_path("UserCredential%50arameters") == ["UserCredentialParameters"]
    assert split_path("%2553tringParameters") == ["%53tringParameters"]
    assert entity_set_name("%55serCredentialParameters(Pid='a',Id='b')") == (
        "UserCredentialParameters"
    )
    assert entity_set_name("%FF") is None and entity_set_name("") is None
    resource = parse_resource("AuthorizedUsers('a%2Fb%27%27c')", SERVED)
    assert resource.kind == "entity" and resource.key == {"User": "a/b'c"}
    with pytest.raises(BadRequest):
        parse_resource("AuthorizedUsers('%C3')", SERVED)


def test_location_is_one_ascii_uri_for_any_key() -> None:
    from partnergate.model.entities import AUTHORIZED_USER, STRING_PARAMETER
    from partnergate.odata.headers import check_field
    from partnergate.odata.values import entity_uri, uri_text

    base = uri_text("http://hôst:8080/api/v1/")
    assert base == "http://h%C3%B4st:8080/api/v1/"
    for user in ("euro€", "a'b", "x/y?z#w", "%41", "😀", "sp ace"):
        uri = entity_uri(AUTHORIZED_USER, {"User": user}, base)
        check_field("Location", uri)
        assert uri.isascii() and " " not in uri
    uri = entity_uri(STRING_PARAMETER, {"Pid": "P", "Id": "a~b"}, base)
    assert uri.endswith("StringParameters(Pid='P',Id='a~b')")


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "euro€", "nul\x00", "del\x7f"])
def test_header_values_that_cannot_be_sent_are_refused(value: str) -> None:
    from partnergate.odata.batch import BatchResponse, serialize_batch
    from partnergate.odata.headers import UnsendableHeader, check_field

    with pytest.raises(UnsendableHeader):
        check_field("Location", value)
    with pytest.raises(ValueError):
        serialize_batch([BatchResponse(201, {"Location": value}, b"")])
    check_field("Location", "latin1 é\tok")


@pytest.mark.parametrize(
    ("fifth", "status"),
    [
        (("POST", "StringParameters?$format=bogus", {"Pid": "P", "Id": "f", "Value": "v"}), 406),
        (("POST", "MessageProcessingLogs", {"MessageGuid": "x"}), 405),
        (("POST", "NoSuchSet", {"a": 1}), 404),
        (("POST", "StringParameters", b'{"Pid": "P", "Id": "f", "Value": "\\ud800"}'), 400),
        (("POST", "StringParameters", b"\xff\xfe not json"), 400),
        (("PUT", "StringParameters(Pid='P',Id='missing')", {"Value": "v"}), 404),
        (("POST", "$batch", None), 400),
    ],
)
def test_change_set_with_any_failing_fifth_operation_writes_nothing(
    api: Api, pid: str, fifth: tuple[str, str, object], status: int
) -> None:
    before = state(api, pid)
    r = send_batch(api, [[*five_creates(pid), fifth]])
    assert r.status_code == 202, r.text
    assert part_statuses(r) == [status], r.text
    assert state(api, pid) == before

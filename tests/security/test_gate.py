"""No header, cookie or credential byte sequence is a 500 (issue 10, finding 6).

Every face (the API, flows, ``/whoami``, ``/oauth/token``, the UI) is sent Authorization
headers and cookies a client library would never send: bytes that are not ASCII or not
UTF-8, empty and huge values, a scheme without credentials, garbage tokens, several
headers, odd cookie separators. Each is a 4xx like any other bad credential, and the
server keeps answering.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterator

import httpx
import pytest

from ..conftest import ADMIN_ROLE, Server, start_server, stop_server
from ..flows.test_sender_flow import EXAMPLES, SEND
from .helpers import raw_request


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


AUTHORIZATION: dict[str, list[bytes]] = {
    "latin-1 byte": [b"Basic \xe9"],
    "utf-8 text": ["Basic é".encode()],
    "base64 of non-utf-8": [b"Basic " + b64(b"\xff\xfe:secret")],
    "base64 of latin-1 name": [b"Basic " + b64("usér:pw".encode("latin-1"))],
    "basic alone": [b"Basic"],
    "basic space": [b"Basic "],
    "basic padding only": [b"Basic ===="],
    "basic no colon": [b"Basic " + b64(b"nocolon")],
    "basic empty name": [b"Basic " + b64(b":pw")],
    "basic huge name": [b"Basic " + b64(b"n" * 3000 + b":pw")],
    "basic huge password": [b"Basic " + b64(b"someone:" + b"p" * 5000)],
    "basic huge header": [b"Basic " + b"A" * 9000],
    "basic control bytes": [b"Basic " + b64(b"a\x00b:\x01\x7f")],
    "basic nul name": [b"Basic " + b64(b"\x00:pw")],
    "basic nul password": [b"Basic " + b64(b"someone:p\x00w")],
    "basic c1 name": [b"Basic " + b64("a\u0085b:pw".encode())],
    "basic surrogate bytes": [b"Basic " + b64(b"\xed\xa0\x80:pw")],
    "bearer alone": [b"Bearer"],
    "bearer garbage": [b"Bearer garbage"],
    "bearer three dots": [b"Bearer a.b.c"],
    "bearer non-ascii": [b"Bearer \xe9\xff"],
    "bearer json garbage": [b"Bearer " + b64(b'{"alg":') + b"." + b64(b"[]") + b".x"],
    "bearer alg none": [
        b"Bearer " + b64(b'{"alg":"none"}').rstrip(b"=") + b"." + b64(b'{"sub":"x"}') + b"."
    ],
    "bearer huge": [b"Bearer " + b"x" * 7000],
    "unknown scheme": [b"Negotiate abc"],
    "scheme only latin-1": [b"\xe9\xe9"],
    "empty": [b""],
    "spaces": [b"   "],
    "two headers": [b"Basic " + b64(b"a:b"), b"Basic " + b64(b"c:d")],
    "many headers": [b"Basic \xe9"] * 20,
}

COOKIES: dict[str, bytes] = {
    "finding 6": b"PG_SESSIONID=a.b.c.\xe9",
    "latin-1 only": b"PG_SESSIONID=\xe9",
    "utf-8": "PG_SESSIONID=é".encode(),
    "empty value": b"PG_SESSIONID=",
    "no value": b"PG_SESSIONID",
    "quoted": b'PG_SESSIONID="' + b"A" * 43 + b'"',
    "unknown id": b"PG_SESSIONID=" + b"A" * 43,
    "huge": b"PG_SESSIONID=" + b"A" * 6000,
    "separators only": b";;; ;=;",
    "equals only": b"=",
    "twice": b"PG_SESSIONID=x; PG_SESSIONID=" + b"B" * 43,
    "comma separated": b"a=b, PG_SESSIONID=c",
    "control bytes": b"PG_SESSIONID=\x01\x02\x7f",
    "flash garbage": b"PG_FLASH=%ff%fe|\xe9; PG_SIGNIN=\xe9",
    "signin garbage": b"PG_SIGNIN=a.b.c.\xe9",
}


@pytest.fixture(scope="module")
def flows_server(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Server]:
    env = {"PARTNERGATE_FLOWS": str(EXAMPLES)}
    srv = start_server(tmp_path_factory.mktemp("gate"), store_url, env)
    try:
        yield srv
    finally:
        stop_server(srv)


TARGETS = [
    ("GET", "/api/v1/"),
    ("GET", "/api/v1/StringParameters"),
    ("POST", SEND),
    ("GET", "/whoami"),
    ("POST", "/oauth/token?grant_type=client_credentials"),
]


def assert_refused(status: int, what: str) -> None:
    assert status < 500, f"{what}: {status}"
    assert status in (400, 401, 403, 404, 429, 431), f"{what}: {status}"


@pytest.mark.parametrize("case", sorted(AUTHORIZATION))
def test_authorization_bytes_are_refused_not_500(flows_server: Server, case: str) -> None:
    for method, path in TARGETS:
        headers = [(b"Authorization", value) for value in AUTHORIZATION[case]]
        headers.append((b"Content-Type", b"application/x-www-form-urlencoded"))
        status = raw_request(flows_server.url, method, path, headers, b"grant_type=x")
        assert_refused(status, f"{method} {path} with {case}")
    assert httpx.get(flows_server.url + "/health").status_code == 200


@pytest.mark.parametrize("case", sorted(COOKIES))
def test_cookie_bytes_are_no_session_not_500(flows_server: Server, case: str) -> None:
    cookie = [(b"Cookie", COOKIES[case])]
    assert_refused(raw_request(flows_server.url, "GET", "/api/v1/StringParameters", cookie), case)
    assert_refused(raw_request(flows_server.url, "POST", SEND, cookie), case)
    ui = raw_request(flows_server.url, "GET", "/ui/partners", cookie)
    protocol_error = b"\x01" in COOKIES[case]  # h11 refuses control bytes: 400
    assert ui == (400 if protocol_error else 303), f"{case}: {ui}"  # to the sign-in page
    form = raw_request(flows_server.url, "GET", "/ui/signin", cookie)
    assert form == (400 if protocol_error else 200), f"{case}: {form}"
    signin = raw_request(
        flows_server.url,
        "POST",
        "/ui/signin",
        [*cookie, (b"Content-Type", b"application/x-www-form-urlencoded")],
        b"name=x&password=y&csrf=z",
    )
    assert signin == (400 if protocol_error else 403), f"{case}: {signin}"


def test_a_forged_authorization_with_a_good_session_is_still_refused(
    flows_server: Server,
) -> None:
    name, password = "gate_" + uuid.uuid4().hex[:8], secrets.token_urlsafe(12)
    flows_server.add_user(name, password, ADMIN_ROLE)
    fetched = httpx.get(
        flows_server.api + "/", auth=(name, password), headers={"X-CSRF-Token": "Fetch"}
    )
    cookie = fetched.cookies["PG_SESSIONID"]
    headers = [(b"Cookie", b"PG_SESSIONID=" + cookie.encode()), (b"Authorization", b"Basic \xe9")]
    assert raw_request(flows_server.url, "GET", "/api/v1/StringParameters", headers) == 401
    good = [(b"Cookie", b"PG_SESSIONID=" + cookie.encode())]
    assert raw_request(flows_server.url, "GET", "/api/v1/StringParameters", good) == 200


def test_credentials_in_utf8_sign_in(flows_server: Server) -> None:
    """RFC 7617 §2.1: the realm says charset="UTF-8", and such names and passwords work."""
    name, password = "gäte_" + uuid.uuid4().hex[:6], "pässwörd-€-" + secrets.token_urlsafe(6)
    flows_server.add_user(name, password, ADMIN_ROLE)
    header = b"Basic " + b64(f"{name}:{password}".encode())
    status = raw_request(
        flows_server.url, "GET", "/api/v1/StringParameters", [(b"Authorization", header)]
    )
    assert status == 200


def test_the_oauth_endpoint_refuses_bad_client_bytes(flows_server: Server) -> None:
    for value in (b"Basic \xe9", b"Basic " + b64(b"\xff:\xfe"), b"Basic " + b64(b"%zz:%")):
        status = raw_request(
            flows_server.url,
            "POST",
            "/oauth/token",
            [
                (b"Authorization", value),
                (b"Content-Type", b"application/x-www-form-urlencoded"),
            ],
            b"grant_type=client_credentials",
        )
        assert status == 401, value
    for client in (b"%C3%A9%FF", b"a%00b", b"%00", b"x" * 300):
        form = b"grant_type=client_credentials&client_id=" + client + b"&client_secret=%FF%00"
        status = raw_request(
            flows_server.url,
            "POST",
            "/oauth/token",
            [(b"Content-Type", b"application/x-www-form-urlencoded")],
            form,
        )
        assert status == 401, client


@pytest.mark.parametrize("name", ["a\x00b", "\x00", "n" * 151, "", "x\u0085y"])
def test_the_sign_in_form_refuses_names_no_account_has(flows_server: Server, name: str) -> None:
    from .helpers import sign_in

    with httpx.Client(base_url=flows_server.url, timeout=30) as browser:
        page = sign_in(browser, name, "pw\x00")
    assert page.status_code == 400
    assert "The user name or the password is wrong." in page.text


@pytest.mark.parametrize("host", [b"\xe9", b"a b", b"[::1", b"x" * 3000, b""])
def test_an_odd_host_header_is_no_500(flows_server: Server, host: bytes) -> None:
    name, password = "host_" + uuid.uuid4().hex[:8], secrets.token_urlsafe(12)
    flows_server.add_user(name, password, ADMIN_ROLE)
    basic = (b"Authorization", b"Basic " + b64(f"{name}:{password}".encode()))
    fetch = (b"X-CSRF-Token", b"Fetch")
    for method, path, headers in [
        ("GET", "/api/v1/", [basic, fetch]),
        ("GET", "/api/v1/", []),
        ("GET", "/ui/partners?x=1", []),
        ("GET", "/ui/signin", []),
        ("GET", "/whoami", [basic]),
    ]:
        status = raw_request(flows_server.url, method, path, headers, host=host)
        assert status < 500, (method, path, status)

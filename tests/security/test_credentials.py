"""The rules for reading credentials from raw header bytes (security/credentials.py)."""

from __future__ import annotations

import base64
import random

import pytest

from partnergate.security.credentials import (
    Basic,
    Bearer,
    Malformed,
    plausible,
    read_authorization,
    read_cookie,
)

SESSION_ID = "A" * 43


def test_any_bytes_are_read_or_malformed_never_an_error() -> None:
    rng = random.Random(10)
    alphabet = b'Basic Bearer:=;,"\x00\xe9\xff AZaz09+/-_.'
    for _ in range(5000):
        size = rng.randrange(0, 80)
        if rng.random() < 0.5:
            value = bytes(rng.randrange(256) for _ in range(size))
        else:
            value = bytes(rng.choice(alphabet) for _ in range(size))
        found = read_authorization([value])
        assert found is None or isinstance(found, Basic | Bearer | Malformed)
        if isinstance(found, Malformed):
            assert found.status in (400, 401) and found.reason
        cookie = read_cookie([value, b"PG_SESSIONID=" + value], "PG_SESSIONID")
        assert cookie is None or len(cookie) == 43
    payloads = [b"user:pw", b"\xff:\xfe", b"a\x00:b", "ü:€".encode(), b":", b""]
    for payload in payloads:
        read_authorization([b"Basic " + base64.b64encode(payload)])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"Basic " + base64.b64encode(b"alice:s3cret"), Basic("alice", "s3cret")),
        (b"basic  " + base64.b64encode(b"alice:a:b"), Basic("alice", "a:b")),
        (b"Basic " + base64.b64encode("jürgen:pässwort".encode()), Basic("jürgen", "pässwort")),
        (b"Bearer abc.def.ghi", Bearer("abc.def.ghi")),
        (b"BEARER x", Bearer("x")),
    ],
)
def test_well_formed_credentials_are_read(raw: bytes, expected: object) -> None:
    assert read_authorization([raw]) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"Basic \xe9",
        b"Basic",
        b"Basic " + base64.b64encode(b"\xff:x"),
        b"Basic " + base64.b64encode(b"nocolon"),
        b"Basic " + base64.b64encode(b":empty-name"),
        b"Basic " + base64.b64encode(b"n\x00ul:x"),
        b"Basic " + b"A" * 9000,
        b"Bearer",
        b"Bearer \xe9",
        b"Digest x",
        b"",
    ],
)
def test_malformed_credentials_are_401(raw: bytes) -> None:
    found = read_authorization([raw])
    assert isinstance(found, Malformed) and found.status == 401


def test_several_authorization_headers_are_400() -> None:
    found = read_authorization([b"Basic eDp5", b"Basic eDp5"])
    assert isinstance(found, Malformed) and found.status == 400


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([b"PG_SESSIONID=" + SESSION_ID.encode()], SESSION_ID),
        ([b"a=b; PG_SESSIONID=" + SESSION_ID.encode() + b"; c=d"], SESSION_ID),
        ([b"PG_SESSIONID=bad; PG_SESSIONID=" + SESSION_ID.encode()], SESSION_ID),
        ([b"PG_SESSIONID=x", b"PG_SESSIONID=" + SESSION_ID.encode()], SESSION_ID),
        ([b'PG_SESSIONID="' + SESSION_ID.encode() + b'"'], SESSION_ID),
        ([b"PG_SESSIONID=a.b.c.\xe9"], None),
        ([b"PG_SESSIONIDX=" + SESSION_ID.encode()], None),
        ([b"PG_SESSIONID"], None),
        ([], None),
    ],
)
def test_the_session_cookie_is_read(headers: list[bytes], expected: str | None) -> None:
    assert read_cookie(headers, "PG_SESSIONID") == expected


def test_plausible_names() -> None:
    assert plausible("alice", "pw")
    assert plausible("n" * 150, "")
    assert not plausible("", "pw")
    assert not plausible("n" * 151, "pw")
    assert not plausible("a\x00b", "pw")
    assert not plausible("a\ud800b", "pw")
    assert not plausible("alice", "p" * 1025)

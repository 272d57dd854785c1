"""Fuzz ``$batch``: boundaries, parts, nested change sets, broken MIME.

Besides the property of :mod:`.fuzz_support` (an answer, no 5xx, a refused write changes
nothing), a batch whose answer holds no successful write (no ``201``/``204`` part) must
leave the store as it was: a change set is all or nothing, and says so.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from .fuzz_support import (
    KEYS,
    Target,
    entity_body,
    key_predicate,
    start_target,
    stop_target,
)

WRITABLE = tuple(s for s in KEYS if not s.startswith("MessageProcessing"))
BCHARS = string.ascii_letters + string.digits + "'()+_,-./:=? "


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, own_store: str) -> Iterator[Target]:
    found = start_target(tmp_path_factory.mktemp("fuzz_batch"), own_store)
    try:
        yield found
    finally:
        stop_target(found)


def wrote_nothing(response: httpx.Response) -> bool:
    """No part of the answer reports a successful write."""
    if 400 <= response.status_code < 500:
        return True
    return not re.search(rb"HTTP/1\.[01] (201|204)", response.content)


boundary = st.one_of(
    st.sampled_from(["batch_1", "changeset_1", "b", "x" * 70, "a b", "=_?", "batch_1--"]),
    st.text(BCHARS, min_size=1, max_size=20),
)


@st.composite
def get_part(draw: st.DrawFn, queries: bool) -> list[str]:
    entity_set = draw(st.sampled_from([*KEYS, "Nope", "$metadata"]))
    url = entity_set
    if entity_set in KEYS and draw(st.booleans()):
        url += draw(key_predicate(entity_set))
    if queries:
        url += "?" + draw(
            st.sampled_from(
                ["$format=json", "$format=atom", "$format=bogus", "$top=x", "$filter=Pid eq 1"]
            )
        )
    url = url.replace(" ", "%20")
    return [
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        f"GET {url} HTTP/1.1",
        "Accept: application/json",
        "",
        "",
    ]


@st.composite
def operation(draw: st.DrawFn) -> list[str]:
    entity_set = draw(st.sampled_from(WRITABLE))
    method = draw(st.sampled_from(["POST", "POST", "PUT", "MERGE", "DELETE", "GET", "PATCH"]))
    url = entity_set if method == "POST" else entity_set + draw(key_predicate(entity_set))
    body = json.dumps(draw(entity_body(entity_set)))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2", ""]))
    lines = [
        "Content-Type: application/http",
        draw(
            st.sampled_from(
                ["Content-Transfer-Encoding: binary", "", "Content-Transfer-Encoding: base64"]
            )
        ),
        "",
        f"{method} {url.replace(' ', '%20')} {version}".rstrip(),
        "Content-Type: application/json",
        "Accept: application/json",
    ]
    if draw(st.booleans()):
        lines.append(f"Content-ID: {draw(st.sampled_from(['1', '$1', 'x y', '']))}")
    return [*lines, "", body, ""]


@st.composite
def change_set(draw: st.DrawFn, depth: int = 0) -> list[str]:
    inner = draw(boundary)
    lines = [f"Content-Type: multipart/mixed; boundary={inner}", ""]
    for _ in range(draw(st.integers(0, 4))):
        lines += [f"--{inner}"]
        if depth == 0 and draw(st.integers(0, 6)) == 0:  # a change set inside a change set
            lines += draw(change_set(depth + 1))
        else:
            lines += draw(operation())
    if draw(st.integers(0, 5)):
        lines += [f"--{inner}--", ""]
    return lines


@st.composite
def batch(draw: st.DrawFn, queries: bool = False) -> tuple[str, bytes]:
    outer = draw(boundary)
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        lines += [f"--{outer}"]
        lines += draw(st.one_of(get_part(queries), change_set()))
    if draw(st.integers(0, 5)):
        lines += [f"--{outer}--", ""]
    newline = draw(st.sampled_from(["\r\n", "\r\n", "\n"]))
    body = newline.join(lines).encode("utf-8", "surrogatepass")
    mutation = draw(st.integers(0, 6))
    if mutation == 1:
        body = body[: draw(st.integers(0, len(body)))]
    elif mutation == 2:
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(max_size=12)) + body[at:]
    elif mutation == 3:
        body = body.replace(b"\r\n\r\n", b"\r\n", 1)
    content_type = draw(
        st.sampled_from(
            [
                f"multipart/mixed; boundary={outer}",
                f'multipart/mixed; boundary="{outer}"',
                f"multipart/mixed;boundary={outer};charset=utf-8",
                "multipart/mixed",
                "multipart/mixed; boundary=",
                "multipart/mixed; boundary=other",
                "application/json",
                f"multipart/related; boundary={outer}",
            ]
        )
    )
    return content_type, body


def post_batch(target: Target, content_type: str, body: bytes) -> httpx.Response:
    headers = {**target.authorized, "Content-Type": content_type}
    return target.send(
        "POST", "/api/v1/$batch", headers=headers, content=body, wrote_nothing=wrote_nothing
    )


@given(request=batch())
def test_batch(target: Target, request: tuple[str, bytes]) -> None:
    """Any multipart body: answered, never a 5xx, and a batch that reports no successful
    write has written nothing."""
    post_batch(target, *request)


A_CHANGE_SET_THEN_A_BAD_GET = (
    "multipart/mixed; boundary=b",
    b"\r\n".join(
        [
            b"--b",
            b"Content-Type: multipart/mixed; boundary=c",
            b"",
            b"--c",
            b"Content-Type: application/http",
            b"Content-Transfer-Encoding: binary",
            b"",
            b"POST StringParameters HTTP/1.1",
            b"Content-Type: application/json",
            b"",
            b'{"Pid":"FZ_BATCH","Id":"format","Value":"v"}',
            b"--c--",
            b"--b",
            b"Content-Type: application/http",
            b"Content-Transfer-Encoding: binary",
            b"",
            b"GET StringParameters?$format=bogus HTTP/1.1",
            b"",
            b"",
            b"--b--",
            b"",
        ]
    ),
)


@example(request=A_CHANGE_SET_THEN_A_BAD_GET)
@given(request=batch(queries=True))
def test_batch_with_query_options_in_get_parts(target: Target, request: tuple[str, bytes]) -> None:
    """The same, with GET parts that carry query options, bad ones included."""
    post_batch(target, *request)

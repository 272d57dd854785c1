"""Helpers for the write-path tests: what the directory holds, read back through the API,
and ``$batch`` bodies with any mix of parts."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from ..conftest import Api

PARTNER_SETS = (
    "StringParameters",
    "BinaryParameters",
    "UserCredentialParameters",
    "AlternativePartners",
    "AuthorizedUsers",
)
GLOBAL_SETS = ("CertificateMappingRules", "CertificateUserMappings")


def state(api: Api, pid: str) -> dict[str, list[dict[str, object]]]:
    """Everything of partner ``pid``, and every mapping and rule, as the API answers it."""
    seen: dict[str, list[dict[str, object]]] = {}
    for name in PARTNER_SETS:
        r = api.get(name, params={"$filter": f"Pid eq '{pid}'"})
        assert r.status_code == 200, r.text
        seen[name] = _rows(r)
    for name in GLOBAL_SETS:
        r = api.get(name)
        assert r.status_code == 200, r.text
        seen[name] = _rows(r)
    return seen


def _rows(r: httpx.Response) -> list[dict[str, object]]:
    rows = r.json()["d"]["results"]
    for row in rows:
        row.pop("__metadata", None)
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True))


def assert_odata_error(r: httpx.Response, status: int) -> str:
    """The status, and an OData error body (JSON or XML) that says why; returns the text."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    ctype = r.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        message = r.json()["error"]["message"]["value"]
        assert message
        return str(message)
    assert ctype.startswith("application/xml"), ctype
    assert "<error" in r.text and "<message" in r.text
    return r.text


Part = tuple[str, str, object]
"""(method, url, body): body is a JSON value, raw bytes, or None."""


def batch(items: list[Part | list[Part]]) -> tuple[str, bytes]:
    """A ``$batch`` body: a tuple is a query part, a list a change set. Returns
    (Content-Type, body)."""
    boundary = "batch_" + uuid.uuid4().hex
    out: list[bytes] = []
    for item in items:
        out.append(f"--{boundary}\r\n".encode())
        if isinstance(item, tuple):
            out.append(_http_part(item))
            continue
        changeset = "changeset_" + uuid.uuid4().hex
        out.append(f"Content-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode())
        for part in item:
            out.append(f"--{changeset}\r\n".encode() + _http_part(part))
        out.append(f"--{changeset}--\r\n".encode())
    out.append(f"--{boundary}--\r\n".encode())
    return f"multipart/mixed; boundary={boundary}", b"".join(out)


def _http_part(part: Part) -> bytes:
    method, url, body = part
    if body is None:
        data = b""
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    head = (
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"{method} {url} HTTP/1.1\r\nAccept: application/json\r\n"
    ).encode()
    if method != "GET":
        head += b"Content-Type: application/json\r\n"
    return head + b"\r\n" + data + b"\r\n"


def send_batch(api: Api, items: list[Part | list[Part]]) -> httpx.Response:
    content_type, body = batch(items)
    return api.post("$batch", content=body, headers={"Content-Type": content_type})


def part_statuses(r: httpx.Response) -> list[int]:
    """The status of every answer part, in order (a failed change set answers once)."""
    import re

    return [int(m) for m in re.findall(r"^HTTP/1\.1 (\d{3}) ", r.text, re.MULTILINE)]


def send_json(
    api: httpx.Client,
    method: str,
    url: str,
    body: object,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> httpx.Response:
    """A JSON body with ``\\uXXXX`` escapes, so that any text (a lone surrogate too) is sent
    exactly as a client's JSON would carry it."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    return api.request(method, url, content=json.dumps(body).encode(), headers=headers, **kw)

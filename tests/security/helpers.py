"""Sending what a well-behaved client library would not: raw header bytes, other addresses."""

from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit

import httpx

from ..conftest import Server

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def raw_request(
    url: str,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    timeout: float = 30,
    host: bytes | None = None,
) -> int:
    """Send one request exactly as given; the status code the server answers."""
    parts = urlsplit(url)
    host = parts.netloc.encode() if host is None else host
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + host]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"Connection: close", f"Content-Length: {len(body)}".encode()]
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    status_line = received.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), f"no HTTP answer: {received[:200]!r}"
    return int(status_line.split()[1])


def client_from(server: Server, address: str, **kwargs: object) -> httpx.Client:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8 on Linux)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.url, transport=transport, timeout=60, **kwargs)  # type: ignore[arg-type]


def sign_in(client: httpx.Client, name: str, password: str) -> httpx.Response:
    """The UI's sign-in form, as a browser sends it."""
    form = client.get("/ui/signin")
    found = CSRF_FIELD.search(form.text)
    assert found, form.text
    return client.post(
        "/ui/signin",
        data={"name": name, "password": password, "csrf": found.group(1), "next": ""},
    )


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)

"""What an SAP tenant does that partnergate does not: rate limits, relative ``__next``.

The tenant is out of reach here, so a small HTTP server stands in for it, answering as
SAP's documents say (429 with ``Retry-After``; ``d.__next`` relative to the service root,
as SAP's own sample client reads it).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from partnergate.pdcode.remote import Auth, Remote


class Tenant(BaseHTTPRequestHandler):
    calls: list[str] = []
    limited = {"done": False}

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.calls.append(self.path)
        if self.path.startswith("/api/v1/BinaryParameters") and not self.limited["done"]:
            self.limited["done"] = True
            self._json(429, {"error": {"message": {"value": "slow down"}}}, {"Retry-After": "0"})
            return
        if "skiptoken=30" in self.path:
            rows = [{"Pid": "P", "Id": "b30", "ContentType": "txt", "Value": "eA=="}]
            self._json(200, {"d": {"results": rows}})
        elif self.path.startswith("/api/v1/BinaryParameters"):
            rows = [
                {"Pid": "P", "Id": f"b{n:02d}", "ContentType": "xml", "Value": "PGEvPg=="}
                for n in range(30)
            ]
            self._json(200, {"d": {"results": rows, "__next": "BinaryParameters?$skiptoken=30"}})
        else:
            self._json(200, {"d": {"results": []}})


@pytest.fixture
def tenant() -> Iterator[str]:
    Tenant.calls = []
    Tenant.limited = {"done": False}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Tenant)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_paging_follows_a_relative_next_and_waits_out_429(tenant: str) -> None:
    async def read() -> list[str]:
        async with Remote(tenant, Auth(user="u", password="p")) as remote:
            return [r["Id"] async for r in remote.collection("BinaryParameters")]

    ids = asyncio.run(read())
    assert ids == [f"b{n:02d}" for n in range(30)] + ["b30"]
    binary_calls = [c for c in Tenant.calls if c.startswith("/api/v1/BinaryParameters")]
    assert len(binary_calls) == 3, "one refused with 429, then two pages"
    assert binary_calls[-1] == "/api/v1/BinaryParameters?$skiptoken=30"

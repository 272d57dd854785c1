"""Shared parts for runtime tests: a dict-backed Partner Directory and real HTTP servers."""

from __future__ import annotations

import asyncio
import functools
import inspect
import io
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from partnergate.runtime import Engine, Exchange, Flow, MemoryMessageLog, PartnerDirectory
from partnergate.runtime.flows import parse_flow

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "partner-directory"


def run_async(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an ``async def`` test with ``asyncio.run`` (no pytest plugin needed)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    wrapper.__signature__ = inspect.signature(test)  # type: ignore[attr-defined]
    return wrapper


@dataclass
class DictDirectory:
    """A :class:`DirectoryReader` over dicts; ``calls`` counts reads to show caching."""

    strings: dict[tuple[str, str], str] = field(default_factory=dict)
    binaries: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    credentials: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    alternatives: dict[tuple[str, str, str], str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    gate: asyncio.Event | None = None

    async def _read(self, name: str) -> None:
        self.calls[name] += 1
        if self.gate is not None:
            await self.gate.wait()

    async def get_string_parameter(self, pid: str, id: str) -> str | None:
        await self._read("string")
        return self.strings.get((pid, id))

    async def get_binary_parameter(self, pid: str, id: str) -> tuple[bytes, str] | None:
        await self._read("binary")
        return self.binaries.get((pid, id))

    async def get_user_credential(self, pid: str, id: str) -> tuple[str, str] | None:
        await self._read("credential")
        return self.credentials.get((pid, id))

    async def get_partner_id(self, agency: str, scheme: str, alt_id: str) -> str | None:
        await self._read("partner_id")
        return self.alternatives.get((agency, scheme, alt_id))

    async def get_alternative_partner_id(self, agency: str, scheme: str, pid: str) -> str | None:
        await self._read("alternative_id")
        found = [
            k[2] for k, v in self.alternatives.items() if k[:2] == (agency, scheme) and v == pid
        ]
        return found[0] if len(found) == 1 else None

    async def get_partner_id_of_authorized_user(self, user: str) -> str | None:
        await self._read("user")
        return self.users.get(user)

    async def get_authorized_users(self, pid: str) -> list[str]:
        await self._read("users_of")
        return sorted(u for u, p in self.users.items() if p == pid)


def zipped(name: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, content)
    return out.getvalue()


def seed_directory() -> DictDirectory:
    """The blog's partners: three senders, two receivers, their users and credentials."""
    return DictDirectory(
        strings={
            ("Receiver_1", "ADDRESS"): "http://127.0.0.1:9/cxf/receiver_1",
            ("Receiver_2", "ADDRESS"): "http://127.0.0.1:9/cxf/receiver_2",
            ("Sender_BASIC", "AGENCY"): "AgencyXYZ",
        },
        credentials={
            ("Receiver_1", "USER"): ("user_receiver_1", "secret 1"),
            ("Receiver_2", "USER"): ("user_receiver_2", "secret 2"),
        },
        alternatives={
            ("AgencyXYZ", "LONG", "Receiver Premium"): "Receiver_1",
            ("AgencyXYZ", "LONG", "Receiver 2"): "Receiver_2",
        },
        users={
            "user_for_sender_basic": "Sender_BASIC",
            "oauth_client_client_sender_oauth": "Sender_OAUTH",
            "user_for_sender_cert": "Sender_CERT",
        },
    )


@pytest.fixture
def reader() -> DictDirectory:
    return seed_directory()


@pytest.fixture
def directory(reader: DictDirectory, tmp_path: Path) -> Iterator[PartnerDirectory]:
    pd = PartnerDirectory(reader, files_dir=tmp_path / "pd-files")
    yield pd
    pd.close()


def flow_from(tmp_path: Path, text: str, name: str = "flow.yaml") -> Flow:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return parse_flow(text, path)


def exchange(body: bytes | str = b"", user: str | None = None, **headers: str) -> Exchange:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return Exchange.inbound(data, headers, user=user)


@asynccontextmanager
async def engine_for(directory: PartnerDirectory) -> AsyncIterator[tuple[Engine, MemoryMessageLog]]:
    log = MemoryMessageLog()
    engine = Engine(directory, message_log=log)
    try:
        yield engine, log
    finally:
        await engine.aclose()


@asynccontextmanager
async def serve(app: web.Application, ssl_context: Any = None) -> AsyncIterator[str]:
    """A real aiohttp server on a free 127.0.0.1 port; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()

"""Calling receivers over HTTP(S): one bounded, reused aiohttp session per origin.

Why per origin and bounded: a partner fleet means many receiver addresses; a pool per
full URL, or an unbounded map of pools, leaks connections and memory (Apache Camel's
dynamic-endpoint caches, CAMEL-14432 and CAMEL-20835). So sessions are keyed by
(scheme, host, port, client keystore), kept in an LRU of ``max_origins``, and an evicted
session closes once its last request has finished. aiohttp rather than httpx: DECISIONS D7.

Sessions keep no cookies: one session serves the messages of many senders.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

USER_AGENT = "partnergate"


@dataclass(frozen=True)
class ClientKeystore:
    """A client certificate for TLS to receivers: PEM chain and PEM private key files."""

    cert_file: str
    key_file: str | None = None
    password: str | None = None


@dataclass
class ReceiverResponse:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


class ReceiverError(Exception):
    """The receiver could not be called or gave no usable answer."""


class ReceiverTimeout(ReceiverError):
    pass


@dataclass(eq=False)
class _Origin:
    session: aiohttp.ClientSession
    in_flight: int = 0
    retired: bool = False
    closing: asyncio.Task[None] | None = field(default=None, repr=False)


class ReceiverPool:
    """Sends requests to receivers; call :meth:`aclose` when the process stops."""

    def __init__(
        self,
        *,
        max_origins: int = 256,
        connections_per_origin: int = 100,
        keystores: Mapping[str, ClientKeystore] | None = None,
        ca_file: str | None = None,
        max_response_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.max_origins = max_origins
        self.connections_per_origin = connections_per_origin
        self.keystores = dict(keystores or {})
        self.ca_file = ca_file
        self.max_response_bytes = max_response_bytes
        self._origins: OrderedDict[tuple[str, str, int, str | None], _Origin] = OrderedDict()
        self._contexts: dict[str | None, ssl.SSLContext] = {}
        self._retired: set[_Origin] = set()

    def __len__(self) -> int:
        """Open sessions, one per origin in use."""
        return len(self._origins)

    async def send(
        self,
        url: str,
        *,
        method: str = "POST",
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        keystore: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
    ) -> ReceiverResponse:
        """One request; raises :class:`ReceiverTimeout` or :class:`ReceiverError`."""
        target = _url(url)
        if target.scheme not in ("http", "https") or not target.host:
            raise ValueError(f"{url!r} is not an absolute http or https URL")
        if keystore is not None and keystore not in self.keystores:
            raise ValueError(f"no client keystore named {keystore!r} is configured")
        request_headers = dict(headers or {})
        if auth is not None:
            request_headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        origin = self._origin(target, keystore)
        origin.in_flight += 1
        try:
            return await self._request(
                origin.session,
                method,
                target,
                body,
                request_headers,
                _timeout(timeout, connect_timeout),
            )
        finally:
            origin.in_flight -= 1
            if origin.retired and origin.in_flight == 0:
                await self._close(origin)

    async def _request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        target: URL,
        body: bytes,
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout,
    ) -> ReceiverResponse:
        try:
            async with session.request(
                method,
                target,
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                length = response.content_length
                if length is not None and length <= self.max_response_bytes:
                    body = await response.read()
                    return ReceiverResponse(
                        response.status, response.reason or "", response.headers, body
                    )
                chunks = []
                size = 0
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > self.max_response_bytes:
                        raise ReceiverError(
                            f"the answer is larger than {self.max_response_bytes} bytes"
                        )
                    chunks.append(chunk)
                return ReceiverResponse(
                    response.status, response.reason or "", response.headers, b"".join(chunks)
                )
        except TimeoutError as exc:
            raise ReceiverTimeout(f"no answer within {timeout.total:g} s") from exc
        except aiohttp.ClientError as exc:
            raise ReceiverError(_describe(exc)) from exc

    def _origin(self, target: URL, keystore: str | None) -> _Origin:
        key = (target.scheme, target.host or "", target.port or 0, keystore)
        origin = self._origins.get(key)
        if origin is not None:
            self._origins.move_to_end(key)
            return origin
        connector = aiohttp.TCPConnector(
            limit=self.connections_per_origin,
            ssl=self._context(keystore) if target.scheme == "https" else False,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            raise_for_status=False,
            headers={"User-Agent": USER_AGENT},
        )
        origin = _Origin(session)
        self._origins[key] = origin
        self._evict()
        return origin

    def _evict(self) -> None:
        while len(self._origins) > self.max_origins:
            _, oldest = self._origins.popitem(last=False)
            oldest.retired = True
            if oldest.in_flight == 0:
                oldest.closing = asyncio.ensure_future(oldest.session.close())
                self._retired.add(oldest)
                oldest.closing.add_done_callback(lambda _, o=oldest: self._retired.discard(o))

    async def _close(self, origin: _Origin) -> None:
        if not origin.session.closed:
            await origin.session.close()

    def _context(self, keystore: str | None) -> ssl.SSLContext:
        context = self._contexts.get(keystore)
        if context is None:
            context = ssl.create_default_context(cafile=self.ca_file)
            if keystore is not None:
                entry = self.keystores[keystore]
                context.load_cert_chain(entry.cert_file, entry.key_file, entry.password)
            self._contexts[keystore] = context
        return context

    async def aclose(self) -> None:
        origins = list(self._origins.values()) + list(self._retired)
        self._origins.clear()
        for origin in origins:
            if origin.closing is not None:
                await origin.closing
            await self._close(origin)
        self._retired.clear()


# A sender fleet calls few receivers with few timeouts, over and over: parse each once.


@functools.lru_cache(maxsize=1024)
def _url(url: str) -> URL:
    return URL(url)


@functools.lru_cache(maxsize=64)
def _timeout(total: float, connect: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total, sock_connect=connect)


def _describe(exc: aiohttp.ClientError) -> str:
    """A short reason without the receiver's address (the log has that)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "the receiver's TLS certificate is not trusted"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "the TLS handshake with the receiver failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        code = exc.os_error.errno
        reason = os.strerror(code) if code else "connection failed"
        return f"the receiver cannot be reached ({reason})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the receiver closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the receiver's answer was cut off"
    return f"the call failed ({type(exc).__name__})"

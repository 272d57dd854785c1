"""Calling receivers over HTTP(S): one bounded, reused client per origin.

Why per origin and bounded: a partner fleet means many receiver addresses; a pool per
full URL, or an unbounded map of pools, leaks connections and memory (Apache Camel's
dynamic-endpoint caches, CAMEL-14432 and CAMEL-20835). So clients are keyed by
(scheme, host, port, client keystore, connect timeout), kept in an LRU of ``max_origins``,
and an evicted client closes once its last request has finished. The connect timeout is
part of the key because reqwest sets it per client, not per request.

The client is pyreqwest (Rust reqwest and hyper, DECISIONS D8): about half of aiohttp's
CPU a call, the largest single cost of a routed message. As configured here it speaks
HTTP/1.1, follows no redirect (a 3xx is the receiver's answer), uses no proxy (the
environment's ``HTTP_PROXY`` included), keeps no cookies (one client serves the messages
of many senders), and allows ``connections_per_origin`` requests in flight per client;
waiting for one of them counts against the call's timeout. TLS is rustls: the system's
CAs are trusted, and ``ca_file`` adds to them (pyreqwest cannot drop the system's).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import http
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import (
    BodyDecodeError,
    ConnectError,
    DecodeError,
    ReadError,
    RequestError,
    RequestTimeoutError,
    WriteError,
)
from pyreqwest.http import HeaderMap, Url
from pyreqwest.response import Response

from .. import metrics

USER_AGENT = "partnergate"
IDLE_SECONDS = 15.0
"""How long an idle connection is kept, as with aiohttp before: reqwest's own 90 s outlast
many receivers' idle timeouts, and a connection the receiver closes just as a message goes
out fails that message."""
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ClientKeystore:
    """A client certificate for TLS to receivers: PEM chain and PEM private key files.

    Without ``key_file`` the key is read from ``cert_file``; ``password`` decrypts it.
    """

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


class _Session:
    """One origin's client, and whether it was closed."""

    __slots__ = ("client", "closed")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.closed = False

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.client.close()


@dataclass(eq=False)
class _Origin:
    session: _Session
    in_flight: int = 0
    retired: bool = False
    closing: asyncio.Task[None] | None = field(default=None, repr=False)


_OriginKey = tuple[str, str, int, str | None, float]


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
        self._origins: OrderedDict[_OriginKey, _Origin] = OrderedDict()
        self._identities: dict[str, bytes] = {}
        self._roots: list[bytes] | None = None
        self._retired: set[_Origin] = set()

    def __len__(self) -> int:
        """Open clients, one per origin in use."""
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
        """One request; raises :class:`ReceiverTimeout` or :class:`ReceiverError`, and
        ValueError for what no receiver could fix (the URL, the keystore, a header)."""
        target, origin_key = _url(url)
        if keystore is not None and keystore not in self.keystores:
            raise ValueError(f"no client keystore named {keystore!r} is configured")
        request_headers = dict(headers or {})
        if auth is not None:
            request_headers["Authorization"] = _basic_auth(*auth)
        origin = self._origin((*origin_key, keystore, connect_timeout))
        origin.in_flight += 1
        try:
            return await self._request(
                origin.session.client, method, target, body, request_headers, timeout
            )
        finally:
            origin.in_flight -= 1
            if origin.retired and origin.in_flight == 0:
                await origin.session.close()

    @metrics.timed_receiver_call
    async def _request(
        self,
        client: Client,
        method: str,
        target: Url,
        body: bytes,
        headers: dict[str, str],
        timeout: float,
    ) -> ReceiverResponse:
        builder = client.request(method, target).headers(headers).timeout(_seconds(timeout))
        if body:
            builder = builder.body_bytes(body)
        try:
            async with builder.build_streamed() as response:
                data = await self._read(response)
                status = response.status
                return ReceiverResponse(status, _reason(status), _Headers(response.headers), data)
        except RequestTimeoutError as exc:
            raise ReceiverTimeout(f"no answer within {timeout:g} s") from exc
        except RequestError as exc:
            raise ReceiverError(_describe(exc)) from exc

    async def _read(self, response: Response) -> bytes:
        """The whole answer, at most ``max_response_bytes``: a body whose announced length
        is within the limit is read at once (hyper reads no more than announced); any
        other is counted as it arrives, a compressed one unpacked."""
        length = response.get_header("Content-Length")
        if length is not None and length.isdigit() and int(length) <= self.max_response_bytes:
            return bytes(await response.bytes())
        chunks = []
        size = 0
        reader = response.body_reader
        while (chunk := await reader.read(_CHUNK)) is not None:
            size += len(chunk)
            if size > self.max_response_bytes:
                raise ReceiverError(f"the answer is larger than {self.max_response_bytes} bytes")
            chunks.append(bytes(chunk))
        return b"".join(chunks)

    def _origin(self, key: _OriginKey) -> _Origin:
        origin = self._origins.get(key)
        if origin is not None:
            self._origins.move_to_end(key)
            return origin
        scheme, _, _, keystore, connect_timeout = key
        origin = _Origin(_Session(self._client(scheme == "https", keystore, connect_timeout)))
        self._origins[key] = origin
        self._evict()
        return origin

    def _client(self, tls: bool, keystore: str | None, connect_timeout: float) -> Client:
        builder = (
            ClientBuilder()
            .max_connections(self.connections_per_origin)
            .connect_timeout(_seconds(connect_timeout))
            .pool_idle_timeout(_seconds(IDLE_SECONDS))
            .follow_redirects(False)
            .no_proxy()
            .http1_only()
            .user_agent(USER_AGENT)
            .referer(False)
        )
        if tls:
            for root in self._trusted_roots():
                builder = builder.add_root_certificate_der(root)
            if keystore is not None:
                builder = builder.identity_pem(self._identity(keystore))
        try:
            return builder.build()
        except ValueError as exc:
            raise ValueError(f"the receiver client cannot be set up: {exc}") from None

    def _trusted_roots(self) -> list[bytes]:
        if self._roots is None:
            if self.ca_file is None:
                self._roots = []
            else:
                try:
                    found = x509.load_pem_x509_certificates(Path(self.ca_file).read_bytes())
                except (OSError, ValueError) as exc:
                    raise ValueError(f"the CA file cannot be read: {exc}") from None
                self._roots = [c.public_bytes(serialization.Encoding.DER) for c in found]
        return self._roots

    def _identity(self, name: str) -> bytes:
        identity = self._identities.get(name)
        if identity is None:
            try:
                identity = _identity_pem(self.keystores[name])
            except (OSError, ValueError, TypeError) as exc:
                raise ValueError(f"the client keystore {name!r} cannot be read: {exc}") from None
            self._identities[name] = identity
        return identity

    def _evict(self) -> None:
        while len(self._origins) > self.max_origins:
            _, oldest = self._origins.popitem(last=False)
            oldest.retired = True
            if oldest.in_flight == 0:
                oldest.closing = asyncio.ensure_future(oldest.session.close())
                self._retired.add(oldest)
                oldest.closing.add_done_callback(lambda _, o=oldest: self._retired.discard(o))

    async def aclose(self) -> None:
        origins = list(self._origins.values()) + list(self._retired)
        self._origins.clear()
        for origin in origins:
            if origin.closing is not None:
                await origin.closing
            await origin.session.close()
        self._retired.clear()


class _Headers(Mapping[str, str]):
    """The answer's headers, by name in any case. reqwest reads only visible ASCII as
    text: a value with other bytes reads as absent rather than failing the message."""

    __slots__ = ("_map",)

    def __init__(self, headers: HeaderMap) -> None:
        self._map = headers

    def __getitem__(self, name: str) -> str:
        try:
            return self._map[name]
        except ValueError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(self._map.keys()))

    def __len__(self) -> int:
        return self._map.keys_len()


def _identity_pem(entry: ClientKeystore) -> bytes:
    """The PEM reqwest takes: the private key, unencrypted in memory, then the chain."""
    chain = Path(entry.cert_file).read_bytes()
    key_pem = Path(entry.key_file).read_bytes() if entry.key_file else chain
    block = _PRIVATE_KEY.search(key_pem)
    if block is None:
        raise ValueError("no PEM private key found")
    password = entry.password.encode("utf-8") if entry.password else None
    key = serialization.load_pem_private_key(block[0], password)
    certificates = x509.load_pem_x509_certificates(chain)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


_PRIVATE_KEY = re.compile(
    rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL
)


def _basic_auth(user: str, password: str) -> str:
    """RFC 7617 Basic credentials, UTF-8; a colon in the user name cannot be sent."""
    if ":" in user:
        raise ValueError('a ":" is not allowed in a Basic authentication user name')
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


# A sender fleet calls few receivers with few timeouts, over and over: parse each once.


@functools.lru_cache(maxsize=1024)
def _url(url: str) -> tuple[Url, tuple[str, str, int]]:
    """The parsed URL and its origin; ValueError unless it is absolute http or https."""
    try:
        target = Url(url)
    except ValueError:
        target = None
    if target is None or target.scheme not in ("http", "https") or not target.host_str:
        raise ValueError(f"{url!r} is not an absolute http or https URL")
    return target, (target.scheme, target.host_str, target.port_or_known_default or 0)


@functools.lru_cache(maxsize=64)
def _seconds(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


@functools.lru_cache(maxsize=128)
def _reason(status: int) -> str:
    """The standard reason phrase: hyper does not keep the receiver's own."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_TLS_WORDS = ("tls", "alert", "handshake", "invalidcontenttype", "certificate")


def _describe(exc: RequestError) -> str:
    """A short reason without the receiver's address (the log has that).

    pyreqwest gives an error class per phase and the chain of causes as text; the
    distinctions below are the ones aiohttp's exception classes made.
    """
    details = getattr(exc, "details", None) or {}
    text = " / ".join(cause["message"] for cause in details.get("causes") or ()).lower()
    if "invalid peer certificate" in text:
        return "the receiver's TLS certificate is not trusted"
    if isinstance(exc, ConnectError) and "client error (connect)" in text:
        if (found := _OS_ERROR.search(text)) is not None:
            return f"the receiver cannot be reached ({os.strerror(int(found[1]))})"
        if "dns error" in text:
            return "the receiver cannot be reached (its name does not resolve)"
        if "tcp connect error" in text:
            return "the receiver cannot be reached (connection failed)"
        return "the TLS handshake with the receiver failed"
    if any(word in text for word in _TLS_WORDS):
        return "the TLS handshake with the receiver failed"
    if "connection closed before message completed" in text:
        return "the receiver closed the connection without answering"
    if isinstance(exc, ConnectError | WriteError) and (found := _OS_ERROR.search(text)):
        reason = os.strerror(int(found[1]))
        return f"the receiver closed the connection without answering ({reason})"
    if isinstance(exc, BodyDecodeError | ReadError):
        return "the receiver's answer was cut off"
    if isinstance(exc, DecodeError):
        return "the receiver's answer is not HTTP"
    return f"the call failed ({type(exc).__name__})"

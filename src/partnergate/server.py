"""Starting uvicorn with the listeners the settings ask for: plain HTTP, TLS, or both.

One process, one app, one lifespan. uvicorn's server runs them all: each listener is an
asyncio server opened behind its :class:`Gate`, and all share uvicorn's connection set,
so that a shutdown closes and waits for all of them. Every socket is bound before the app starts:
a port in use is a one-line error, not a half-started server.

On the TLS listener OpenSSL verifies client certificates against ``--client-ca``; its
server-side default purpose (``sslclient``) refuses a leaf whose extendedKeyUsage lacks
clientAuth in the handshake. uvicorn does not tell an ASGI app which certificate the
client presented, so the TLS listener's protocol puts it into the ASGI ``tls`` extension
(:func:`tls_extension`). SIGHUP re-reads the certificate files for new connections.

A refused handshake never reaches the app: asyncio closes the connection without sending
OpenSSL's alert and reports the failure only in debug mode, so the client sees the
connection closed and the server log stays silent.

Connections are untrusted until they have sent a request, and some never do. Each
listener's :class:`Gate` counts its open connections and closes those over the cap at
once, before any TLS work; it does the TLS handshake itself (``start_tls``) under the
header deadline. The HTTP protocols keep the deadlines uvicorn does not keep
(:class:`_Deadlines`): for a request's header block, and for its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import logs, metrics
from .config import ConfigError, Settings
from .security.certificates import CertificateError, der_bytes, load_certificates
from .security.throttle import FAILURES_FILE, SharedFailures
from .store.siblings import FLUSH_SIGNAL, SYNC_SIGNAL, Siblings
from .store.siblings import current as current_siblings
from .web.app import create_app
from .web.client_cert import CertificateTrust
from .web.operating import MetricsOnly, start_draining

__all__ = [
    "Gate",
    "H11TLSProtocol",
    "HttpToolsTLSProtocol",
    "Listener",
    "ListenerConfig",
    "Server",
    "ServerContext",
    "TLSContexts",
    "connection_limit",
    "serve",
    "split_host_port",
    "tls_context",
    "tls_extension",
]

log = logging.getLogger("partnergate.server")


def split_host_port(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{option} must be HOST:PORT, got '{value}'")
    return host.strip("[]") or "127.0.0.1", int(port)


# --- TLS contexts --------------------------------------------------------------------------


class ServerContext(ssl.SSLContext):
    """A server context that knows what Python's ssl cannot tell about it."""

    server_cert: str | None = None
    """PEM of the certificate it serves, the ASGI ``tls`` extension's ``server_cert``."""
    client_cas: frozenset[bytes] = frozenset()
    """DER of the trusted client CAs, to notice one taken out on reload."""


def tls_context(settings: Settings) -> ServerContext:
    """A server context from the files the settings name; ConfigError names a bad file."""
    if not (settings.tls_cert and settings.tls_key):
        raise ConfigError("--https needs --tls-cert FILE and --tls-key FILE")
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    # No session tickets: a resumed session skips the client-certificate check, which
    # must run against the CA bundle of the moment (SIGHUP). TLS 1.2 session-ID
    # resumption stays; TLSContexts refuses it once a CA has been taken out.
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0
    try:
        with open(settings.tls_cert, "rb") as file:
            leaf = load_certificates(file.read())[0]
    except (OSError, CertificateError) as exc:
        raise ConfigError(f"--tls-cert {settings.tls_cert}: {_why(exc)}") from None
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-key {settings.tls_key}: {_why(exc)}") from None
    context.server_cert = leaf.public_bytes(Encoding.PEM).decode("ascii")
    if settings.client_ca:
        try:
            with open(settings.client_ca, "rb") as file:
                cas = frozenset(der_bytes(ca) for ca in load_certificates(file.read()))
            context.load_verify_locations(cadata=b"".join(cas))
        except (OSError, ssl.SSLError, CertificateError) as exc:
            raise ConfigError(f"--client-ca {settings.client_ca}: {_why(exc)}") from None
        context.client_cas = cas
        required = settings.client_cert == "required"
        context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    elif settings.client_cert == "required":
        raise ConfigError("--client-cert required needs --client-ca FILE to verify them with")
    return context


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "KEY_VALUES_MISMATCH":
            return "the key does not belong to the certificate"
        if exc.reason and exc.reason != "PEM_LIB":
            return exc.reason.replace("_", " ").lower()
        return "not a PEM private key the server can use"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, CertificateError):
        return exc.message
    return str(exc)


class TLSContexts:
    """The contexts of one TLS listener, reloadable.

    asyncio keeps the context a listener was opened with for the listener's life. Its SNI
    callback, which OpenSSL runs in every handshake (with ``server_name`` None when the
    client sent none), moves the new connection to the context last built from the files
    on disk. So a reload reaches new connections only, and a CA taken out of the bundle
    is really gone, which loading certificates into one long-lived context cannot do.

    The TLS 1.2 session cache belongs to the listening context and outlives reloads; a
    session resumed from it skips the client-certificate check. Once a reload has taken
    a CA out, sessions from before it are refused, so their clients must verify anew.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current = self.listening = tls_context(settings)
        self.listening.sni_callback = self._select
        self.cas_removed_at = 0.0

    def reload(self) -> None:
        """Build a context from the files again; on error the previous one stays."""
        context = tls_context(self.settings)
        if self.current.client_cas - context.client_cas:
            self.cas_removed_at = time.time()
        self.current = context

    def _select(
        self,
        connection: ssl.SSLObject | ssl.SSLSocket,
        server_name: str | None,
        context: ssl.SSLContext,
    ) -> int | None:
        if connection.session_reused:
            session = connection.session
            if session is not None and session.time <= self.cas_removed_at:
                return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        if connection.context is not self.current:
            connection.context = self.current
        return None


# --- the ASGI tls extension ----------------------------------------------------------------

TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@functools.cache
def _cipher_suite_ids() -> dict[str, int]:
    """OpenSSL cipher names to their IANA numbers (the low 16 bits of OpenSSL's id)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("ALL:@SECLEVEL=0")
    return {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI ``tls`` extension of a connection (asgi.readthedocs.io, "TLS Extension"),
    or None for plain TCP.

    ``client_cert_chain`` is the verified chain where Python offers it (3.13+), else the
    leaf alone (DECISIONS D4); OpenSSL has verified the whole chain either way.
    ``client_cert_error`` is always None here: a certificate that fails verification ends
    the handshake, also when client certificates are optional (D5).
    """
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    chain = _peer_chain(ssl_object)
    name = x509.load_der_x509_certificate(chain[0]).subject.rfc4514_string() if chain else None
    version = ssl_object.version()
    cipher = ssl_object.cipher()
    return {
        "server_cert": getattr(ssl_object.context, "server_cert", None),
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der) for der in chain],
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(version) if version else None,
        "cipher_suite": _cipher_suite_ids().get(cipher[0]) if cipher else None,
    }


def _peer_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    verified_chain = getattr(ssl_object, "get_verified_chain", None)
    if verified_chain is not None:  # Python 3.13+
        return [bytes(der) for der in verified_chain() or []]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


class _WithTLS:
    """The app, with one connection's ``tls`` extension added to each request's scope."""

    __slots__ = ("app", "tls")

    def __init__(self, app: ASGIApp, tls: dict[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tls = dict(self.tls, client_cert_chain=list(self.tls["client_cert_chain"]))
        scope.setdefault("extensions", {})["tls"] = tls
        await self.app(scope, receive, send)


class _TLSScope:
    """Protocol mixin: after the handshake, wrap the app with the connection's facts.

    uvicorn protocols call ``self.app`` for every request, and the listener's gate calls
    ``connection_made`` once the TLS handshake is complete, so the peer is known here.
    """

    app: ASGIApp

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        extension = tls_extension(transport)
        if extension is not None:
            self.app = _WithTLS(self.app, extension)


# --- deadlines and the connection cap ------------------------------------------------------

REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\n"
    b"connection: close\r\n\r\n"
    b"Request Timeout\n"
)


HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 32\r\n"
    b"connection: close\r\n\r\n"
    b"Request Header Fields Too Large\n"
)


def _peer(client: tuple[str, int] | None) -> str:
    if client is None:
        return "an unknown peer"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ListenerConfig(uvicorn.Config):
    """uvicorn's settings of one listener, with the deadlines uvicorn does not keep."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        header_timeout: float,
        body_timeout: float,
        max_header_bytes: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, h11_max_incomplete_event_size=max_header_bytes, **kwargs)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes


class _ClientGone:
    """The app, quiet about a client that left before its request was read: a body cut
    by its deadline, or a client that hung up. Nobody is left to answer, and uvicorn would
    log the app's ``ClientDisconnect`` as an error with a traceback."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            log.debug("client left before its request was read: %s", scope.get("path"))


class _Deadlines:
    """Protocol mixin: the deadlines uvicorn keeps no watch over.

    uvicorn closes a connection left idle after a response (``timeout_keep_alive``), but
    waits for ever for a new connection's first request, for the rest of a header block
    and for a body. Here one timer runs from the connection's start, or from the first
    byte of a further request, until the header block is complete (``header_timeout``);
    another from then until the body is complete (``body_timeout``). A connection over
    either is closed, with a 408 when a request had begun and no response has.

    ``release`` (set by the :class:`Gate`) gives the connection's place back when it ends.
    """

    config: ListenerConfig
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: tuple[str, int] | None
    cycle: Any

    release: Callable[[], None] | None = None
    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _request_begun = False
    _header_bytes = 0
    _seen: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._header_timer = self.loop.call_later(self.config.header_timeout, self._headers_late)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        # a request answered before its body was read (a 413) still owns the bytes that follow
        between = cycle is None or (cycle.response_complete and not cycle.more_body)
        if self._header_timer is None and between:
            self._header_timer = self.loop.call_later(
                self.config.header_timeout, self._headers_late
            )
            self._header_bytes = 0
        if self._header_timer is not None:
            self._request_begun = True
            room = self.config.max_header_bytes + 1 - self._header_bytes
            self._header_bytes += len(data)
            if room <= 0:
                self._headers_too_large()
                return
            if len(data) > room:
                # h11 bounds only a header block that arrives in parts: one that arrives
                # whole (TLS records gather under load) would be parsed and run. The
                # parser gets what may still be headers; the rest only once they ended.
                super().data_received(data[:room])  # type: ignore[misc]
                self._watch()
                if self._header_timer is not None:
                    self._headers_too_large()
                    return
                data = data[room:]
        super().data_received(data)  # type: ignore[misc]
        self._watch()
        if self._header_timer is not None and self._header_bytes > self.config.max_header_bytes:
            self._headers_too_large()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._watch()  # h11 starts a pipelined request from here

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        self._stop_body_timer()
        super().connection_lost(exc)  # type: ignore[misc]
        if self.release is not None:
            self.release()
            self.release = None

    def _watch(self) -> None:
        """After the parser has run: a new request object means its header block is in."""
        cycle = self.cycle
        if cycle is None:
            return
        if cycle is not self._seen:
            self._seen = cycle
            self._stop_header_timer()
            self._request_begun = False
            self._stop_body_timer()
            if cycle.more_body:
                self._body_timer = self.loop.call_later(self.config.body_timeout, self._body_late)
        elif self._body_timer is not None and not cycle.more_body:
            self._stop_body_timer()

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        what = "request headers not complete" if self._request_begun else "no request"
        log.info(
            "closed connection from %s: %s within %s s",
            _peer(self.client),
            what,
            self.config.header_timeout,
        )
        if self._request_begun:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()

    def _headers_too_large(self) -> None:
        """Header bytes still arriving are bounded here, whatever the parser keeps."""
        self._stop_header_timer()
        if self.transport.is_closing():
            return
        log.info(
            "closed connection from %s: request headers over %d bytes",
            _peer(self.client),
            self.config.max_header_bytes,
        )
        self.transport.write(HEADERS_TOO_LARGE)
        self.transport.close()

    def _body_late(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or not cycle.more_body:
            return
        log.info(
            "closed connection from %s: request body not complete within %s s",
            _peer(self.client),
            self.config.body_timeout,
        )
        answer = not cycle.response_started
        cycle.disconnected = True  # the app's reader sees the client gone; its writes go nowhere
        if answer:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


class H11TLSProtocol(_Deadlines, _TLSScope, H11Protocol):
    """uvicorn's h11 protocol with the deadlines, and on TLS the ASGI ``tls`` extension."""


class _HeadersTooLarge(Exception):
    pass


class HttpToolsTLSProtocol(_Deadlines, _TLSScope, HttpToolsProtocol):
    """uvicorn's httptools protocol (its default with ``uvicorn[standard]``) with the
    deadlines, a limit on the header block, and on TLS the ASGI ``tls`` extension."""

    _too_large = False

    def on_headers_complete(self) -> None:
        # before the request reaches the app; the parser reports the error raised here
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.config.max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._headers_too_large()
        else:
            super().send_400_response(msg)


TLS_SHUTDOWN_TIMEOUT = 5.0
"""Seconds a closing TLS connection waits for the peer's close_notify (asyncio: 30), so
that a peer that never answers it holds no place after its deadline, nor delays a stop."""

FD_RESERVE = 128
"""File descriptors the automatic cap leaves to the server itself: database
connections, files, logs, worker pipes."""
AUTO_MAX_CONNECTIONS = 10_000


def _fd_limit() -> int | None:
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def connection_limit(settings: Settings, listeners: int) -> int:
    """Open connections allowed per listener: ``max_connections``, or else what the file
    descriptor limit leaves after :data:`FD_RESERVE`, shared among the listeners."""
    soft = _fd_limit()
    if settings.max_connections is not None:
        limit = settings.max_connections
        if soft is not None and limit * listeners > soft - FD_RESERVE:
            log.warning(
                "max_connections %d on %d listener(s) leaves the server fewer than %d of its "
                "%d file descriptors (ulimit -n): new files and database connections may fail",
                limit,
                listeners,
                FD_RESERVE,
                soft,
            )
        return limit
    if soft is None:
        return AUTO_MAX_CONNECTIONS
    return max(16, min(AUTO_MAX_CONNECTIONS, (soft - FD_RESERVE) // listeners))


class Gate:
    """One listener's door: it counts the listener's open connections, closes those over
    ``limit`` as soon as they are accepted, and on the TLS listener does the handshake
    within ``handshake_timeout`` before HTTP begins.

    A connection holds its place from acceptance until it closes, handshake included, so
    the cap bounds the file descriptors a listener can take, whatever its peers do.
    """

    REPORT_EVERY = 60.0

    def __init__(
        self, name: str, limit: int, tls: TLSContexts | None, handshake_timeout: float
    ) -> None:
        self.name = name
        self.limit = limit
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.open: set[_Accept] = set()
        self.handshakes: set[asyncio.Task[None]] = set()
        self._refused = 0
        self._report_at = 0.0

    def factory(self, http: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """The protocol factory of the listener's server; ``http`` makes the HTTP protocol."""
        return lambda: _Accept(self, http)

    def admit(self, connection: _Accept, transport: asyncio.BaseTransport) -> bool:
        if len(self.open) < self.limit:
            self.open.add(connection)
            metrics.connections_open(self.name, len(self.open))
            return True
        transport.abort()
        self._refused += 1
        now = time.monotonic()
        if now >= self._report_at:
            log.warning(
                "%s: %d connections open, the limit (max_connections); refused %d new",
                self.name,
                self.limit,
                self._refused,
            )
            self._refused = 0
            self._report_at = now + self.REPORT_EVERY
        return False

    def release(self, connection: _Accept) -> None:
        self.open.discard(connection)
        metrics.connections_open(self.name, len(self.open))

    def close(self) -> None:
        """At shutdown: end the connections still in their handshake."""
        for connection in list(self.open):
            if connection.http is None and connection.transport is not None:
                connection.transport.abort()


class _Accept(asyncio.Protocol):
    """A connection until HTTP takes it over: admitted or refused; on the TLS listener the
    handshake, within the gate's deadline.

    The handshake starts with the client's first bytes (``start_tls``): those were read
    on the plain connection and are handed to TLS before anything read later. Request
    bytes that arrive with the handshake's end are kept for the HTTP protocol.
    """

    def __init__(self, gate: Gate, http: Callable[[], asyncio.Protocol]) -> None:
        self.gate = gate
        self.make_http = http
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.http: asyncio.Protocol | None = None
        self.handshake: asyncio.Task[None] | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.early: list[bytes] = []
        self.eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self.gate.admit(self, transport):
            return
        if self.gate.tls is None:
            self._hand_over(transport)
            return
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(self.gate.handshake_timeout, self._handshake_late)

    def data_received(self, data: bytes) -> None:
        if self.handshake is None:
            self._start_tls(data)
        else:
            self.early.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return self.handshake is not None  # before any handshake: nothing to wait for

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._stop_deadline()
        self.gate.release(self)

    def _start_tls(self, hello: bytes) -> None:
        transport = self.transport
        transport.pause_reading()
        loop = asyncio.get_running_loop()
        task = self.handshake = loop.create_task(self._handshake(transport))
        self.gate.handshakes.add(task)
        task.add_done_callback(self.gate.handshakes.discard)
        # The task's first step swaps the transport's protocol for TLS and schedules the
        # resumption of reading; one step later, in the same turn of the loop as that
        # resumption and so before anything more is read, TLS gets the bytes read so far.
        loop.call_soon(loop.call_soon, self._feed_tls, hello)

    def _feed_tls(self, data: bytes) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        protocol = transport.get_protocol()
        if protocol is self:  # start_tls has not begun yet; reading is still paused
            asyncio.get_running_loop().call_soon(self._feed_tls, data)
            return
        view = memoryview(data)
        while view:
            buffer = protocol.get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            protocol.buffer_updated(size)
            view = view[size:]

    async def _handshake(self, transport: Any) -> None:
        gate = self.gate
        assert gate.tls is not None
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport,
                self,
                gate.tls.listening,
                server_side=True,
                ssl_handshake_timeout=gate.handshake_timeout + 5,  # ours comes first
                ssl_shutdown_timeout=min(gate.handshake_timeout, TLS_SHUTDOWN_TIMEOUT),
            )
        except Exception as exc:  # refused by OpenSSL, reset or late: asyncio has closed it
            metrics.tls_failure(gate.name, exc)
            self._drop(transport)
            return
        if tls is None or self.lost:
            self._drop(transport)
            return
        self._stop_deadline()
        self._hand_over(tls)

    def _handshake_late(self) -> None:
        self.deadline = None
        transport = self.transport
        if self.http is not None or transport.is_closing():
            return
        log.info(
            "closed TLS connection from %s: no handshake within %s s",
            _peer(transport.get_extra_info("peername")),
            self.gate.handshake_timeout,
        )
        metrics.tls_failure(self.gate.name, None)
        self._drop(transport)

    def _stop_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _drop(self, transport: Any) -> None:
        if not transport.is_closing():
            transport.abort()
        self._stop_deadline()
        self.gate.release(self)

    def _hand_over(self, transport: Any) -> None:
        http = self.http = self.make_http()
        http.release = functools.partial(self.gate.release, self)  # type: ignore[attr-defined]
        transport.set_protocol(http)
        http.connection_made(transport)
        early, self.early = self.early, []
        for data in early:
            http.data_received(data)  # type: ignore[attr-defined]
        if self.eof and not http.eof_received():  # type: ignore[attr-defined]
            transport.close()


# --- listeners and the server --------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    host: str
    port: int
    tls: TLSContexts | None = None
    metrics_only: bool = False
    """The scraper's listener (``metrics_http``): ``/metrics`` and the probes, nothing else."""

    def describe(self, sock: socket.socket) -> str:
        port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"{'https' if self.tls else 'http'}://{host}:{port}"
        if self.metrics_only:
            return f"{url} (/metrics without credentials, the probes)"
        if self.tls is None:
            return url
        settings = self.tls.settings
        if not settings.client_ca:
            return f"{url} (no client certificates)"
        return f"{url} (client certificates {settings.client_cert}, CAs {settings.client_ca})"


def listeners(settings: Settings) -> list[Listener]:
    found = []
    if settings.http:
        found.append(Listener(*split_host_port(settings.http, "--http")))
    if settings.https:
        found.append(Listener(*split_host_port(settings.https, "--https"), TLSContexts(settings)))
    if not found:
        raise ConfigError("no listener: give --http HOST:PORT and/or --https HOST:PORT")
    if settings.metrics_http:
        host, port = split_host_port(settings.metrics_http, "--metrics-http")
        found.append(Listener(host, port, metrics_only=True))
    return found


def uvicorn_config(app: ASGIApp, settings: Settings, listener: Listener) -> ListenerConfig:
    """uvicorn's settings for a listener. No TLS here: the listener's :class:`Gate` does the
    handshake, so that a connection over the cap costs no TLS work."""
    return ListenerConfig(
        _ClientGone(MetricsOnly(app) if listener.metrics_only else app),
        host=listener.host,
        port=listener.port,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        access_log=False,  # ours, when settings.access_log: web.operating.AccessLog
        **({"log_config": None} if settings.log_format == "json" else {}),
        http=HttpToolsTLSProtocol,
        # no WebSocket endpoints: an upgrade would hand the connection to a protocol
        # that keeps none of the deadlines and never gives its place back
        ws="none",
        timeout_keep_alive=settings.keepalive_timeout,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_header_bytes=settings.max_header_bytes,
    )


def _bind(listener: Listener) -> socket.socket:
    """A listening TCP socket. Its protocol must be IPPROTO_TCP, not 0: asyncio sets
    TCP_NODELAY only on such sockets' connections, and without it a response written in
    two parts waits for the client's delayed ACK (40 ms on Linux)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            listener.host, listener.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {listener.host}:{listener.port}: {why}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {listener.host}:{listener.port}: {why}") from None
    return sock


class Server(uvicorn.Server):
    """uvicorn's server with one listener per configured address, all serving one app."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.listeners = listeners(settings)
        self.configs = [uvicorn_config(app, settings, item) for item in self.listeners]
        super().__init__(self.configs[0])
        limit = connection_limit(settings, len(self.listeners))
        self.gates = [
            Gate(f"{item.host}:{item.port}", limit, item.tls, settings.header_timeout)
            for item in self.listeners
        ]
        self.reloaders: list[tuple[str, Callable[[], None]]] = [
            (f"TLS listener {item.host}:{item.port}", item.tls.reload)
            for item in self.listeners
            if item.tls is not None
        ]
        self._sighup = False
        self.drain_seconds = settings.drain_seconds
        self._drain: threading.Timer | None = None
        self.own_process = False
        """Whether the process serves only this server (``serve``, or a worker of it):
        then what startup made is moved out of the garbage collector's way."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM or SIGINT: ``/ready`` answers 503 from now on; with ``drain_seconds``
        a first SIGTERM keeps serving that long before the listeners close."""
        start_draining()
        if self.drain_seconds and sig == signal.SIGTERM and not self.should_exit:
            if self._drain is None:
                log.info("SIGTERM: draining for %d s before stopping", self.drain_seconds)
                stop = functools.partial(uvicorn.Server.handle_exit, self, sig, frame)
                self._drain = threading.Timer(self.drain_seconds, stop)
                self._drain.daemon = True
                self._drain.start()
            return
        super().handle_exit(sig, frame)

    quiet_exit = False
    """In a worker: end with status 0 after a stop by signal, where uvicorn raises the
    signal again once it has stopped (the supervisor takes that 0 as a clean stop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            if self.quiet_exit:
                self._captured_signals.clear()

    def on_reload(self, what: str, reload: Callable[[], None]) -> None:
        """Also run ``reload`` on SIGHUP; a ConfigError it raises is logged."""
        self.reloaders.append((what, reload))

    def reload(self) -> None:
        """What SIGHUP does: re-read certificates and CA bundles for new connections. A
        file that cannot be used is logged and the previous one stays in force."""
        for what, reload in self.reloaders:
            try:
                reload()
            except ConfigError as exc:
                log.error("SIGHUP: %s; %s keeps the previous files", exc, what)
            else:
                log.info("SIGHUP: %s reloaded", what)

    def bind(self) -> list[socket.socket]:
        sockets: list[socket.socket] = []
        try:
            for item in self.listeners:
                sockets.append(_bind(item))
        except ConfigError:
            for sock in sockets:
                sock.close()
            raise
        return sockets

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super().serve(self.bind() if sockets is None else sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup, with each listener's server opened behind its gate."""
        assert sockets is not None and len(sockets) == len(self.listeners)
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        loop = asyncio.get_running_loop()
        self.servers = []
        for config, gate, item, sock in zip(
            self.configs, self.gates, self.listeners, sockets, strict=True
        ):
            if not config.loaded:
                config.load()
            if not issubclass(config.http_protocol_class, _Deadlines):
                raise ConfigError(f"{config.http_protocol_class!r} keeps no deadlines")
            http = functools.partial(
                config.http_protocol_class,
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
            )
            server = await loop.create_server(gate.factory(http), sock=sock, backlog=config.backlog)
            self.servers.append(server)
            gate.name = item.describe(sock).split(" ", 1)[0]
            metrics.connections_open(gate.name, len(gate.open))
            log.info("listening on %s", item.describe(sock))
        log.info(
            "at most %d open connections per listener; idle %d s, headers %d s, body %d s",
            self.gates[0].limit,
            self.configs[0].timeout_keep_alive,
            self.configs[0].header_timeout,
            self.configs[0].body_timeout,
        )
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            self._sighup = True
        self.started = True
        if self.own_process:
            # Startup's objects (modules, the app, caches' structures) live as long as the
            # process; frozen, the full collections that messages trigger no longer walk
            # them again, each of which took tens of milliseconds under load.
            gc.collect()
            gc.freeze()
        siblings = current_siblings()
        if siblings is not None:
            siblings.serving()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        for server in self.servers:
            server.close()
        for gate in self.gates:
            gate.close()
        await super().shutdown(sockets)


def _reload_flows(app: ASGIApp) -> None:
    services = getattr(app.state, "services", None)
    if services is not None:
        services.runtime.deployment.reload()


def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM; SIGHUP reloads certificates and flows.

    With ``workers`` above 1 this process binds the listeners, prepares the store and
    supervises that many worker processes (:class:`Supervisor`); each runs the whole app.
    """
    logs.configure(settings.log_level, settings.log_format)
    workers = settings.workers or available_cpus()
    if workers <= 1:
        _serve_app(settings)
        return
    Supervisor(settings, workers).run()


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity), which may be fewer than exist."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _serve_app(settings: Settings, sockets: list[socket.socket] | None = None) -> None:
    app = create_app(settings)
    # what the app hands to client_certificate(); reloaded on SIGHUP with the listeners
    trust = getattr(app.state, "certificate_trust", None)
    if trust is None:
        trust = app.state.certificate_trust = CertificateTrust.from_settings(settings)
    server = Server(app, settings)
    server.own_process = True
    if settings.trusted_proxies:
        server.on_reload("client CA bundle for forwarded certificates", trust.reload)
    if settings.flows:
        server.on_reload("flows", lambda: _reload_flows(app))
    if sockets is None:
        sockets = server.bind()
    else:
        server.quiet_exit = True
    server.run(sockets)  # uvicorn's loop choice: uvloop where installed


# --- several processes ---------------------------------------------------------------------

_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}
RESTART_PAUSE = 1.0
"""Seconds between the end of a worker that had run less than this and its replacement."""


async def _prepare(settings: Settings) -> None:
    """What must happen once, before any worker starts: migrations, the credential key."""
    from .security.secretbox import SecretBox
    from .store import database

    engine = database.create_engine(settings.db)
    try:
        await database.upgrade(engine)
    finally:
        await engine.dispose()
    SecretBox.from_key_file(Path(settings.credential_key_file))


class Supervisor:
    """Pre-fork: the listening sockets are bound here and shared by ``count`` forked
    workers, each with its own event loop, store connections, caches, receiver clients
    and Saxon workers (all made after the fork, in the app's lifespan).

    The kernel hands each new connection to one worker that waits in ``accept``. SIGHUP
    is passed to every worker (each reloads flows and TLS files); SIGTERM and SIGINT stop
    them all, each finishing its messages in flight and writing its message log; a worker
    that ends otherwise is replaced. A worker that cannot start stops the whole server.
    """

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.workers: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
        self.shared_dir = tempfile.mkdtemp(prefix="partnergate-")
        """What the workers share as files: metric values, failed logins."""
        self.siblings = Siblings(count, self.shared_dir)
        self.pid = os.getpid()
        self.stopping = False
        self.failed = False
        self.reload_pending: set[int] = set()
        """Workers that are to reload once they serve (pids)."""
        given = metrics.multiprocess_dir()
        self.own_metrics_dir = given is None
        self.metrics_dir = given or os.path.join(self.shared_dir, "metrics")
        """Every worker's metric values, as files; ``/metrics`` in any worker adds them up.
        ``PROMETHEUS_MULTIPROC_DIR`` names one that servers of one host share."""

    def run(self) -> None:
        # what a worker would refuse at its start is reported here, once, in one line
        found = listeners(self.settings)
        CertificateTrust.from_settings(self.settings)
        sockets: list[socket.socket] = []
        try:
            for item in found:
                sockets.append(_bind(item))
            asyncio.run(_prepare(self.settings))
            if self.own_metrics_dir:
                metrics.prepare_workers(self.metrics_dir)
            SharedFailures.prepare(os.path.join(self.shared_dir, FAILURES_FILE))
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
            try:
                for index in range(self.count):
                    self._spawn(index, sockets, old_mask)
                self._supervise(sockets, old_mask)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        finally:
            for sock in sockets:
                sock.close()
            shutil.rmtree(self.shared_dir, ignore_errors=True)
        if self.failed:
            raise SystemExit(STARTUP_FAILURE)

    def _spawn(self, index: int, sockets: list[socket.socket], old_mask: set[int]) -> None:
        pid = os.fork()
        if pid:
            self.workers[pid] = (index, time.monotonic())
            return
        code = 1
        try:
            _end_with_parent(signal.SIGKILL)
            if os.getppid() != self.pid:  # the supervisor ended before the line above
                os._exit(1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # until the app listens for them: a SIGHUP while starting must not kill it
            for asked in (FLUSH_SIGNAL, SYNC_SIGNAL, signal.SIGHUP):
                signal.signal(asked, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            self.siblings.attach(index)
            _serve_app(self.settings, sockets)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker %d failed", index)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _supervise(self, sockets: list[socket.socket], old_mask: set[int]) -> None:
        log.info("%d workers, pids %s", self.count, " ".join(map(str, self.workers)))
        while self.workers:
            info = signal.sigtimedwait(_SIGNALS, 1.0)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping:
                    log.info("stopping %d workers", len(self.workers))
                self._stop()
            elif info is not None and info.si_signo == signal.SIGHUP:
                self.reload_pending = set(self.workers)
            self._reload_serving()
            for index in self._reap():
                if not self.stopping:
                    self._spawn(index, sockets, old_mask)

    def _reap(self) -> list[int]:
        """Collect ended workers; the indexes of those to replace."""
        replace = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return replace
            if pid == 0:
                return replace
            index, started = self.workers.pop(pid, (None, 0.0))
            if index is None:
                continue
            metrics.worker_exited(pid)
            served = self.siblings.has_served(index)
            self.siblings.clear(index)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if code != 0:
                    log.warning("worker %d (pid %d) ended with %s", index, pid, code)
                continue
            running = any(self.siblings.has_served(i) for i, _ in self.workers.values())
            if (code == STARTUP_FAILURE or not served) and not running:
                log.error("worker %d (pid %d) could not start (%s); stopping", index, pid, code)
                self.failed = True
                self._stop()
                continue
            if not served:  # others serve: what failed (the store away?) may pass
                log.error("worker %d (pid %d) could not start (%s); trying again", index, pid, code)
                time.sleep(RESTART_PAUSE)
                replace.append(index)
                continue
            log.error("worker %d (pid %d) ended with %s; starting another", index, pid, code)
            if time.monotonic() - started < RESTART_PAUSE:
                time.sleep(RESTART_PAUSE)
            replace.append(index)

    def _reload_serving(self) -> None:
        """Pass a SIGHUP on to each worker once it listens for it; one still starting
        gets it when it serves, so no worker keeps the files of before."""
        for pid in list(self.reload_pending):
            entry = self.workers.get(pid)
            if entry is None:
                self.reload_pending.discard(pid)
            elif self.siblings.has_served(entry[0]):
                self.reload_pending.discard(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)

    def _stop(self) -> None:
        self.stopping = True
        self._tell(signal.SIGTERM)

    def _tell(self, signum: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass


def _end_with_parent(signum: int) -> None:
    """Have the kernel send ``signum`` to this process when its parent ends: a worker
    does not outlive a supervisor that was killed (Linux ``PR_SET_PDEATHSIG``)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signum, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

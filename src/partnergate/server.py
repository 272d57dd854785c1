"""Starting uvicorn with the listeners the settings ask for: plain HTTP, TLS, or both.

One process, one app, one lifespan. The first listener is uvicorn's own server; further
listeners are asyncio servers opened beside it that share its connection set, so that a
shutdown closes and waits for all of them. Every socket is bound before the app starts:
a port in use is a one-line error, not a half-started server.

On the TLS listener OpenSSL verifies client certificates against ``--client-ca``; its
server-side default purpose (``sslclient``) refuses a leaf whose extendedKeyUsage lacks
clientAuth in the handshake. uvicorn does not tell an ASGI app which certificate the
client presented, so the TLS listener's protocol puts it into the ASGI ``tls`` extension
(:func:`tls_extension`). SIGHUP re-reads the certificate files for new connections.

A refused handshake never reaches the app: asyncio closes the connection without sending
OpenSSL's alert and reports the failure only in debug mode, so the client sees the
connection closed and the server log stays silent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import ConfigError, Settings
from .security.certificates import CertificateError, der_bytes, load_certificates
from .web.app import create_app
from .web.client_cert import CertificateTrust

__all__ = [
    "H11TLSProtocol",
    "HttpToolsTLSProtocol",
    "Listener",
    "Server",
    "ServerContext",
    "TLSContexts",
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

    uvicorn protocols call ``self.app`` for every request, and asyncio calls
    ``connection_made`` once the TLS handshake is complete, so the peer is known here.
    """

    app: ASGIApp

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        extension = tls_extension(transport)
        if extension is not None:
            self.app = _WithTLS(self.app, extension)


class H11TLSProtocol(_TLSScope, H11Protocol):
    """uvicorn's h11 protocol with the ASGI ``tls`` extension."""


class HttpToolsTLSProtocol(_TLSScope, HttpToolsProtocol):
    """uvicorn's httptools protocol (its default with ``uvicorn[standard]``) with the
    ASGI ``tls`` extension."""


# --- listeners and the server --------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    host: str
    port: int
    tls: TLSContexts | None = None

    def describe(self, sock: socket.socket) -> str:
        port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"{'https' if self.tls else 'http'}://{host}:{port}"
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
    return found


def uvicorn_config(app: ASGIApp, settings: Settings, listener: Listener) -> uvicorn.Config:
    tls = listener.tls
    return uvicorn.Config(
        app,
        host=listener.host,
        port=listener.port,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        access_log=True,
        http=HttpToolsTLSProtocol if tls else "auto",
        ssl_context_factory=(lambda config, default: tls.listening) if tls else None,
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
        self.reloaders: list[tuple[str, Callable[[], None]]] = [
            (f"TLS listener {item.host}:{item.port}", item.tls.reload)
            for item in self.listeners
            if item.tls is not None
        ]
        self._sighup = False

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
        assert sockets is not None and len(sockets) == len(self.listeners)
        await super().startup(sockets[:1])
        loop = asyncio.get_running_loop()
        for config, sock in zip(self.configs[1:], sockets[1:], strict=True):
            config.load()
            factory = functools.partial(
                config.http_protocol_class,
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
            )
            server = await loop.create_server(
                factory, sock=sock, ssl=config.ssl, backlog=config.backlog
            )
            self.servers.append(server)
        for item, sock in zip(self.listeners, sockets, strict=True):
            log.info("listening on %s", item.describe(sock))
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            self._sighup = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        await super().shutdown(sockets)


def _reload_flows(app: ASGIApp) -> None:
    services = getattr(app.state, "services", None)
    if services is not None:
        services.runtime.deployment.reload()


def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM; SIGHUP reloads certificates."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    # what the app hands to client_certificate(); reloaded on SIGHUP with the listeners
    trust = getattr(app.state, "certificate_trust", None)
    if trust is None:
        trust = app.state.certificate_trust = CertificateTrust.from_settings(settings)
    server = Server(app, settings)
    if settings.trusted_proxies:
        server.on_reload("client CA bundle for forwarded certificates", trust.reload)
    if settings.flows:
        server.on_reload("flows", lambda: _reload_flows(app))
    sockets = server.bind()
    server.run(sockets)  # uvicorn's loop choice: uvloop where installed

"""Messages per second through the seed's sender flow, against a bare pass-through proxy.

What routing a message costs in partnergate beyond moving its bytes: the sender flow
``/http/partner_directory`` of ``examples/partner-directory`` authenticates the sender
(HTTP Basic, an OAuth bearer token or a client certificate), finds its partner, reads the
message, looks up the receiver's ``ADDRESS`` and ``USER`` credential in the Partner
Directory, logs the message and calls the receiver. The baseline does none of that: a
Starlette app that forwards each request to the same receiver through one pooled aiohttp
``ClientSession`` (DECISIONS D7), in a uvicorn process of its own. A second pass-through
forwards through one pooled pyreqwest ``Client`` (Rust reqwest/hyper, DECISIONS D8), the
client partnergate's receiver adapter uses; its column divides each row's server CPU by
that pass-through's. All run in the same rounds, the pass-throughs right before
partnergate, and the table shows each row's median round, so that other work on the
machine weighs on every side as evenly as it can. A hand-written flow
(:func:`handwritten_app`) does the sender flow's work in the fewest lines on the same
framework and client: the floor under what the flow can cost on this stack.
nginx's ``proxy_pass`` (where nginx is installed) and the receiver called directly show
what any proxy could do on this machine.

partnergate runs twice over the same store: with one worker process (the rows above the
2-worker row) and with ``--workers 2``, whose Basic row is divided by the one-worker
Basic row of the same round. Its server CPU counts both workers; the report also says
how much of the machine the receiver and wrk took meanwhile, since all share the cores.

The receiver is a minimal Starlette app too, not partnergate's ``/cxf/receiver_2`` flow:
that flow would run in the same event loop as the sender flow under measurement, so
partnergate would pay for every message twice and the pass-through would mostly measure
partnergate's receiver flow. The minimal receiver answers as the seed's receivers do
(``<Content>Receiver_2 greets Sender_BASIC</Content>``) and costs both sides the same.

The load comes from wrk (``apt-get install wrk``) over kept-alive connections; it is
cheap, so the servers get nearly all of the machine. wrk cannot present a client
certificate, so the certificate row, and a pass-through row measured the same way for
its ratio, are driven from this process by an aiohttp client on uvloop, which takes CPU
from the servers: compare each row only with the pass-through of its own client.
"server CPU" is the CPU time of the process under measurement (for nginx, its master and
worker) per message: where throughput depends on what else the machine runs, it does not.

    .venv/bin/python bench/route.py                          # about three minutes
    .venv/bin/python bench/route.py --seconds 10 --rounds 1 --connections 16
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from common import (
    ADMIN_ROLE,
    LOOPBACK,
    Service,
    free_port,
    interruptible,
    partnergate_cli,
    run_async,
    start_service,
    table,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from partnergate.security import pki

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "partner-directory"
SEND = "/http/partner_directory"
MESSAGE = b"<Message><Receiver>Receiver_2</Receiver></Message>"
XML = "application/xml"
CPU_TARGET_AIOHTTP, CPU_TARGET_REQWEST = 1.0, 1.3
"""The issue's targets for Basic and bearer: server CPU per message at most these times
the aiohttp and the pyreqwest pass-through's."""
CERTIFICATE_TARGET = 0.10
"""A client certificate may cost at most this much more CPU per message than Basic."""
UPSTREAM_CONNECTIONS = 100
"""Connections per receiver origin: what partnergate's ``ReceiverPool`` allows."""
WRK, AIOHTTP = "wrk", "aiohttp"
BASIC, BEARER = "partnergate, Basic", "partnergate, OAuth bearer"
CERTIFICATE = "partnergate, client certificate"
BASIC_WORKERS = "partnergate, Basic, 2 workers"
WORKERS_TARGET = 1.6
"""The issue's target: two workers on two cores, at least this times one worker's msgs/s."""
PASSTHROUGH = "pass-through (Starlette + aiohttp)"
PASSTHROUGH_REQWEST = "pass-through (Starlette + pyreqwest)"
HANDWRITTEN = "hand-written flow (Starlette + pyreqwest)"
FORWARDERS = ("aiohttp", "pyreqwest")
"""The HTTP clients a pass-through can forward with."""


# -- the minimal servers, run as ``route.py receiver|passthrough --http HOST:PORT`` -------

SENDER = re.compile(rb"<Sender>([^<]*)</Sender>")


def receiver_app() -> Starlette:
    """The seed's receivers minus everything else: read the body, greet its sender."""

    async def receive(request: Request) -> Response:
        body = await request.body()
        found = SENDER.search(body)
        name = request.path_params["name"]
        greeting = f"<Content>{name[:1].upper()}{name[1:]} greets ".encode()
        return Response(greeting + (found[1] if found else b"") + b"</Content>", media_type=XML)

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/cxf/{name}", receive, methods=["POST"]),
        ]
    )


def passthrough_app(target: str, forwarder: str = "aiohttp") -> Starlette:
    """Forward each message to ``target`` through one pooled session: no auth, no lookups.

    It does what any proxy must, and partnergate does too: read the whole body, send it
    with its content type over a kept-alive pool, read the whole answer, pass it back.
    ``forwarder`` names the HTTP client, one of :data:`FORWARDERS`.
    """
    if forwarder == "pyreqwest":
        return reqwest_passthrough_app(target)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=UPSTREAM_CONNECTIONS)
        async with aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        ) as session:
            app.state.session = session
            yield

    async def forward(request: Request) -> Response:
        session: aiohttp.ClientSession = request.app.state.session
        body = await request.body()
        headers = {"Content-Type": request.headers.get("content-type", XML)}
        async with session.post(target, data=body, headers=headers) as answer:
            payload = await answer.read()
            content_type = answer.headers.get("Content-Type", XML)
        return Response(payload, answer.status, {"Content-Type": content_type})

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/http/{path:path}", forward, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


@asynccontextmanager
async def reqwest_client() -> AsyncIterator[Any]:
    """One pooled pyreqwest ``Client``, as the pass-through and the hand-written flow use."""
    from pyreqwest.client import ClientBuilder

    builder = ClientBuilder().max_connections(UPSTREAM_CONNECTIONS).no_proxy()
    async with builder.follow_redirects(False).build() as client:
        yield client


def reqwest_passthrough_app(target: str) -> Starlette:
    """:func:`passthrough_app` forwarding through one pooled pyreqwest ``Client``."""
    from pyreqwest.client import Client

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with reqwest_client() as client:
            app.state.client = client
            yield

    async def forward(request: Request) -> Response:
        client: Client = request.app.state.client
        body = await request.body()
        content_type = request.headers.get("content-type", XML)
        sent = client.post(target).header("Content-Type", content_type).body_bytes(body)
        answer = await sent.build().send()
        payload = bytes(await answer.bytes())
        answered = answer.headers.get("Content-Type", XML)
        return Response(payload, answer.status, {"Content-Type": answered})

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/http/{path:path}", forward, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


HANDWRITTEN_AUTHORIZATION = "ROUTE_HANDWRITTEN_AUTHORIZATION"
"""Environment variable with the Basic header the hand-written flow accepts."""


def handwritten_app(target: str, authorization: str, log_path: Path) -> Starlette:
    """The sender flow's work in the fewest lines Python allows: the floor under
    partnergate's cost, on the pass-through's framework and client.

    It does what the flow must do for the seed's Basic sender, each as cheaply as a
    dictionary: the ``Authorization`` header looked up among the one it knows, with its
    user's role; the body parsed by lxml with the XML door's parser settings, a DOCTYPE
    refused; the receiver and a claimed sender read by XPath; the user's partner, the
    receiver's ``ADDRESS`` and ``USER`` credential looked up; the body for the receiver
    made with XML escaping; the receiver called with that credential; a log row per
    message with its five step lines, written by a thread of its own to SQLite every
    100 ms; the answer with its ``SAP_MessageProcessingLogID``. It leaves out what
    partnergate also does and a user relies on: passwords and tokens, cache
    invalidation across workers, the step records' times, metrics, deadlines, limits.
    """
    import sqlite3
    import threading
    from xml.sax.saxutils import escape

    from lxml import etree
    from pyreqwest.client import Client

    users = {authorization: ("user_for_sender_basic", frozenset({"ESBMessaging.send"}))}
    partners = {"user_for_sender_basic": "Sender_BASIC"}
    addresses = {"Receiver_2": target}
    receiver_auth = "Basic " + base64.b64encode(b"user_receiver_2:password").decode()
    credentials = {"Receiver_2": receiver_auth}
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
    receiver_of, sender_of = etree.XPath("/Message/Receiver"), etree.XPath("/Message/Sender")
    pending: list[tuple[object, ...]] = []

    def write_log() -> None:
        db = sqlite3.connect(log_path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE log (guid TEXT PRIMARY KEY, flow TEXT, status TEXT, start TEXT,"
            " end TEXT, user TEXT, sender TEXT, receiver TEXT, http_status INT, steps TEXT)"
        )
        while True:
            time.sleep(0.1)
            batch = pending[:]
            del pending[: len(batch)]
            if batch:
                db.execute("BEGIN")
                db.executemany("INSERT OR REPLACE INTO log VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
                db.execute("COMMIT")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threading.Thread(target=write_log, daemon=True).start()
        async with reqwest_client() as client:
            app.state.client = client
            yield

    async def flow(request: Request) -> Response:
        client: Client = request.app.state.client
        start = time.time()
        who = users.get(request.headers.get("authorization", ""))
        if who is None or "ESBMessaging.send" not in who[1]:
            return PlainTextResponse("Unauthorized", 401)
        body = await request.body()
        try:
            root = etree.fromstring(body, parser)
        except etree.XMLSyntaxError:
            return PlainTextResponse("not XML", 400)
        if root.getroottree().docinfo.doctype:
            return PlainTextResponse("DOCTYPE", 400)
        found = receiver_of(root)
        if not found or sender_of(root) and sender_of(root)[0].text != partners[who[0]]:
            return PlainTextResponse("no receiver, or not the sender", 400)
        receiver, sender = found[0].text or "", partners[who[0]]
        out = f"<Message><Sender>{escape(sender)}</Sender><Receiver>{escape(receiver)}</Receiver>"
        message_id = secrets.token_hex(14)
        sent = client.post(addresses[receiver]).header("Content-Type", XML)
        sent = sent.header("Authorization", credentials[receiver])
        answer = await sent.body_bytes((out + "</Message>").encode()).build().send()
        payload = bytes(await answer.bytes())
        steps = [[n, f"step {n}", "set", 0, 1, "COMPLETED", "", None] for n in range(1, 6)]
        pending.append(
            (message_id, "sender", "COMPLETED", start, time.time(), who[0], sender, receiver,
             answer.status, json.dumps(steps))
        )  # fmt: skip
        headers = {
            "Content-Type": answer.headers.get("Content-Type", XML),
            "SAP_MessageProcessingLogID": message_id,
        }
        return Response(payload, answer.status, headers)

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route(SEND, flow, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


def serve(app: Starlette, http: str) -> None:
    """Run ``app`` as ``uvicorn.run`` does by default (uvloop and httptools where
    installed), with partnergate's listener options and, as partnergate here, no access log."""
    import uvicorn

    host, _, port = http.rpartition(":")
    uvicorn.run(
        app,
        host=host,
        port=int(port),
        log_level="warning",
        proxy_headers=False,
        server_header=False,
        access_log=False,
    )


def start_own_server(
    stack: ExitStack, name: str, args: Sequence[str], work: Path, label: str | None = None
) -> Service:
    """Start one of this module's servers as a process of its own; ``label`` names its log
    where two processes serve the same ``name``."""
    port = free_port()
    argv = [sys.executable, __file__, name, "--http", f"{LOOPBACK}:{port}", *args]
    return start_service(stack, label or name, argv, port=port, log_dir=work)


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream receiver {{
        server {receiver};
        keepalive {connections};
    }}
    server {{
        listen {listen};
        location = /health {{ return 200 "ok"; }}
        location = {path} {{
            proxy_pass http://receiver/cxf/receiver_2;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def start_nginx(stack: ExitStack, receiver: Service, work: Path) -> Service:
    """nginx ``proxy_pass`` with a kept-alive upstream pool; one worker, as one uvicorn."""
    directory = work / "nginx"
    directory.mkdir()
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            dir=directory,
            receiver=receiver.url.removeprefix("http://"),
            connections=UPSTREAM_CONNECTIONS,
            listen=f"{LOOPBACK}:{port}",
            path=SEND,
        )
    )
    argv = ["nginx", "-e", str(directory / "error.log"), "-p", str(directory), "-c", str(conf)]
    return start_service(stack, "nginx", argv, port=port, log_dir=work)


# -- the seed scenario -------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """partnergate with the seed's flows, accounts and Partner Directory entries."""

    server: Service
    https_url: str
    basic: str
    """The ``Authorization`` header of Sender_BASIC's user."""
    bearer: str
    """The ``Authorization`` header with a token of Sender_OAUTH's client."""
    client_tls: ssl.SSLContext
    """Trusts partnergate's CA and presents Sender_CERT's certificate."""
    two_workers: Service
    """The same partnergate, store and settings, with ``--workers 2``."""


def seed_environment(work: Path, http: str, https: str) -> tuple[dict[str, str], Path, Path]:
    """The server's settings, as ``partnergate demo`` makes them; also the client's cert
    and key, issued by the same development CA that the TLS listener trusts."""
    pki_dir = work / "pki"
    ca = pki.init_ca(pki_dir)
    server_cert = pki.issue_server(ca, pki_dir, [LOOPBACK, "localhost"])
    client = pki.issue_client(ca, pki_dir, "sender_cert", password=secrets.token_urlsafe(8))
    env = {
        **os.environ,
        "PARTNERGATE_DB": f"sqlite:///{work / 'partnergate.db'}",
        "PARTNERGATE_DATA_DIR": str(work / "data"),
        "PARTNERGATE_HTTP": http,
        "PARTNERGATE_HTTPS": https,
        "PARTNERGATE_TLS_CERT": str(server_cert.cert_path),
        "PARTNERGATE_TLS_KEY": str(server_cert.key_path),
        "PARTNERGATE_CLIENT_CA": str(ca.cert_path),
        "PARTNERGATE_CLIENT_CERT": "optional",
        "PARTNERGATE_FLOWS": str(EXAMPLES),
        "PARTNERGATE_LOG_LEVEL": "warning",
    }
    return env, client.cert_path, client.key_path


def add_accounts(env: Mapping[str, str]) -> dict[str, str]:
    """The local users and the OAuth client, through the CLI; their secrets by name."""
    words = {
        name: secrets.token_urlsafe(12)
        for name in (
            "admin",
            "user_for_sender_basic",
            "user_receiver_1",
            "user_receiver_2",
            "client_sender_oauth",
        )
    }
    users = {
        "admin": [ADMIN_ROLE],
        "user_for_sender_basic": [],
        "user_receiver_1": ["receiver_1.send"],
        "user_receiver_2": ["receiver_2.send"],
    }
    for name, roles in users.items():
        options = [arg for role in roles for arg in ("--role", role)]
        partnergate_cli(
            "users", "add", name, *options, "--password-stdin", env=env, stdin=words[name] + "\n"
        )
    partnergate_cli(
        "clients", "add", "client_sender_oauth", "--secret-stdin",
        env=env, stdin=words["client_sender_oauth"] + "\n",
    )  # fmt: skip
    return words


def configure(server: Service, receiver: Service, words: Mapping[str, str], cert: Path) -> None:
    """The blog's Partner Directory entries, through the API with Basic and CSRF; both
    receivers' ``ADDRESS`` point at the minimal receiver."""
    pem = cert.read_bytes().replace(b"\n", b"\r\n")
    entries: list[tuple[str, dict[str, str]]] = [
        (
            "CertificateUserMappings",
            {"User": "user_for_sender_cert", "Certificate": base64.b64encode(pem).decode()},
        ),
        ("AuthorizedUsers", {"User": "user_for_sender_basic", "Pid": "Sender_BASIC"}),
        ("AuthorizedUsers", {"User": "oauth_client_client_sender_oauth", "Pid": "Sender_OAUTH"}),
        ("AuthorizedUsers", {"User": "user_for_sender_cert", "Pid": "Sender_CERT"}),
    ]
    for n in (1, 2):
        pid, user = f"Receiver_{n}", f"user_receiver_{n}"
        address = f"{receiver.url}/cxf/receiver_{n}"
        entries += [
            ("StringParameters", {"Pid": pid, "Id": "ADDRESS", "Value": address}),
            (
                "UserCredentialParameters",
                {"Pid": pid, "Id": "USER", "User": user, "Password": words[user]},
            ),
        ]
    with httpx.Client(base_url=server.url, auth=("admin", words["admin"]), timeout=60) as api:
        fetched = api.get("/api/v1/", headers={"X-CSRF-Token": "Fetch"})
        fetched.raise_for_status()
        headers = {"X-CSRF-Token": fetched.headers["x-csrf-token"], "Accept": "application/json"}
        for entity_set, body in entries:
            created = api.post(f"/api/v1/{entity_set}", json=body, headers=headers)
            if created.status_code != 201:
                raise RuntimeError(
                    f"POST /api/v1/{entity_set} answered {created.status_code}: {created.text}"
                )


def start_partnergate(
    stack: ExitStack, receiver: Service, work: Path, settings: Sequence[str] = ()
) -> Scenario:
    """Set the seed up as ``partnergate demo`` does: PKI, CLI accounts, API entries.
    ``settings``: NAME=VALUE pairs over the benchmark's (e.g. ``log_level=info``)."""
    port, https = free_port(), f"{LOOPBACK}:{free_port()}"
    env, cert, key = seed_environment(work, f"{LOOPBACK}:{port}", https)
    for pair in settings:
        name, _, value = pair.partition("=")
        env[f"PARTNERGATE_{name.strip().upper()}"] = value
    words = add_accounts(env)
    argv = [sys.executable, "-m", "partnergate", "serve"]
    env["PARTNERGATE_WORKERS"] = "1"
    server = start_service(stack, "partnergate", argv, port=port, log_dir=work, env=env)
    configure(server, receiver, words, cert)
    two_port = free_port()
    two_env = {
        **env,
        "PARTNERGATE_WORKERS": "2",
        "PARTNERGATE_HTTP": f"{LOOPBACK}:{two_port}",
        "PARTNERGATE_HTTPS": f"{LOOPBACK}:{free_port()}",
    }
    two_workers = start_service(
        stack, "partnergate-2-workers", argv, port=two_port, log_dir=work, env=two_env
    )
    issued = httpx.post(
        server.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("client_sender_oauth", words["client_sender_oauth"]),
        timeout=60,
    )
    issued.raise_for_status()
    basic = base64.b64encode(f"user_for_sender_basic:{words['user_for_sender_basic']}".encode())
    client_tls = ssl.create_default_context(cafile=env["PARTNERGATE_CLIENT_CA"])
    client_tls.load_cert_chain(cert, key)
    return Scenario(
        server=server,
        https_url=f"https://{https}",
        basic="Basic " + basic.decode(),
        bearer="Bearer " + issued.json()["access_token"],
        client_tls=client_tls,
        two_workers=two_workers,
    )


# -- load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One row of the table: a server, how to send it the message, and what it answers."""

    label: str
    client: str
    service: Service
    """The process whose CPU time the row reports."""
    url: str
    answer: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None
    baseline: bool = False
    """The pass-through that the rows of the same client are divided by."""
    beside: Service | None = None
    """Another process whose CPU time during the row is reported (the receiver)."""

    def request_headers(self) -> dict[str, str]:
        return {"Content-Type": XML, **self.headers}


@dataclass(frozen=True)
class Bounds:
    """Each row's limits: ``seconds`` or ``max_requests``, whichever comes first."""

    connections: int
    seconds: float
    warmup: float
    """Unmeasured seconds first: connections open, caches fill."""
    max_requests: int


@dataclass(frozen=True)
class Measurement:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float | None
    beside_cpu_seconds: float | None = None
    """CPU time of the target's ``beside`` process during the row."""
    client_cpu_seconds: float | None = None
    """CPU time of wrk during the row."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float | None:
        """CPU time of the measured server per message, in microseconds."""
        if self.cpu_seconds is None or not self.requests:
            return None
        return self.cpu_seconds * 1e6 / self.requests


class LoadFailed(RuntimeError):
    """A server answered other than expected under load: its rate would measure nothing."""


def tree_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU of a process and its children (nginx's worker), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        children = [
            int(child)
            for path in Path(f"/proc/{pid}/task").glob("*/children")
            for child in path.read_text().split()
        ]
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(tree_cpu_seconds(child) or 0.0 for child in children)


def lua_string(text: str) -> str:
    if not text.isascii() or not text.isprintable():
        raise ValueError(f"not a printable ASCII string: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


WRK_SCRIPT = """\
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} route_timespec;
int clock_gettime(int clock, route_timespec *now);
]]
local clock = ffi.new("route_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end

wrk.method = "POST"
wrk.body = {body}
{headers}

local threads = {{}}
function setup(thread) table.insert(threads, thread) end

local limit, answered, started = {limit}, 0, 0
function init(args) started = now() end
function response(status, headers, body)
  answered = answered + 1
  if answered == limit then
    wrk.thread:set("elapsed", now() - started)
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.6f %d %d %d %d %d\\n",
    summary.requests, threads[1]:get("elapsed") or summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99), e.connect, e.status, e.timeout))
end
"""
"""wrk's own duration is always the whole ``--duration``, also when a thread stops at the
request limit, so the script times the run itself (``CLOCK_MONOTONIC`` through LuaJIT's
FFI) and reports that instead when it stopped early."""


def wrk_run(
    target: Target, connections: int, seconds: float, limit: int, work: Path
) -> Measurement:
    """One wrk run, on one thread: wrk needs little CPU, and the servers need the rest."""
    script = work / "wrk.lua"
    headers = "\n".join(
        f"wrk.headers[{lua_string(name)}] = {lua_string(value)}"
        for name, value in target.request_headers().items()
    )
    body = lua_string(MESSAGE.decode())
    script.write_text(WRK_SCRIPT.format(body=body, headers=headers, limit=limit))
    duration = max(1, round(seconds))
    argv = [
        "wrk", "--threads", "1", "--connections", str(connections),
        "--duration", f"{duration}s", "--timeout", "30s", "--script", str(script), target.url,
    ]  # fmt: skip
    cpu_before = tree_cpu_seconds(target.service.process.pid)
    beside_before = tree_cpu_seconds(target.beside.process.pid) if target.beside else None
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    cpu_after = tree_cpu_seconds(target.service.process.pid)
    beside_after = tree_cpu_seconds(target.beside.process.pid) if target.beside else None
    wrk_rusage = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (wrk_rusage.ru_utime + wrk_rusage.ru_stime) - (children.ru_utime + children.ru_stime)
    found = re.search(r"^RESULT (.+)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        raise LoadFailed(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    fields = found[1].split()
    requests, p50, p99, connect, status, timeouts = (int(f) for f in fields[:1] + fields[2:])
    elapsed = float(fields[1])
    if status or timeouts or connect:
        raise LoadFailed(
            f"{target.label}: {status} answers were not 2xx or 3xx, {timeouts} timed out, "
            f"{connect} connections failed\n{target.service.name}'s log ends:\n"
            f"{target.service.log_tail()}"
        )
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    beside = None if beside_before is None or beside_after is None else beside_after - beside_before
    return Measurement(requests, elapsed, p50 / 1000, p99 / 1000, cpu, beside, wrk_cpu)


async def aiohttp_run(target: Target, bounds: Bounds) -> Measurement:
    """Closed-loop load over ``bounds.connections`` kept-alive connections, with TLS if
    the target has a context: the handshakes happen in the warm-up, once per connection."""
    connector = aiohttp.TCPConnector(limit=bounds.connections, ssl=target.tls or False)
    headers = target.request_headers()
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=30),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:

        async def one() -> float:
            started = time.perf_counter()
            async with session.post(target.url, data=MESSAGE, headers=headers) as response:
                body = await response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200 or body != target.answer:
                raise LoadFailed(
                    f"{target.label}: answered {response.status} {body[:200]!r}\n"
                    f"{target.service.name}'s log ends:\n{target.service.log_tail()}"
                )
            return elapsed

        async def drive(seconds: float, sink: list[float]) -> None:
            deadline = loop.time() + seconds

            async def worker() -> None:
                while len(sink) < bounds.max_requests and loop.time() < deadline:
                    sink.append(await one())

            await asyncio.gather(*(worker() for _ in range(bounds.connections)))

        await drive(bounds.warmup, [])
        latencies: list[float] = []
        cpu_before = tree_cpu_seconds(target.service.process.pid)
        started = time.perf_counter()
        await drive(bounds.seconds, latencies)
        seconds = time.perf_counter() - started
        cpu_after = tree_cpu_seconds(target.service.process.pid)
    latencies.sort()
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    p50, p99 = percentile_ms(latencies, 50), percentile_ms(latencies, 99)
    return Measurement(len(latencies), seconds, p50, p99, cpu)


def percentile_ms(ordered: Sequence[float], p: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def measure(target: Target, bounds: Bounds, work: Path) -> Measurement:
    """Warm the connections and caches up, then measure within the bounds."""
    if target.client == AIOHTTP:
        return run_async(aiohttp_run(target, bounds))
    if bounds.warmup > 0:
        wrk_run(target, bounds.connections, bounds.warmup, bounds.max_requests, work)
    return wrk_run(target, bounds.connections, bounds.seconds, bounds.max_requests, work)


def check(target: Target) -> str | None:
    """Send the message once: why the row cannot be measured, or None when it can.

    wrk counts statuses only, so this is where each row's answer is checked whole.
    """
    try:
        with httpx.Client(verify=target.tls or True, timeout=30) as client:
            answer = client.post(target.url, content=MESSAGE, headers=target.request_headers())
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if answer.status_code != 200 or answer.content != target.answer:
        return f"answered {answer.status_code} {answer.text.strip()[:160]!r}"
    return None


# -- the run -----------------------------------------------------------------------------


def greeting(sender: str) -> bytes:
    return f"<Content>Receiver_2 greets {sender}</Content>".encode()


def targets(
    scenario: Scenario,
    receiver: Service,
    passthrough: Service,
    reqwest_passthrough: Service,
    handwritten: Service,
    nginx: Service | None,
    client: str,
) -> list[Target]:
    """The rows in the order they run, each client's pass-throughs right before its
    partnergate rows; a pass-through's answer greets nobody, as it adds no sender."""
    pg = scenario.server
    flow = pg.url + SEND
    forward = passthrough.url + SEND
    reqwest_forward = reqwest_passthrough.url + SEND
    rows = [
        Target("receiver alone", client, receiver, receiver.url + "/cxf/receiver_2", greeting(""))
    ]
    if nginx is not None:
        rows.append(Target("nginx proxy_pass", client, nginx, nginx.url + SEND, greeting("")))
    rows += [
        Target(PASSTHROUGH, client, passthrough, forward, greeting(""), baseline=True),
        Target(PASSTHROUGH_REQWEST, client, reqwest_passthrough, reqwest_forward, greeting("")),
        Target(
            HANDWRITTEN,
            client,
            handwritten,
            handwritten.url + SEND,
            greeting("Sender_BASIC"),
            {"Authorization": scenario.basic},
        ),
        Target(
            BASIC,
            client,
            pg,
            flow,
            greeting("Sender_BASIC"),
            {"Authorization": scenario.basic},
            beside=receiver,
        ),
        Target(
            BEARER, client, pg, flow, greeting("Sender_OAUTH"), {"Authorization": scenario.bearer}
        ),
        Target(
            BASIC_WORKERS,
            client,
            scenario.two_workers,
            scenario.two_workers.url + SEND,
            greeting("Sender_BASIC"),
            {"Authorization": scenario.basic},
            beside=receiver,
        ),
    ]
    if client != AIOHTTP:
        rows.append(Target(PASSTHROUGH, AIOHTTP, passthrough, forward, greeting(""), baseline=True))
    certified = scenario.https_url + SEND
    rows.append(
        Target(
            CERTIFICATE, AIOHTTP, pg, certified, greeting("Sender_CERT"), tls=scenario.client_tls
        )
    )
    return rows


def median_run(runs: Sequence[Measurement]) -> Measurement:
    """The run with the median rate, whole: its latencies belong to that same run."""
    return sorted(runs, key=lambda m: m.rate)[(len(runs) - 1) // 2]


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.{digits}f}"


def report(
    rows: Sequence[Target], results: Mapping[int, Measurement], problems: Mapping[int, str]
) -> str:
    """The table, the verdict on the issue's target, and the rows that could not run."""
    baselines = {t.client: results.get(i) for i, t in enumerate(rows) if t.baseline}
    reqwest = {
        t.client: results.get(i) for i, t in enumerate(rows) if t.label == PASSTHROUGH_REQWEST
    }
    ratios: dict[int, float] = {}
    cpu_ratios: dict[int, float] = {}
    for i, target in enumerate(rows):
        base = baselines.get(target.client)
        if i in results and base is not None and base.rate:
            ratios[i] = results[i].rate / base.rate
        cpu, reqwest_cpu = results[i].cpu_us if i in results else None, None
        if (found_reqwest := reqwest.get(target.client)) is not None:
            reqwest_cpu = found_reqwest.cpu_us
        if cpu is not None and reqwest_cpu:
            cpu_ratios[i] = cpu / reqwest_cpu
    header = [
        "path", "client", "msgs/s", "p50 ms", "p99 ms", "server CPU µs/msg",
        "msgs/s ÷ pass-through", "CPU ÷ pyreqwest pass-through",
    ]  # fmt: skip
    lines = []
    for i, target in enumerate(rows):
        found = results.get(i)
        if found is None:
            lines.append([target.label, target.client, "—", "—", "—", "—", "—", "—"])
            continue
        lines.append(
            [
                target.label,
                target.client,
                fmt(found.rate),
                fmt(found.p50_ms, 2),
                fmt(found.p99_ms, 2),
                fmt(found.cpu_us),
                f"{ratios[i]:.2f}" if i in ratios else "—",
                f"{cpu_ratios[i]:.2f}" if i in cpu_ratios else "—",
            ]
        )
    text = table(header, lines)
    text += cpu_verdict(rows, results)
    text += workers_verdict(rows, results)
    for i, why in problems.items():
        text += f"\n{rows[i].label} ({rows[i].client}) not measured: {why}"
    return text


def cpu_verdict(rows: Sequence[Target], results: Mapping[int, Measurement]) -> str:
    """The issue's targets for server CPU per message, each against its own baseline."""

    def cpu(label: str, client: str | None = None) -> float | None:
        for i, t in enumerate(rows):
            if t.label == label and (client is None or t.client == client) and i in results:
                return results[i].cpu_us
        return None

    text = ""
    client = next((t.client for t in rows if t.label == BASIC), WRK)
    aiohttp_cpu, reqwest_cpu = cpu(PASSTHROUGH, client), cpu(PASSTHROUGH_REQWEST)
    for label in (BASIC, BEARER, HANDWRITTEN):
        own = cpu(label)
        if own is None or not aiohttp_cpu or not reqwest_cpu:
            continue
        over_aiohttp, over_reqwest = own / aiohttp_cpu, own / reqwest_cpu
        met = over_aiohttp <= CPU_TARGET_AIOHTTP and over_reqwest <= CPU_TARGET_REQWEST
        text += (
            f"\n{label}: CPU {over_aiohttp:.2f}× the aiohttp pass-through's, "
            f"{over_reqwest:.2f}× the pyreqwest one's "
            f"(targets ≤ {CPU_TARGET_AIOHTTP:g}× and ≤ {CPU_TARGET_REQWEST:g}×: "
            f"{'met' if met else 'not met'})"
        )
    basic, certified = cpu(BASIC), cpu(CERTIFICATE)
    if basic and certified:
        over = certified / basic - 1
        verdict = "met" if over <= CERTIFICATE_TARGET else "not met"
        text += (
            f"\n{CERTIFICATE}: CPU {over:+.0%} of Basic's "
            f"(target ≤ +{CERTIFICATE_TARGET:.0%}: {verdict})"
        )
    return "\n" + text if text else ""


def workers_verdict(rows: Sequence[Target], results: Mapping[int, Measurement]) -> str:
    """Two workers against one, Basic, same run; and what else took the cores meanwhile."""
    one = next((results[i] for i, t in enumerate(rows) if t.label == BASIC and i in results), None)
    two = next(
        (results[i] for i, t in enumerate(rows) if t.label == BASIC_WORKERS and i in results), None
    )
    if one is None or two is None or not one.rate:
        return ""
    ratio = two.rate / one.rate
    verdict = "met" if ratio >= WORKERS_TARGET else "not met"
    text = (
        f"\n\n2 workers ÷ 1 worker, Basic: {ratio:.2f}× the msgs/s "
        f"(target ≥ {WORKERS_TARGET}: {verdict})"
    )
    for label, found in (("1 worker", one), ("2 workers", two)):
        shares = [
            f"partnergate {_share(found.cpu_seconds, found.seconds)}",
            f"the receiver {_share(found.beside_cpu_seconds, found.seconds)}",
            f"wrk {_share(found.client_cpu_seconds, found.seconds)}",
        ]
        text += f"\n  {label}: cores busy with " + ", ".join(shares)
    return text


def _share(cpu: float | None, seconds: float) -> str:
    return "—" if cpu is None or not seconds else f"{cpu / seconds:.2f}"


def run(args: argparse.Namespace, work: Path, stack: ExitStack) -> tuple[str, bool]:
    """Start everything and measure every row ``args.rounds`` times: the report, and
    whether every row could be measured."""
    load_before = os.getloadavg()[0]
    receiver = start_own_server(stack, "receiver", [], work)
    target = ["--target", receiver.url + "/cxf/receiver_2"]
    passthrough = start_own_server(stack, "passthrough", target, work)
    reqwest_passthrough = start_own_server(
        stack, "passthrough", [*target, "--forwarder", "pyreqwest"], work, "passthrough-pyreqwest"
    )
    nginx = (
        None if args.no_nginx or not shutil.which("nginx") else start_nginx(stack, receiver, work)
    )
    print("setting up the seed scenario ...", flush=True)
    scenario = start_partnergate(stack, receiver, work, args.setting)
    port = free_port()
    handwritten = start_service(
        stack,
        "handwritten",
        [sys.executable, __file__, "handwritten", "--http", f"{LOOPBACK}:{port}", *target]
        + ["--log", str(work / "handwritten.db")],
        port=port,
        log_dir=work,
        env={**os.environ, HANDWRITTEN_AUTHORIZATION: scenario.basic},
    )
    rows = targets(
        scenario, receiver, passthrough, reqwest_passthrough, handwritten, nginx, args.client
    )
    problems = {i: why for i, t in enumerate(rows) if (why := check(t)) is not None}
    bounds = Bounds(args.connections, args.seconds, args.warmup, args.requests)
    runs: dict[int, list[Measurement]] = {}
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number} of {args.rounds}", flush=True)
        for i, target in enumerate(rows):
            if i in problems:
                continue
            result = measure(target, bounds, work)
            runs.setdefault(i, []).append(result)
            print(
                f"  {target.label:<36} {target.client:<8} {result.rate:9,.0f} msgs/s  "
                f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms",
                flush=True,
            )
    results = {i: median_run(found) for i, found in runs.items()}
    title = (
        f"{args.connections} kept-alive connections, {args.seconds:g} s per row, "
        + (f"medians of {args.rounds} rounds; " if args.rounds > 1 else "one round; ")
        + f"{os.cpu_count()} cores, load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after"
    )
    return title + "\n\n" + report(rows, results, problems), not problems


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Messages/s through the seed's sender flow against a pass-through proxy."
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per row")
    parser.add_argument("--connections", type=int, default=32, help="kept-alive connections")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all rows; medians")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per row")
    parser.add_argument("--requests", type=int, default=500_000, help="most messages per row")
    parser.add_argument(
        "--client",
        choices=(WRK, AIOHTTP),
        default=WRK if shutil.which("wrk") else AIOHTTP,
        help="load generator of the rows without a client certificate (default: wrk if found)",
    )
    parser.add_argument("--no-nginx", action="store_true", help="leave the nginx row out")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a partnergate setting over the benchmark's (default log_level=warning), e.g. "
        "--setting log_level=info --setting access_log=true; repeatable",
    )
    servers = parser.add_subparsers(dest="serve", metavar="{receiver,passthrough,handwritten}")
    receiver = servers.add_parser("receiver", help="serve the minimal receiver (internal)")
    receiver.add_argument("--http", required=True, metavar="HOST:PORT")
    passthrough = servers.add_parser("passthrough", help="serve the pass-through (internal)")
    passthrough.add_argument("--http", required=True, metavar="HOST:PORT")
    passthrough.add_argument("--target", required=True, metavar="URL")
    passthrough.add_argument(
        "--forwarder", choices=FORWARDERS, default="aiohttp", help="the HTTP client to forward with"
    )
    handwritten = servers.add_parser("handwritten", help="serve the hand-written flow (internal)")
    handwritten.add_argument("--http", required=True, metavar="HOST:PORT")
    handwritten.add_argument("--target", required=True, metavar="URL")
    handwritten.add_argument("--log", required=True, type=Path, help="its SQLite log, made anew")
    args = parser.parse_args(argv)
    if args.client == WRK and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk); or use --client aiohttp")
    if min(args.seconds, args.connections, args.requests, args.rounds) <= 0 or args.warmup < 0:
        parser.error("--seconds, --connections, --requests and --rounds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve == "receiver":
        serve(receiver_app(), args.http)
        return 0
    if args.serve == "passthrough":
        serve(passthrough_app(args.target, args.forwarder), args.http)
        return 0
    if args.serve == "handwritten":
        app = handwritten_app(args.target, os.environ[HANDWRITTEN_AUTHORIZATION], args.log)
        serve(app, args.http)
        return 0
    try:
        with interruptible(), ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pg-route-")))
            summary, complete = run(args, work, stack)
    except KeyboardInterrupt:
        print("interrupted: servers stopped, temporary files removed", file=sys.stderr)
        return 130
    print()
    print(summary)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())

"""The call step against real HTTP(S) receivers on free ports."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from partnergate.runtime import (
    ClientKeystore,
    Engine,
    MemoryMessageLog,
    PartnerDirectory,
    ReceiverPool,
)

from .conftest import DictDirectory, engine_for, exchange, flow_from, run_async, serve

CALL = """
endpoint: /http/call
steps:
  - name: call
    call:
      address: ${property.ADDRESS}
      credentials: pd:Receiver_1:USER:UserCredential
      headers: {X-Partner: "${property.PARTNER}"}
      timeout: 0.5
"""


def receiver(seen: list[web.Request] | None = None) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(request)
        body = await request.read()
        return web.Response(body=b"<Answer>" + body + b"</Answer>", content_type="text/xml")

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text="database down at 10.0.0.7")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/fail", fail)
    app.router.add_post("/slow", slow)
    return app


def message_to(address: str, body: str = "<Message/>"):
    message = exchange(
        body, user="user_for_sender_basic", **{"Content-Type": "application/xml", "X-Secret": "s"}
    )
    message.properties["ADDRESS"] = address
    message.properties["PARTNER"] = "Sender_BASIC"
    return message


@run_async
async def test_call_with_credentials_from_the_partner_directory(
    directory: PartnerDirectory, tmp_path: Path
) -> None:
    seen: list[web.Request] = []
    flow = flow_from(tmp_path, CALL)
    async with engine_for(directory) as (engine, log), serve(receiver(seen)) as base:
        message = message_to(f"{base}/ok")
        reply = await engine.process(flow, message)
    assert reply.status == 200, reply.body
    assert reply.body == b"<Answer><Message/></Answer>"
    assert reply.content_type == "text/xml"
    assert message.headers["CamelHttpResponseCode"] == "200"
    request = seen[0]
    assert request.headers["Authorization"] == "Basic dXNlcl9yZWNlaXZlcl8xOnNlY3JldCAx"
    assert request.headers["Content-Type"] == "application/xml"
    assert request.headers["X-Partner"] == "Sender_BASIC"
    assert "X-Secret" not in request.headers
    assert "SapAuthenticatedUserName" not in request.headers
    entry = log.get(message.message_id)
    assert entry is not None and entry.receiver_partner == "Receiver_1"


@run_async
async def test_receiver_failures(directory: PartnerDirectory, tmp_path: Path) -> None:
    flow = flow_from(tmp_path, CALL)
    async with engine_for(directory) as (engine, log), serve(receiver()) as base:
        failing = message_to(f"{base}/fail")
        reply = await engine.process(flow, failing)
        assert (reply.status, reply.body) == (
            502,
            b"step 1 'call' failed: the receiver answered 500 Internal Server Error\n",
        )
        entry = log.get(failing.message_id)
        assert entry is not None
        assert entry.error == f"POST {base}/fail answered 500: database down at 10.0.0.7"

        slow = message_to(f"{base}/slow")
        reply = await engine.process(flow, slow)
        assert (reply.status, reply.body) == (
            504,
            b"step 1 'call' failed: the receiver did not answer within 0.5 s\n",
        )

        reply = await engine.process(flow, message_to("http://127.0.0.1:1/closed"))
        assert reply.status == 502
        assert reply.body == (
            b"step 1 'call' failed: the receiver cannot be reached (Connection refused)\n"
        )

        reply = await engine.process(flow, message_to("ftp://example.org/x"))
        assert (reply.status, reply.body) == (
            500,
            b"step 1 'call' failed: the receiver cannot be called\n",
        )

        reply = await engine.process(flow, message_to(""))
        assert reply.status == 500 and b"the receiver address is empty" in reply.body


@run_async
async def test_missing_credentials_and_passed_error_status(
    reader: DictDirectory, directory: PartnerDirectory, tmp_path: Path
) -> None:
    del reader.credentials[("Receiver_1", "USER")]
    passing = flow_from(
        tmp_path,
        "endpoint: /http/p\nsteps:\n  - call:\n      address: ${property.ADDRESS}\n"
        "      on-error-status: pass\n",
    )
    async with engine_for(directory) as (engine, _), serve(receiver()) as base:
        reply = await engine.process(flow_from(tmp_path, CALL), message_to(f"{base}/ok"))
        assert (reply.status, reply.body) == (
            404,
            b"step 1 'call' failed: user credential Receiver_1/USER not found in the"
            b" Partner Directory\n",
        )
        reply = await engine.process(passing, message_to(f"{base}/fail"))
        assert (reply.status, reply.body) == (500, b"database down at 10.0.0.7")


@run_async
async def test_one_bounded_session_per_origin() -> None:
    pool = ReceiverPool(max_origins=2)
    async with serve(receiver()) as a, serve(receiver()) as b, serve(receiver()) as c:
        for _ in range(3):
            for base in (a, b):
                response = await pool.send(f"{base}/ok", body=b"x")
                assert response.status == 200
        assert len(pool) == 2
        sessions = [o.session for o in pool._origins.values()]
        await asyncio.gather(*(pool.send(f"{a}/ok?n={i}", body=b"y") for i in range(20)))
        assert [o.session for o in pool._origins.values()][-1] is sessions[0]
        await pool.send(f"{c}/ok", body=b"z")
        assert len(pool) == 2  # the least recently used origin (b) was closed
        await asyncio.sleep(0)
        assert sessions[1].closed and not sessions[0].closed
    await pool.aclose()
    assert len(pool) == 0 and sessions[0].closed


class Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""

    def __init__(self, folder: Path) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.folder = folder
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(1)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca = self._write("ca.pem", ca.public_bytes(serialization.Encoding.PEM))
        self.server = self._issue("server", ca, ca_key, now, server=True)
        self.client = self._issue("Sender_CERT", ca, ca_key, now, server=False)

    def _write(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        return str(path)

    def _issue(self, cn: str, ca, ca_key, now, *, server: bool) -> tuple[str, str]:  # type: ignore[no-untyped-def]
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return (
            self._write(f"{cn}.crt", cert.public_bytes(serialization.Encoding.PEM)),
            self._write(f"{cn}.key", key_pem),
        )


@run_async
async def test_client_certificate_from_a_configured_keystore(
    directory: PartnerDirectory, tmp_path: Path
) -> None:
    pki = Pki(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(*pki.server)
    server_context.load_verify_locations(pki.ca)
    server_context.verify_mode = ssl.CERT_REQUIRED

    async def who(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert")  # type: ignore[union-attr]
        subject = dict(item[0] for item in peer["subject"])
        return web.Response(text=f"<Hello>{subject['commonName']}</Hello>")

    app = web.Application()
    app.router.add_post("/who", who)
    pool = ReceiverPool(
        ca_file=pki.ca, keystores={"sender-cert": ClientKeystore(pki.client[0], pki.client[1])}
    )
    engine = Engine(directory, receivers=pool, message_log=MemoryMessageLog())
    with_cert = flow_from(
        tmp_path,
        "endpoint: /http/tls\nsteps:\n  - call:\n      address: ${property.ADDRESS}\n"
        "      client-certificate: sender-cert\n",
    )
    without_cert = flow_from(
        tmp_path, "endpoint: /http/tls\nsteps:\n  - call: ${property.ADDRESS}\n"
    )
    unknown = flow_from(
        tmp_path,
        "endpoint: /http/tls\nsteps:\n  - call:\n      address: ${property.ADDRESS}\n"
        "      client-certificate: nope\n",
    )
    try:
        async with serve(app, server_context) as base:
            reply = await engine.process(with_cert, message_to(f"{base}/who"))
            assert (reply.status, reply.body) == (200, b"<Hello>Sender_CERT</Hello>")
            reply = await engine.process(without_cert, message_to(f"{base}/who"))
            assert reply.status == 502
            reply = await engine.process(unknown, message_to(f"{base}/who"))
            assert reply.status == 500
        untrusted = ReceiverPool()  # the system CAs do not know the test CA
        async with serve(app, server_context) as base:
            engine.services.receivers = untrusted
            reply = await engine.process(with_cert, message_to(f"{base}/who"))
            assert reply.status == 500  # keystore unknown to this pool
            reply = await engine.process(without_cert, message_to(f"{base}/who"))
            assert (reply.status, reply.body) == (
                502,
                b"step 1 (call) failed: the receiver's TLS certificate is not trusted\n",
            )
            await untrusted.aclose()
    finally:
        await pool.aclose()
        await engine.aclose()

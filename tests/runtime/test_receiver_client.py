"""What the receiver client promises the ``call`` step, against real receivers on free ports:
bounded pools, timeouts, client identities, CA bundles, no redirects, no proxies, exact
bytes, large and chunked bodies, the failures as 502 and 504, and a clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import gzip
import os
import socket
import ssl
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import HttpVersion11, web
from cryptography.hazmat.primitives import serialization

from partnergate.runtime import ClientKeystore, PartnerDirectory, ReceiverPool
from partnergate.runtime.receivers import ReceiverError, ReceiverTimeout

from .conftest import engine_for, flow_from, run_async, serve
from .test_call import Pki, message_to

EVERY_BYTE = bytes(range(256)) * 4


def app(seen: list[web.Request] | None = None) -> web.Application:
    """A receiver with one route per behaviour the client must handle."""
    active = [0, 0]  # in flight now, most at once

    async def echo(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(request)
        body = await request.read()
        return web.Response(body=body, content_type="application/octet-stream")

    async def gate(request: web.Request) -> web.Response:
        """Hold each request until ``together`` are in, then a little longer: any request
        beyond the client's bound would arrive meanwhile."""
        active[0] += 1
        active[1] = max(active)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while active[0] < int(request.query["together"]) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        active[0] -= 1
        return web.Response(text=str(active[1]))

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/echo"}, text="moved")

    async def chunked(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, size, 100_000):
            await response.write(b"c" * min(100_000, size - start))
        await response.write_eof()
        return response

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"s" * int(request.query["size"]))

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(20):
            await response.write(b".")
            await asyncio.sleep(0.3)
        await response.write_eof()
        return response

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"abc")
        assert request.transport is not None
        request.transport.close()
        return response

    async def hang_up(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.5)
        return web.Response()

    async def garbage(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.write(b"NOT HTTP AT ALL\r\n\r\n")
        request.transport.close()
        await asyncio.sleep(0.5)
        return web.Response()

    async def own_words(request: web.Request) -> web.Response:
        return web.Response(status=int(request.query["status"]), reason="db down at 10.0.0.7")

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(b"<Packed/>"),
            headers={"Content-Encoding": "gzip", "Content-Type": "text/xml"},
        )

    async def odd_header(request: web.Request) -> web.Response:
        return web.Response(text="<Odd/>", content_type="text/xml", headers={"X-Name": "Zoë"})

    async def who(request: web.Request) -> web.Response:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peercert")
        name = dict(item[0] for item in peer["subject"])["commonName"] if peer else "nobody"
        return web.Response(text=name)

    application = web.Application(client_max_size=64 * 1024 * 1024)
    for path, handler in {
        "/echo": echo,
        "/gate": gate,
        "/redirect": redirect,
        "/chunked": chunked,
        "/sized": sized,
        "/trickle": trickle,
        "/cut": cut,
        "/hang-up": hang_up,
        "/garbage": garbage,
        "/gzipped": gzipped,
        "/own-words": own_words,
        "/odd-header": odd_header,
        "/who": who,
    }.items():
        application.router.add_route("*", path, handler)
    return application


def server_tls(pki: Pki, *, require_client: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*pki.server)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_NONE
    return context


@run_async
async def test_bytes_and_headers_go_out_and_come_back_exactly() -> None:
    seen: list[web.Request] = []
    pool = ReceiverPool()
    try:
        async with serve(app(seen)) as base:
            response = await pool.send(
                f"{base}/echo?q=a%20b",
                body=EVERY_BYTE,
                headers={"Content-Type": "application/x-any", "X-Partner": "Zoë & Søren"},
                auth=("user", "pässword"),
            )
            assert response.status == 200 and response.reason == "OK"
            assert response.body == EVERY_BYTE
            assert response.headers["content-type"] == "application/octet-stream"
            request = seen[0]
            assert request.version == HttpVersion11
            assert request.method == "POST" and request.raw_path == "/echo?q=a%20b"
            raw = dict(request.raw_headers)
            assert raw[b"Content-Type"] == b"application/x-any"
            assert raw[b"X-Partner"] == "Zoë & Søren".encode()
            assert raw[b"Authorization"] == b"Basic dXNlcjpww6Rzc3dvcmQ="
            assert raw[b"User-Agent"] == b"partnergate"
            assert b"Cookie" not in raw and b"Referer" not in raw

            response = await pool.send(f"{base}/odd-header")
            assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
            assert response.body == b"<Odd/>"  # a header that is not ASCII does not fail it

            response = await pool.send(f"{base}/gzipped")
            assert response.body == b"<Packed/>"  # unpacked, as before

            with pytest.raises(ValueError):  # a header cannot smuggle another one
                await pool.send(f"{base}/echo", headers={"X-Partner": "a\r\nX-Admin: yes"})
            with pytest.raises(ValueError):
                await pool.send(f"{base}/echo", auth=("us:er", "secret"))
            assert len(seen) == 1
    finally:
        await pool.aclose()


@run_async
async def test_large_and_chunked_bodies_and_the_answer_limit() -> None:
    limit = 4 * 1024 * 1024
    pool = ReceiverPool(max_response_bytes=limit)
    big = os.urandom(6 * 1024 * 1024)
    try:
        async with serve(app()) as base:
            with pytest.raises(ReceiverError, match="larger than 4194304 bytes"):
                await pool.send(f"{base}/echo", body=big)
            exact = await pool.send(f"{base}/sized?size={limit}")
            assert exact.body == b"s" * limit
            streamed = await pool.send(f"{base}/chunked?size={3 * 1024 * 1024 + 7}")
            assert streamed.body == b"c" * (3 * 1024 * 1024 + 7)
            for path in (f"/sized?size={limit + 1}", f"/chunked?size={limit + 1}"):
                with pytest.raises(ReceiverError, match="larger than 4194304 bytes"):
                    await pool.send(base + path)
    finally:
        await pool.aclose()


@run_async
async def test_a_large_request_body_arrives_whole() -> None:
    seen: list[web.Request] = []
    pool = ReceiverPool()
    big = os.urandom(20 * 1024 * 1024)
    try:
        async with serve(app(seen)) as base:
            response = await pool.send(f"{base}/echo", body=big)
            assert response.status == 200 and response.body == big
    finally:
        await pool.aclose()


@run_async
async def test_in_flight_requests_are_bounded_per_origin() -> None:
    pool = ReceiverPool(connections_per_origin=3)
    try:
        async with serve(app()) as base:
            calls = (pool.send(f"{base}/gate?together=3") for _ in range(9))
            answers = await asyncio.gather(*calls)
        assert {a.status for a in answers} == {200}
        assert max(int(a.body) for a in answers) == 3
    finally:
        await pool.aclose()


@run_async
async def test_redirects_are_the_receivers_answer(
    directory: PartnerDirectory, tmp_path: Path
) -> None:
    seen: list[web.Request] = []
    passing = flow_from(
        tmp_path,
        "endpoint: /http/p\nsteps:\n  - call:\n      address: ${property.ADDRESS}\n"
        "      on-error-status: pass\n",
    )
    failing = flow_from(tmp_path, "endpoint: /http/f\nsteps:\n  - call: ${property.ADDRESS}\n")
    async with engine_for(directory) as (engine, _), serve(app(seen)) as base:
        response = await engine.services.receivers.send(f"{base}/redirect")
        assert (response.status, response.headers["Location"]) == (302, "/echo")
        reply = await engine.process(passing, message_to(f"{base}/redirect"))
        assert (reply.status, reply.body) == (302, b"moved")
        reply = await engine.process(failing, message_to(f"{base}/redirect"))
        assert (reply.status, reply.body) == (
            502,
            b"step 1 (call) failed: the receiver answered 302 Found\n",
        )
    assert seen == []  # /echo, where the redirect points, was never called


@run_async
async def test_proxies_from_the_environment_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    proxied: list[web.Request] = []
    async with serve(app(proxied)) as proxy, serve(app()) as base:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"{proxy}/echo")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        pool = ReceiverPool()
        try:
            response = await pool.send(f"{base}/echo", body=b"direct")
        finally:
            await pool.aclose()
    assert response.body == b"direct"
    assert proxied == []


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops further SYNs, so a connect
    neither succeeds nor fails until the client gives up."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@run_async
async def test_timeouts_are_504(directory: PartnerDirectory, tmp_path: Path) -> None:
    connecting = flow_from(
        tmp_path,
        "endpoint: /http/c\nsteps:\n  - call:\n      address: ${property.ADDRESS}\n"
        "      timeout: 60\n      connect-timeout: 0.5\n",
    )
    reading = flow_from(
        tmp_path,
        "endpoint: /http/r\nsteps:\n  - call:\n      address: ${property.ADDRESS}\n"
        "      timeout: 1\n",
    )
    async with engine_for(directory) as (engine, log), serve(app()) as base:
        with silent_listener() as port:
            message = message_to(f"http://127.0.0.1:{port}/x")
            reply = await asyncio.wait_for(engine.process(connecting, message), 30)
            assert (reply.status, reply.body) == (
                504,
                b"step 1 (call) failed: the receiver did not answer within 60 s\n",
            )
        reply = await asyncio.wait_for(engine.process(reading, message_to(f"{base}/trickle")), 30)
        assert (reply.status, reply.body) == (
            504,
            b"step 1 (call) failed: the receiver did not answer within 1 s\n",
        )
        with pytest.raises(ReceiverTimeout):
            await engine.services.receivers.send(f"{base}/trickle", timeout=0.5)


@run_async
async def test_failures_are_502_with_the_reason(
    directory: PartnerDirectory, tmp_path: Path
) -> None:
    flow = flow_from(tmp_path, "endpoint: /http/f\nsteps:\n  - call: ${property.ADDRESS}\n")
    pki = Pki(tmp_path)
    async with (
        engine_for(directory) as (engine, log),
        serve(app()) as base,
        serve(app(), server_tls(pki, require_client=False)) as tls_base,
    ):
        port = base.rsplit(":", 1)[1]
        cases = {
            "http://127.0.0.1:1/x": "the receiver cannot be reached (Connection refused)",
            f"{base}/cut": "the receiver's answer was cut off",
            f"{base}/hang-up": "the receiver closed the connection without answering",
            f"{base}/garbage": "the receiver's answer is not HTTP",
            f"https://127.0.0.1:{port}/echo": "the TLS handshake with the receiver failed",
            f"{tls_base}/echo": "the receiver's TLS certificate is not trusted",
            f"https://localhost:{tls_base.rsplit(':', 1)[1]}/echo": (
                "the receiver's TLS certificate is not trusted"
            ),
            "http://no-such-host.invalid/x": (
                "the receiver cannot be reached (its name does not resolve)"
            ),
        }
        for status, phrase in ((503, " Service Unavailable"), (599, "")):
            # the standard reason phrase: the receiver's own words stay out of the answer
            reply = await engine.process(flow, message_to(f"{base}/own-words?status={status}"))
            assert (reply.status, reply.body) == (
                502,
                f"step 1 (call) failed: the receiver answered {status}{phrase}\n".encode(),
            )
        for address, reason in cases.items():
            message = message_to(address)
            reply = await engine.process(flow, message)
            assert (reply.status, reply.body) == (
                502,
                f"step 1 (call) failed: {reason}\n".encode(),
            ), address
            entry = log.get(message.message_id)
            assert entry is not None and entry.error == f"POST {address}: {reason}"


@run_async
async def test_client_identities_and_ca_bundles(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    (tmp_path / "other").mkdir()
    other = Pki(tmp_path / "other")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(Path(other.ca).read_bytes() + Path(pki.ca).read_bytes())
    cert, key = pki.client
    combined = tmp_path / "combined.pem"
    combined.write_bytes(Path(cert).read_bytes() + Path(key).read_bytes())
    private = serialization.load_pem_private_key(Path(key).read_bytes(), None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"k3y pass"),
        )
    )
    pool = ReceiverPool(
        ca_file=str(bundle),
        keystores={
            "separate": ClientKeystore(cert, key),
            "one-file": ClientKeystore(str(combined)),
            "encrypted": ClientKeystore(cert, str(locked), "k3y pass"),
            "wrong-password": ClientKeystore(cert, str(locked), "nope"),
            "missing": ClientKeystore(str(tmp_path / "absent.pem")),
        },
    )
    try:
        async with serve(app(), server_tls(pki, require_client=True)) as base:
            for name in ("separate", "one-file", "encrypted"):
                response = await pool.send(f"{base}/who", keystore=name)
                assert (response.status, response.body) == (200, b"Sender_CERT"), name
            assert len(pool) == 3  # one client per origin and client certificate
            # The receiver wants a certificate. TLS 1.3 refuses it after the handshake:
            # the refusal (an alert, or a reset) may reach the client before or after
            # the request went out.
            refused = "TLS handshake|closed the connection without answering"
            with pytest.raises(ReceiverError, match=refused):
                await pool.send(f"{base}/who")
            for name in ("wrong-password", "missing"):
                with pytest.raises(ValueError, match=f"client keystore '{name}' cannot be read"):
                    await pool.send(f"{base}/who", keystore=name)
            with pytest.raises(ValueError, match="no client keystore named 'nope'"):
                await pool.send(f"{base}/who", keystore="nope")
        async with serve(app(), server_tls(other, require_client=False)) as base:
            response = await pool.send(f"{base}/who")  # the bundle's other CA
            assert (response.status, response.body) == (200, b"nobody")
    finally:
        await pool.aclose()


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


@run_async
async def test_closing_releases_every_client() -> None:
    async def cycle() -> int:
        pool = ReceiverPool(max_origins=4)
        servers = [serve(app()) for _ in range(6)]
        bases = [await s.__aenter__() for s in servers]
        try:
            await asyncio.gather(*(pool.send(f"{b}/echo", body=b"x") for b in bases))
            assert len(pool) == 4
            sessions = [o.session for o in pool._origins.values()]
        finally:
            await pool.aclose()
            for s in servers:
                await s.__aexit__(None, None, None)
        assert len(pool) == 0 and all(s.closed for s in sessions)
        return threads()

    gc.collect()  # what earlier tests left is not this test's to answer for
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        after_first = await cycle()
        after_more = [await cycle() for _ in range(3)]
        gc.collect()
    assert after_more == [after_first] * 3  # no thread per client or per pool is left
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []

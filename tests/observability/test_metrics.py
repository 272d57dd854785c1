"""Each metric of ``/metrics`` moves when its event happens: real messages, real refusals,
real TLS handshakes that fail, a real store that makes the message log wait."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
from cryptography import x509

from partnergate.security import pki

from ..conftest import STORE, Api
from ..tls.conftest import client_context, refused
from ..ui.conftest import sign_in
from .conftest import SEND, Metrics, Observed

SENDER_FLOW = "Partner Directory sender"


def wait_for(observed: Observed, check, seconds: float = 10.0) -> Metrics:  # type: ignore[no-untyped-def]
    """Scrapes until ``check(metrics)`` holds; the last scrape either way."""
    deadline = time.monotonic() + seconds
    while True:
        scraped = observed.metrics()
        if check(scraped) or time.monotonic() > deadline:
            return scraped
        time.sleep(0.1)


def test_metrics_need_the_monitoring_or_admin_role(observed: Observed) -> None:
    url = observed.server.url + "/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, auth=(observed.monitor[0], "wrong")).status_code == 401
    assert httpx.get(url, auth=observed.basic).status_code == 403  # a sender, no role
    assert httpx.get(url, auth=observed.server.admin).status_code == 200
    assert httpx.get(url, auth=observed.monitor).status_code == 200


def test_a_listener_of_its_own_for_the_scraper(observed: Observed) -> None:
    """``metrics_http``: the scraper reads ``/metrics`` there without credentials, and
    that port opens nothing else to anyone."""
    scraper = observed.scraper_url
    r = httpx.get(scraper + "/metrics", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert Metrics(r.text).labels("partnergate_open_connections")
    assert httpx.get(scraper + "/ready", timeout=10).json() == {"status": "ready"}
    assert httpx.get(scraper + "/health", timeout=10).status_code == 200
    admin = observed.server.admin
    for path in ("/api/v1/Partners", "/api/v1/$metadata", "/ui/", "/whoami", "/metrics/"):
        assert httpx.get(scraper + path, auth=admin, timeout=10).status_code == 404, path
    message = httpx.post(
        scraper + SEND,
        content=b"<Message><Receiver>Receiver_1</Receiver></Message>",
        headers={"Content-Type": "text/xml"},
        auth=observed.basic,
        timeout=10,
    )
    assert message.status_code == 404
    # the other listeners still ask for the role
    assert httpx.get(observed.server.url + "/metrics", timeout=10).status_code == 401


def test_messages_by_flow_and_status(observed: Observed) -> None:
    before = observed.metrics()
    assert observed.send("Receiver_1").status_code == 200
    assert observed.send("Receiver_9").status_code >= 400  # no ADDRESS for Receiver_9
    after = observed.metrics()
    name = "partnergate_messages_total"
    flows = {labels["flow"] for labels in after.labels(name)}
    assert SENDER_FLOW in flows, flows
    for status in ("COMPLETED", "FAILED"):
        moved = after.value(name, flow=SENDER_FLOW, status=status) - before.value(
            name, flow=SENDER_FLOW, status=status
        )
        assert moved == 1, status


def test_step_and_receiver_call_latency(observed: Observed) -> None:
    steps = "partnergate_step_duration_seconds_count"
    calls = "partnergate_receiver_call_duration_seconds_count"
    before = observed.metrics()
    assert observed.send("Receiver_1").status_code == 200
    after = observed.metrics()
    labels = [s["step"] for s in after.labels(steps) if s["flow"] == SENDER_FLOW]
    call_step = next(step for step in labels if "call the receiver" in step)
    assert after.value(steps, flow=SENDER_FLOW, step=call_step) == 1 + before.value(
        steps, flow=SENDER_FLOW, step=call_step
    )
    assert after.value(calls, outcome="2xx") == before.value(calls, outcome="2xx") + 1
    buckets = [
        s
        for s in after.samples
        if s.name == "partnergate_receiver_call_duration_seconds_bucket"
        and s.labels["outcome"] == "2xx"
    ]
    assert buckets and buckets[-1].labels["le"] == "+Inf"


def test_a_receiver_that_cannot_be_reached(observed: Observed) -> None:
    calls = "partnergate_receiver_call_duration_seconds_count"
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
    try:
        with Api(observed.server) as api:
            body = {"Pid": "Receiver_2", "Id": "ADDRESS"}
            body["Value"] = f"http://127.0.0.1:{closed.getsockname()[1]}/nowhere"
            api.delete("StringParameters(Pid='Receiver_2',Id='ADDRESS')")
            assert api.post("StringParameters", json=body).status_code == 201
            user = {"Pid": "Receiver_2", "Id": "USER", "User": "nobody", "Password": "x-pw-1"}
            api.post("UserCredentialParameters", json=user)
        before = observed.metrics()
        assert observed.send("Receiver_2").status_code == 502
        after = observed.metrics()
    finally:
        closed.close()
    assert after.value(calls, outcome="error") == before.value(calls, outcome="error") + 1


def test_authentication_refusals_by_reason(observed: Observed) -> None:
    name = "partnergate_auth_refusals_total"
    before = observed.metrics()
    assert observed.send("Receiver_1", auth=(observed.basic[0], "not-it")).status_code == 401
    assert observed.send("Receiver_1", auth=("nobody_here", "not-it")).status_code == 401
    assert httpx.get(observed.server.api + "/Partners").status_code == 401
    assert httpx.get(observed.server.api + "/Partners", auth=observed.basic).status_code == 403
    no_token = httpx.post(
        observed.server.api + "/Partners",
        json={"Pid": "Never_created"},
        headers={"Accept": "application/json"},
        auth=observed.server.admin,
    )
    assert no_token.status_code == 403 and no_token.headers["x-csrf-token"] == "Required"
    after = observed.metrics()

    def moved(**labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved(face="sender", reason="wrong_secret") == 1
    assert moved(face="sender", reason="unknown_account") == 1
    assert moved(face="api", reason="no_credentials") == 1
    assert moved(face="api", reason="role") == 1
    assert moved(face="api", reason="csrf") == 1
    # and a UI form, or the sign-in form, sent with a token that is not its session's
    before = observed.metrics()
    with sign_in(observed.server, *observed.server.admin) as ui:
        form = {"csrf": "not-the-token", "kind": "string-parameters", "Pid": "P_csrf"}
        assert ui.post("/ui/new-partner", data=form).status_code == 403
    with httpx.Client(base_url=observed.server.url, timeout=30) as stranger:
        stranger.get("/ui/signin")
        data = {"name": "x", "password": "y", "csrf": "not-the-token", "next": ""}
        assert stranger.post("/ui/signin", data=data).status_code == 403
    after = observed.metrics()
    assert moved(face="ui", reason="csrf") == 1
    assert moved(face="sign_in", reason="csrf") == 1
    # the reason words of the log never become label values: no user names
    assert all(observed.basic[0] not in str(labels) for labels in after.labels(name))


def test_directory_cache_hits_and_misses(observed: Observed) -> None:
    hits, misses = (
        "partnergate_directory_cache_hits_total",
        "partnergate_directory_cache_misses_total",
    )
    with Api(observed.server) as api:  # a write forgets the cached ADDRESS
        key = "StringParameters(Pid='Receiver_1',Id='ADDRESS')"
        value = {"Value": f"{observed.server.url}/cxf/receiver_1"}
        assert api.put(key, json=value).status_code == 204
    before = observed.metrics()
    assert observed.send("Receiver_1").status_code == 200
    middle = observed.metrics()
    assert middle.value(misses) > before.value(misses)
    assert observed.send("Receiver_1").status_code == 200
    after = observed.metrics()
    assert after.value(hits) > middle.value(hits)
    assert after.value(misses) == middle.value(misses)


def test_api_requests_by_entity_set_method_and_status(observed: Observed) -> None:
    name = "partnergate_api_requests_total"
    before = observed.metrics()
    with Api(observed.server) as api:
        assert api.get("StringParameters", params={"$top": "1"}).status_code == 200
        assert api.get("Nonsense").status_code == 404
        assert api.delete("Partners('Nobody_here_at_all')").status_code == 404
    after = observed.metrics()

    def moved(**labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved(entity_set="StringParameters", method="GET", status="200") == 1
    assert moved(entity_set="(other)", method="GET", status="404") == 1
    assert moved(entity_set="Partners", method="DELETE", status="404") == 1


def test_message_log_queue_depth_and_write_latency(observed: Observed, store_url: str) -> None:
    """Another connection holds the message log's table: entries wait in the queue, and the
    write that waited shows in the latency."""
    writes = "partnergate_message_log_write_duration_seconds_count"
    slow = 'partnergate_message_log_write_duration_seconds_bucket{le="0.5"}'
    depth = "partnergate_message_log_queue_depth"
    before = observed.metrics()
    with hold_message_log(store_url):
        for _ in range(3):
            assert observed.send("Receiver_1").status_code == 200  # never waits for the log
        during = wait_for(observed, lambda m: m.value(depth) >= 1)
        assert during.value(depth) >= 1
    after = wait_for(observed, lambda m: m.value(depth) == 0 and m.value(writes) > 0)
    assert after.value(depth) == 0
    assert after.value(writes) > before.value(writes)
    assert (
        after.value("partnergate_message_log_entries_written_total")
        >= before.value("partnergate_message_log_entries_written_total") + 6
    )  # 3 sender messages, 3 receiver messages
    # the write that waited for the lock took longer than half a second
    slow_before = _bucket(before, 0.5)
    assert after.value(writes) - _bucket(after, 0.5) > before.value(writes) - slow_before, slow


def _bucket(scraped: Metrics, le: float) -> float:
    return sum(
        s.value
        for s in scraped.samples
        if s.name == "partnergate_message_log_write_duration_seconds_bucket"
        and float(s.labels["le"]) == le
    )


class hold_message_log:  # noqa: N801 - a context manager used like a function
    """Holds a write lock on the message log table from outside the server for a second."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url

    def __enter__(self) -> None:
        if STORE == "sqlite":
            import sqlite3

            path = self.store_url.removeprefix("sqlite:///")
            self.conn = sqlite3.connect(path, isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
            self.since = time.monotonic()
        else:
            import asyncpg

            self.loop = asyncio.new_event_loop()

            async def lock() -> asyncpg.Connection:
                conn = await asyncpg.connect(self.store_url)
                await conn.execute("BEGIN")
                await conn.execute("LOCK TABLE message_processing_logs IN EXCLUSIVE MODE")
                return conn

            self.pg = self.loop.run_until_complete(lock())
            self.since = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        time.sleep(max(0.0, 1.0 - (time.monotonic() - self.since)))
        if STORE == "sqlite":
            self.conn.execute("ROLLBACK")
            self.conn.close()
        else:

            async def release() -> None:
                await self.pg.execute("ROLLBACK")
                await self.pg.close()

            self.loop.run_until_complete(release())
            self.loop.close()


def test_open_connections_per_listener(observed: Observed) -> None:
    name = "partnergate_open_connections"
    listener = observed.server.url
    before = observed.metrics().value(name, listener=listener)
    held = [
        socket.create_connection(("127.0.0.1", int(listener.rsplit(":", 1)[1]))) for _ in range(3)
    ]
    try:
        during = wait_for(observed, lambda m: m.value(name, listener=listener) >= before + 3)
        assert during.value(name, listener=listener) >= before + 3
    finally:
        for sock in held:
            sock.close()
    after = wait_for(observed, lambda m: m.value(name, listener=listener) <= before)
    assert after.value(name, listener=listener) <= before
    https = f"https://127.0.0.1:{observed.https_port}"
    assert any(labels["listener"] == https for labels in after.labels(name))


def test_tls_handshake_failures_by_reason(observed: Observed, made: SimpleNamespace) -> None:
    name = "partnergate_tls_handshake_failures_total"
    https = f"https://127.0.0.1:{observed.https_port}"
    before = observed.metrics()
    # plain HTTP to the TLS port
    with socket.create_connection(("127.0.0.1", observed.https_port), timeout=5) as raw:
        raw.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.recv(100)
    # a client certificate from a CA nobody trusts
    context = client_context(made, made.untrusted)
    assert refused(observed.https_port, context)
    # a client that never starts its handshake (header_timeout is 2 s here)
    with socket.create_connection(("127.0.0.1", observed.https_port), timeout=5) as raw:
        raw.settimeout(5)
        assert raw.recv(100) == b""  # closed by the server
    after = wait_for(
        observed, lambda m: m.value(name, reason="timeout") > before.value(name, reason="timeout")
    )

    def moved(reason: str) -> float:
        return after.value(name, listener=https, reason=reason) - before.value(
            name, listener=https, reason=reason
        )

    assert moved("http_request") == 1
    assert moved("certificate_verify_failed") == 1
    assert moved("timeout") == 1
    # a good handshake counts nothing
    ok = client_context(made, made.good)
    with socket.create_connection(("127.0.0.1", observed.https_port), timeout=5) as raw:
        with ok.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 200")
    assert observed.metrics().value(name) == after.value(name)


def test_certificate_expiry_of_mapped_and_own_certificates(
    observed: Observed, made: SimpleNamespace
) -> None:
    name = "partnergate_certificate_expiry_days"
    now = datetime.now(UTC)
    own = x509.load_pem_x509_certificate(made.server.cert_path.read_bytes())
    scraped = observed.metrics()
    server_days = scraped.value(name, kind="server", id=own.subject.rfc4514_string())
    expected = (own.not_valid_after_utc - now).total_seconds() / 86400
    assert abs(server_days - expected) < 0.1
    user = "obs_cert_user"
    with Api(observed.server) as api:
        body = pki.mapping_body(made.via_intermediate.certificate, user)
        assert api.post("CertificateUserMappings", json=body).status_code == 201
        mapped = observed.metrics()
        found = [s for s in mapped.samples if s.name == name and s.labels["user"] == user]
        assert len(found) == 1 and found[0].labels["kind"] == "mapped"
        cert = made.via_intermediate.certificate
        expected = (cert.not_valid_after_utc - datetime.now(UTC)).total_seconds() / 86400
        assert abs(found[0].value - expected) < 0.1
        mapping_id = found[0].labels["id"]
        assert api.delete(f"CertificateUserMappings('{mapping_id}')").status_code == 204
    gone = observed.metrics()
    assert not [s for s in gone.samples if s.name == name and s.labels["user"] == user]


def test_the_scraper_s_listener_refuses_what_a_hostile_client_sends(observed: Observed) -> None:
    """The scraper's port has the other listeners' limits, and no spelling of a path, no
    header and no body reaches more than ``/metrics`` and the probes."""
    scraper = observed.scraper_url
    with httpx.Client(base_url=scraper, timeout=10) as client:
        huge = client.get("/metrics", headers={"X-Filler": "a" * 70_000})
        assert huge.status_code == 431
        for path in ("/metrics/../api/v1/Partners", "/%2e%2e/api/v1/Partners", "//metrics"):
            assert client.get(path).status_code == 404, path
        forged = {
            "X-Forwarded-For": "10.0.0.1",
            "X-SSL-Client-Cert": "-----BEGIN CERTIFICATE-----",
            "Authorization": "Basic " + "A" * 5000,
        }
        assert client.get("/api/v1/Partners", headers=forged).status_code == 404
        doctype = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
        posted = client.post("/metrics", content=doctype, headers={"Content-Type": "text/xml"})
        assert posted.status_code == 405
        malformed = client.get("/metrics", headers={"Authorization": "Bearer \x01"})
        assert malformed.status_code == 400  # a control byte in a header: refused

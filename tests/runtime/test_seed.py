"""The seed scenario end to end: the example flows, a real receiver host, the log."""

from __future__ import annotations

from pathlib import Path

from aiohttp import BasicAuth, web

from partnergate.runtime import Engine, Exchange, FlowSet, PartnerDirectory, load_flows

from .conftest import EXAMPLES, DictDirectory, engine_for, run_async, serve

RECEIVER_USERS = {
    "user_receiver_1": ("secret 1", {"receiver_1.send"}),
    "user_receiver_2": ("secret 2", {"receiver_2.send"}),
}


def receiver_host(engine: Engine, flows: FlowSet) -> web.Application:
    """What the web layer will do, reduced: Basic auth, role check, flow, reply."""

    async def handle(request: web.Request) -> web.Response:
        flow = flows.find(request.path)
        if flow is None:
            return web.Response(status=404)
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            return web.Response(status=401)
        password, roles = RECEIVER_USERS.get(auth.login, ("", set()))
        if auth.password != password:
            return web.Response(status=401)
        if flow.role not in roles:
            return web.Response(status=403)
        exchange = Exchange.inbound(await request.read(), request.headers, user=auth.login)
        reply = await engine.process(flow, exchange)
        return web.Response(
            status=reply.status,
            body=reply.body,
            headers={"Content-Type": reply.content_type or "application/octet-stream"},
        )

    app = web.Application()
    app.router.add_post("/cxf/{name}", handle)
    return app


def point_receivers_at(reader: DictDirectory, base: str) -> None:
    for n in (1, 2):
        reader.strings[(f"Receiver_{n}", "ADDRESS")] = f"{base}/cxf/receiver_{n}"


def test_examples_load() -> None:
    flows = load_flows(EXAMPLES)
    assert flows.errors == []
    assert sorted(flows.flows) == [
        "/cxf/receiver_1",
        "/cxf/receiver_2",
        "/http/partner_directory",
    ]
    assert flows.find("/cxf/receiver_2").role == "receiver_2.send"  # type: ignore[union-attr]
    assert flows.find("/http/partner_directory").role == "ESBMessaging.send"  # type: ignore[union-attr]


@run_async
async def test_three_senders_two_receivers(
    reader: DictDirectory, directory: PartnerDirectory
) -> None:
    flows = load_flows(EXAMPLES)
    sender = flows.find("/http/partner_directory")
    assert sender is not None
    async with engine_for(directory) as (engine, log), serve(receiver_host(engine, flows)) as base:
        point_receivers_at(reader, base)
        for user, pid in [
            ("user_for_sender_basic", "Sender_BASIC"),
            ("oauth_client_client_sender_oauth", "Sender_OAUTH"),
            ("USER_FOR_SENDER_CERT", "Sender_CERT"),
        ]:
            for n in (1, 2):
                message = f"<Message><Receiver>Receiver_{n}</Receiver></Message>"
                exchange = Exchange.inbound(message.encode(), {}, user=user)
                reply = await engine.process(sender, exchange)
                assert reply.status == 200, reply.body
                assert reply.body == f"<Content>Receiver_{n} greets {pid}</Content>".encode()
                assert reply.content_type == "application/xml"
                entry = log.get(exchange.message_id)
                assert entry is not None
                assert entry.status == "COMPLETED"
                assert (entry.sender_partner, entry.receiver_partner) == (pid, f"Receiver_{n}")
                assert entry.user == user
                assert entry.flow == "Partner Directory sender"
                assert entry.start <= entry.end  # type: ignore[operator]
    receiver_entries = [e for e in log.entries if e.flow.startswith("Receiver")]
    assert len(receiver_entries) == 6
    assert {e.user for e in receiver_entries} == {"user_receiver_1", "user_receiver_2"}


@run_async
async def test_sender_claiming_another_partner_is_refused(
    reader: DictDirectory, directory: PartnerDirectory
) -> None:
    flows = load_flows(EXAMPLES)
    sender = flows.find("/http/partner_directory")
    assert sender is not None
    async with engine_for(directory) as (engine, log):
        message = b"<Message><Sender>Sender_BASIC</Sender><Receiver>Receiver_2</Receiver></Message>"
        exchange = Exchange.inbound(message, {}, user="user_for_sender_cert")
        reply = await engine.process(sender, exchange)
    assert reply.status == 403
    assert reply.content_type == "text/plain; charset=utf-8"
    assert reply.body.decode() == (
        "step 2 'identify the sender' failed: the message names sender Sender_BASIC, "
        "but user user_for_sender_cert sends for partner Sender_CERT\n"
    )
    entry = log.get(exchange.message_id)
    assert entry is not None and entry.status == "FAILED"
    assert entry.failed_step == "step 2 'identify the sender'"
    assert entry.http_status == 403


@run_async
async def test_unknown_user_and_unknown_receiver(directory: PartnerDirectory) -> None:
    sender = load_flows(EXAMPLES).find("/http/partner_directory")
    assert sender is not None
    async with engine_for(directory) as (engine, _):
        stranger = Exchange.inbound(
            b"<Message><Receiver>Receiver_2</Receiver></Message>", {}, user="someone"
        )
        reply = await engine.process(sender, stranger)
        assert reply.status == 403
        assert b"user someone is not an authorized user of any partner" in reply.body

        nowhere = Exchange.inbound(
            b"<Message><Receiver>Receiver_9</Receiver></Message>", {}, user="user_for_sender_basic"
        )
        reply = await engine.process(sender, nowhere)
        assert reply.status == 404
        assert reply.body == (
            b"step 3 'look up the receiver' failed: string parameter Receiver_9/ADDRESS"
            b" not found in the Partner Directory\n"
        )

        unreadable = Exchange.inbound(b"<Message>", {}, user="user_for_sender_basic")
        reply = await engine.process(sender, unreadable)
        assert reply.status == 400
        assert reply.body.startswith(
            b"step 1 'read the message' failed: the message is not well-formed XML"
        )


@run_async
async def test_changed_address_is_used_by_the_next_message(
    reader: DictDirectory, directory: PartnerDirectory, tmp_path: Path
) -> None:
    """SAP's cache forgets "within a few minutes"; ours before the write answers."""
    flows = load_flows(EXAMPLES)
    sender = flows.find("/http/partner_directory")
    assert sender is not None

    async def other(request: web.Request) -> web.Response:
        return web.Response(body=b"<Content>the new Receiver_2</Content>")

    replacement = web.Application()
    replacement.router.add_post("/new", other)
    message = b"<Message><Receiver>Receiver_2</Receiver></Message>"
    async with (
        engine_for(directory) as (engine, _),
        serve(receiver_host(engine, flows)) as base,
        serve(replacement) as new_base,
    ):
        point_receivers_at(reader, base)
        first = await engine.process(
            sender, Exchange.inbound(message, {}, user="user_for_sender_basic")
        )
        assert first.body == b"<Content>Receiver_2 greets Sender_BASIC</Content>"

        reader.strings[("Receiver_2", "ADDRESS")] = f"{new_base}/new"
        stale = await engine.process(
            sender, Exchange.inbound(message, {}, user="user_for_sender_basic")
        )
        assert stale.body == first.body  # cached until the API layer invalidates

        directory.invalidate("StringParameters", {"Pid": "Receiver_2", "Id": "ADDRESS"})
        fresh = await engine.process(
            sender, Exchange.inbound(message, {}, user="user_for_sender_basic")
        )
        assert fresh.body == b"<Content>the new Receiver_2</Content>"

"""Each step kind and value source over a real engine and the dict-backed directory."""

from __future__ import annotations

import json
from pathlib import Path

from partnergate.runtime import Exchange, Headers, PartnerDirectory

from .conftest import DictDirectory, engine_for, exchange, flow_from, run_async


async def run_flow(directory: PartnerDirectory, tmp_path: Path, text: str, message: Exchange):
    flow = flow_from(tmp_path, text)
    async with engine_for(directory) as (engine, log):
        reply = await engine.process(flow, message)
    return reply, log.get(message.message_id)


def test_headers_are_case_insensitive() -> None:
    headers = Headers({"Content-Type": "text/xml"})
    headers["content-type"] = "application/xml"
    assert headers["CONTENT-TYPE"] == "application/xml"
    assert list(headers) == ["content-type"]
    assert "Content-Type" in headers and len(headers) == 1


def test_inbound_exchange_drops_credentials_and_spoofed_identity() -> None:
    message = Exchange.inbound(
        b"x",
        [
            ("Authorization", "Basic abc"),
            ("SapAuthenticatedUserName", "admin"),
            ("Cookie", "s=1"),
            ("X-Custom", "kept"),
        ],
        user="user_for_sender_basic",
    )
    assert dict(message.headers) == {
        "X-Custom": "kept",
        "SapAuthenticatedUserName": "user_for_sender_basic",
        "SAP_MessageProcessingLogID": message.message_id,
    }
    assert len(message.message_id) == 28 and message.message_id.isalnum()


@run_async
async def test_set_from_every_source(
    reader: DictDirectory, directory: PartnerDirectory, tmp_path: Path
) -> None:
    reader.binaries[("Receiver_1", "table")] = (b"<T/>", "xml")
    message = exchange(
        '<m:Order xmlns:m="urn:m"><m:Receiver>Receiver Premium</m:Receiver><Qty>3</Qty></m:Order>',
        user="User_For_Sender_BASIC",
        **{"X-Route": "fast"},
    )
    reply, entry = await run_flow(
        directory,
        tmp_path,
        """
endpoint: /http/all
namespaces:
  m: urn:m
steps:
  - name: everything
    set:
      property.literal: plain text
      property.dollar: {literal: "${not a placeholder}"}
      property.template: route ${header.X-Route} for ${header.SapAuthenticatedUserName}
      property.alt: {xpath: /m:Order/m:Receiver}
      property.count: {xpath: "count(/m:Order/*)"}
      property.qty: {xpath: "/m:Order/Qty + 1"}
      property.copy: {property: alt}
      header.Copied: {header: X-Route}
      property.pid: {partner-id: {agency: AgencyXYZ, scheme: LONG, id: "${property.alt}"}}
      property.back:
        alternative-partner-id: {agency: AgencyXYZ, scheme: LONG, pid: "${property.pid}"}
      property.address: {string-parameter: {pid: "${property.pid}", id: ADDRESS}}
      property.table: {binary-parameter: {pid: "${property.pid}", id: table}}
      property.sender: {partner-of-user: }
      property.none: {xpath: /m:Order/Nothing, optional: true}
      property.fallback: {xpath: /m:Order/Nothing, default: "none for ${property.sender}"}
""",
        message,
    )
    assert reply.status == 200, reply.body
    assert message.properties == {
        "literal": "plain text",
        "dollar": "${not a placeholder}",
        "template": "route fast for User_For_Sender_BASIC",
        "alt": "Receiver Premium",
        "count": "2",
        "qty": "4",
        "copy": "Receiver Premium",
        "pid": "Receiver_1",
        "back": "Receiver Premium",
        "address": "http://127.0.0.1:9/cxf/receiver_1",
        "table": b"<T/>",
        "sender": "Sender_BASIC",
        "fallback": "none for Sender_BASIC",
    }
    assert message.headers["copied"] == "fast"
    assert entry is not None and entry.status == "COMPLETED"


@run_async
async def test_jsonpath(directory: PartnerDirectory, tmp_path: Path) -> None:
    body = json.dumps({"order": {"receiver": "Receiver_2", "items": [{"sku": "A1"}], "n": 2.0}})
    message = exchange(body)
    reply, _ = await run_flow(
        directory,
        tmp_path,
        """
endpoint: /http/json
steps:
  - set:
      property.receiver: {jsonpath: $.order.receiver}
      property.first: {jsonpath: "$.order.items[0]"}
      property.n: {jsonpath: $.order.n}
""",
        message,
    )
    assert reply.status == 200
    assert message.properties == {"receiver": "Receiver_2", "first": '{"sku":"A1"}', "n": "2"}

    reply, _ = await run_flow(
        directory,
        tmp_path,
        "endpoint: /http/json\nsteps:\n  - set: {property.r: {jsonpath: $.order.receiver}}\n",
        exchange("<not-json/>"),
    )
    assert reply.status == 400
    assert reply.body.startswith(b"step 1 (set) failed: the message is not JSON")


@run_async
async def test_misses_answer_with_the_status_of_their_source(
    directory: PartnerDirectory, tmp_path: Path
) -> None:
    cases = [
        ("{xpath: /Message/Receiver}", 400, "the message has nothing at /Message/Receiver"),
        (
            "{jsonpath: $.x}",
            400,
            "the message is not JSON (Expecting value: line 1 column 1 (char 0))",
        ),
        ("{header: X-Missing}", 400, "the message has no header X-Missing"),
        ("{property: nope}", 400, "property nope is not set"),
        (
            "{string-parameter: {pid: Receiver_1, id: NOPE}}",
            404,
            "string parameter Receiver_1/NOPE not found in the Partner Directory",
        ),
        (
            "{binary-parameter: {pid: Receiver_1, id: NOPE}}",
            404,
            "binary parameter Receiver_1/NOPE not found in the Partner Directory",
        ),
        (
            "{partner-id: {agency: AgencyXYZ, scheme: LONG, id: Nobody}}",
            404,
            "no partner has the alternative id 'Nobody' (agency AgencyXYZ, LONG)",
        ),
        (
            "{alternative-partner-id: {agency: A, scheme: B, pid: Receiver_1}}",
            404,
            "partner Receiver_1 has no alternative id for agency A, B",
        ),
        ("{partner-of-user: }", 403, "user stranger is not an authorized user of any partner"),
    ]
    for source, status, text in cases:
        reply, entry = await run_flow(
            directory,
            tmp_path,
            f"endpoint: /http/miss\nsteps:\n  - name: read\n    set:\n      property.v: {source}\n",
            exchange("<Message/>", user="stranger"),
        )
        assert (reply.status, reply.body.decode()) == (
            status,
            f"step 1 'read' failed: {text}\n",
        ), source
        assert entry is not None and entry.status == "FAILED" and entry.http_status == status


@run_async
async def test_authorize_partner(directory: PartnerDirectory, tmp_path: Path) -> None:
    flow = """
endpoint: /http/auth
steps:
  - set:
      property.CLAIMED: {xpath: /Message/Sender, optional: true}
  - name: check
    authorize-partner:
      claimed: ${property.CLAIMED}
      set: property.SENDER
"""
    for body, user, status, sender in [
        ("<Message/>", "user_for_sender_cert", 200, "Sender_CERT"),
        (
            "<Message><Sender>Sender_CERT</Sender></Message>",
            "user_for_sender_cert",
            200,
            "Sender_CERT",
        ),
        ("<Message><Sender>Sender_BASIC</Sender></Message>", "user_for_sender_cert", 403, None),
        ("<Message/>", "stranger", 403, None),
        ("<Message/>", None, 403, None),
    ]:
        message = exchange(body, user=user)
        reply, entry = await run_flow(directory, tmp_path, flow, message)
        assert reply.status == status, (body, user, reply.body)
        assert message.properties.get("SENDER") == sender
        assert entry is not None and entry.sender_partner == sender
    reply, _ = await run_flow(directory, tmp_path, flow, exchange("<Message/>"))
    assert reply.body == b"step 2 'check' failed: the message has no authenticated user\n"

    by_alternative = """
endpoint: /http/auth
steps:
  - authorize-partner:
      claimed: ${header.From}
      claimed-as: {agency: AgencyXYZ, scheme: LONG}
"""
    reader = directory.reader
    reader.users["user_receiver_1"] = "Receiver_1"  # type: ignore[attr-defined]
    ok = exchange("<a/>", user="user_receiver_1", From="Receiver Premium")
    assert (await run_flow(directory, tmp_path, by_alternative, ok))[0].status == 200
    wrong = exchange("<a/>", user="user_receiver_1", From="Receiver 2")
    assert (await run_flow(directory, tmp_path, by_alternative, wrong))[0].status == 403
    unknown = exchange("<a/>", user="user_receiver_1", From="Nobody")
    reply, _ = await run_flow(directory, tmp_path, by_alternative, unknown)
    assert reply.status == 403
    assert b"names sender Nobody, which is no known partner (agency AgencyXYZ, LONG)" in reply.body


@run_async
async def test_body_remove_and_reply(directory: PartnerDirectory, tmp_path: Path) -> None:
    message = exchange("<in/>", user="u", **{"X-Secret": "s"})
    message.properties["WHO"] = 'Sender<"&">'
    reply, entry = await run_flow(
        directory,
        tmp_path,
        """
endpoint: /http/body
steps:
  - body:
      content: <Greeting to="${property.WHO}">${property.WHO} ${body}</Greeting>
      content-type: application/xml
      escape: xml
  - remove: [header.X-Secret, property.WHO]
  - reply:
      status: 202
      headers: {X-Result: done}
""",
        message,
    )
    assert reply.status == 202
    assert reply.body == (
        b'<Greeting to="Sender&lt;&quot;&amp;&quot;&gt;">'
        b"Sender&lt;&quot;&amp;&quot;&gt; &lt;in/&gt;</Greeting>"
    )
    assert reply.content_type == "application/xml"
    assert reply.headers == {"X-Result": "done", "SAP_MessageProcessingLogID": message.message_id}
    assert "X-Secret" not in message.headers and "WHO" not in message.properties
    assert entry is not None and entry.http_status == 202

    raw, _ = await run_flow(
        directory,
        tmp_path,
        "endpoint: /http/b\nsteps:\n  - body: 'a ${header.SapAuthenticatedUserName} <b>'\n",
        exchange("", user="x<y"),
    )
    assert raw.body == b"a x<y <b>"


@run_async
async def test_body_from_a_binary_parameter(
    reader: DictDirectory, directory: PartnerDirectory, tmp_path: Path
) -> None:
    reader.binaries[("P", "template")] = (b"\x00\x01binary", "text")
    reply, _ = await run_flow(
        directory,
        tmp_path,
        """
endpoint: /http/b
steps:
  - body:
      content: {binary-parameter: {pid: P, id: template}}
      content-type: application/octet-stream
""",
        exchange(""),
    )
    assert (reply.body, reply.content_type) == (b"\x00\x01binary", "application/octet-stream")


@run_async
async def test_script_steps(directory: PartnerDirectory, tmp_path: Path) -> None:
    (tmp_path / "route.py").write_text(
        """
def process(message, pd):
    user = message.get_header("SapAuthenticatedUserName")
    pid = pd.get_partner_id_of_authorized_user(user)
    message.set_property("SENDER", pid)
    message.set_property("USERS", pd.get_authorized_users(pid))
    address = pd.get_parameter("ADDRESS", "Receiver_2", str)
    message.set_header("Target", address)
    message.set_body("<routed>" + message.get_body(str) + "</routed>")
""",
        encoding="utf-8",
    )
    (tmp_path / "async_route.py").write_text(
        """
async def process(message, pd):
    message.set_property("ALT", await pd.get_partner_id("AgencyXYZ", "LONG", "Receiver 2"))
""",
        encoding="utf-8",
    )
    (tmp_path / "refuse.py").write_text(
        """
def process(message, pd):
    if pd.get_parameter("LIMIT", "Receiver_2") is None:
        raise StepError(422, "no limit agreed with Receiver_2")
""",
        encoding="utf-8",
    )
    (tmp_path / "crash.py").write_text(
        "def process(message, pd):\n    return {}['missing']\n", encoding="utf-8"
    )
    message = exchange("x", user="user_for_sender_basic")
    reply, _ = await run_flow(
        directory,
        tmp_path,
        "endpoint: /http/s\nsteps:\n  - script: route.py\n  - script: async_route.py\n",
        message,
    )
    assert reply.status == 200, reply.body
    assert reply.body == b"<routed>x</routed>"
    assert message.properties == {
        "SENDER": "Sender_BASIC",
        "USERS": ["user_for_sender_basic"],
        "ALT": "Receiver_2",
    }
    assert message.headers["target"] == "http://127.0.0.1:9/cxf/receiver_2"

    reply, _ = await run_flow(
        directory, tmp_path, "endpoint: /http/s\nsteps:\n  - script: refuse.py\n", exchange("")
    )
    assert (reply.status, reply.body) == (
        422,
        b"step 1 (script) failed: no limit agreed with Receiver_2\n",
    )

    reply, entry = await run_flow(
        directory, tmp_path, "endpoint: /http/s\nsteps:\n  - script: crash.py\n", exchange("")
    )
    assert (reply.status, reply.body) == (
        500,
        b"step 1 (script) failed: script crash.py failed (KeyError at line 2)\n",
    )
    assert entry is not None and "KeyError: 'missing'" in (entry.error or "")


def test_headers_get_ignores_case_and_gives_the_default_for_a_missing_name() -> None:
    headers = Headers([("Content-Type", "text/xml"), ("x-Trace", "1")])
    assert headers.get("content-type") == "text/xml"
    assert headers.get("X-TRACE") == "1"
    assert headers.get("Missing") is None
    assert headers.get("Missing", "none") == "none"
    headers["X-Trace"] = "2"
    assert headers.get("x-trace") == "2" and list(headers) == ["Content-Type", "X-Trace"]

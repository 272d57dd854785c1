"""``log-attachment``: what a flow keeps of a message for the message processing log."""

from __future__ import annotations

from pathlib import Path

import pytest

from partnergate.runtime import PartnerDirectory
from partnergate.runtime.errors import FlowError

from .conftest import engine_for, exchange, flow_from, run_async

KEEPING = """
endpoint: /http/keep
steps:
  - log-attachment: received
  - set:
      property.RECEIVER: {xpath: /Message/Receiver}
  - body: <Answer>${property.RECEIVER}</Answer>
  - log-attachment:
      name: sent ${property.RECEIVER}
      content-type: "text/xml\\r\\nX-Injected: yes"
  - log-attachment:
      name: note
      content: "for ${property.RECEIVER} and ${header.X-Team}"
      escape: xml
  - log-attachment:
      name: head
      content: "0123456789"
      max-bytes: 4
"""


@run_async
async def test_a_flow_keeps_what_it_names(directory: PartnerDirectory, tmp_path: Path) -> None:
    flow = flow_from(tmp_path, KEEPING)
    message = exchange(
        "<Message><Receiver>Receiver_2</Receiver></Message>",
        user="user_for_sender_basic",
        **{"Content-Type": "application/xml", "X-Team": "R & D"},
    )
    async with engine_for(directory) as (engine, log):
        reply = await engine.process(flow, message)
    assert reply.status == 200
    entry = log.get(message.message_id)
    assert entry is not None
    kept = {a.name: a for a in entry.attachments}
    assert list(kept) == ["received", "sent Receiver_2", "note", "head (first 4 bytes)"]
    assert kept["received"].payload == b"<Message><Receiver>Receiver_2</Receiver></Message>"
    assert kept["received"].content_type == "application/xml"
    assert kept["sent Receiver_2"].payload == b"<Answer>Receiver_2</Answer>"
    assert kept["sent Receiver_2"].content_type == "text/xmlX-Injected: yes"  # no line break
    assert kept["note"].payload == b"for Receiver_2 and R &amp; D"
    assert kept["head (first 4 bytes)"].payload == b"0123"
    ids = {a.attachment_id for a in entry.attachments}
    assert len(ids) == 4 and all(i.startswith("sap-it-res:msg:") for i in ids)


@run_async
async def test_nothing_is_kept_without_the_step(
    directory: PartnerDirectory, tmp_path: Path
) -> None:
    flow = flow_from(tmp_path, "endpoint: /http/plain\nsteps:\n  - body: done\n")
    message = exchange("secret payload", user="user_for_sender_basic")
    async with engine_for(directory) as (engine, log):
        await engine.process(flow, message)
    entry = log.get(message.message_id)
    assert entry is not None and entry.attachments == ()


def test_a_step_without_a_name_is_refused_with_its_line(tmp_path: Path) -> None:
    text = "endpoint: /http/x\nsteps:\n  - log-attachment:\n      content: x\n"
    with pytest.raises(FlowError) as raised:
        flow_from(tmp_path, text)
    assert "name" in str(raised.value) and raised.value.line == 4


@run_async
async def test_a_script_adds_attachments_as_sap_scripts_do(
    directory: PartnerDirectory, tmp_path: Path
) -> None:
    (tmp_path / "note.py").write_text(
        "def process(message, pd):\n"
        "    log = message.message_log\n"
        "    log.add_attachment_as_string('seen', 'seen ' + message.get_body(str))\n"
        "    log.add_attachment_as_string('big', 'x' * (2 * 1024 * 1024), 'text/csv')\n"
    )
    flow = flow_from(tmp_path, "endpoint: /http/script\nsteps:\n  - script: note.py\n")
    message = exchange("hello", user="user_for_sender_basic")
    async with engine_for(directory) as (engine, log):
        reply = await engine.process(flow, message)
    assert reply.status == 200
    entry = log.get(message.message_id)
    assert entry is not None
    seen, big = entry.attachments
    assert (seen.name, seen.content_type, seen.payload) == ("seen", "text/plain", b"seen hello")
    assert big.name == "big (first 1048576 bytes)" and len(big.payload) == 1024 * 1024
    assert big.content_type == "text/csv"

"""What a flow keeps of its messages, served as SAP's message processing log attachments."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from ..conftest import Api, Server, start_server, stop_server

KEEP_FLOW = """\
flow: keeper
endpoint: /http/keep
role: keep.send
steps:
  - log-attachment: received
  - body:
      content: <Answer>kept</Answer>
      content-type: application/xml
  - log-attachment: answered
"""
PLAIN_FLOW = "flow: plain\nendpoint: /http/plain\nrole: keep.send\nsteps:\n  - body: done\n"
HOSTILE = b"<html><script>fetch('/api/v1/StringParameters')</script></html>"


@pytest.fixture(scope="module")
def keeper(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("keeper")
    folder = tmp / "flows"
    folder.mkdir()
    (folder / "keep.yaml").write_text(KEEP_FLOW)
    (folder / "plain.yaml").write_text(PLAIN_FLOW)
    srv = start_server(tmp, store_url, {"PARTNERGATE_FLOWS": str(folder)})
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def sender(keeper: Server) -> tuple[str, str]:
    account = (f"keeper_{secrets.token_hex(4)}", secrets.token_urlsafe(10))
    keeper.add_user(*account, "keep.send")
    return account


def send(server: Server, sender: tuple[str, str], path: str) -> str:
    sent = httpx.post(
        server.url + path, content=HOSTILE, headers={"Content-Type": "text/html"}, auth=sender
    )
    assert sent.status_code == 200, sent.text
    return sent.headers["sap_messageprocessinglogid"]


def test_attachments_of_a_message_and_their_bytes(keeper: Server, sender: tuple[str, str]) -> None:
    guid = send(keeper, sender, "/http/keep")
    with Api(keeper) as api:
        listed = api.get(f"MessageProcessingLogs('{guid}')/Attachments").json()["d"]["results"]
        assert [(a["Name"], a["ContentType"], a["PayloadSize"]) for a in listed] == [
            ("received", "text/html", str(len(HOSTILE))),
            ("answered", "application/xml", str(len(b"<Answer>kept</Answer>"))),
        ]
        assert {a["MessageGuid"] for a in listed} == {guid}
        assert all(a["TimeStamp"].startswith("/Date(") for a in listed)

        received = api.get(f"MessageProcessingLogAttachments('{listed[0]['Id']}')/$value")
        assert received.status_code == 200 and received.content == HOSTILE
        # a sender's bytes never run in an admin's browser
        assert received.headers["content-disposition"].startswith("attachment;")
        assert received.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in received.headers["content-security-policy"]

        filtered = api.get(
            "MessageProcessingLogAttachments", params={"$filter": f"MessageGuid eq '{guid}'"}
        ).json()["d"]["results"]
        assert sorted(a["Id"] for a in filtered) == sorted(a["Id"] for a in listed)
        named = api.get(
            f"MessageProcessingLogs('{guid}')/Attachments", params={"$filter": "Name eq 'answered'"}
        ).json()["d"]["results"]
        assert [a["Name"] for a in named] == ["answered"]
        assert "MessageProcessingLogAttachment" in api.get("$metadata").text


def test_a_flow_without_the_step_keeps_nothing(keeper: Server, sender: tuple[str, str]) -> None:
    guid = send(keeper, sender, "/http/plain")
    with Api(keeper) as api:
        assert api.get(f"MessageProcessingLogs('{guid}')/Attachments").json()["d"]["results"] == []


def test_attachments_are_read_only_and_unknown_ones_404(keeper: Server) -> None:
    with Api(keeper) as api:
        assert api.get("MessageProcessingLogs('nosuchmessage')/Attachments").status_code == 404
        assert api.get("MessageProcessingLogAttachments('nosuch')/$value").status_code == 404
        created = api.post("MessageProcessingLogAttachments", json={"Id": "x", "Name": "forged"})
        assert created.status_code == 405
        assert api.delete("MessageProcessingLogAttachments('x')").status_code == 405

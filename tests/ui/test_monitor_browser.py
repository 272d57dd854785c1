"""The message monitor and the flows page over a node that serves the example flows."""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from ..conftest import Api, Server, start_server, stop_server
from .conftest import open_tab, shot, sign_in_tab

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "partner-directory"
SEND = "/http/partner_directory"
BROKEN_FLOW = "flow: broken\nendpoint: /http/broken\nsteps:\n  - name: first\n    teleport: {}\n"
KEEP_FLOW = (
    "flow: keeper\nendpoint: /http/keep\nrole: keep.send\nsteps:\n  - log-attachment: received\n"
)


@pytest.fixture(scope="module")
def flow_server(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Server]:
    """A second node over the same store: the seed scenario's flows and one broken file."""
    tmp = tmp_path_factory.mktemp("ui-flows")
    folder = tmp / "flows"
    shutil.copytree(EXAMPLES, folder)
    (folder / "broken.yaml").write_text(BROKEN_FLOW)
    (folder / "keep.yaml").write_text(KEEP_FLOW)
    srv = start_server(tmp, store_url, {"PARTNERGATE_FLOWS": str(folder)})
    try:
        yield srv
    finally:
        stop_server(srv)


def test_a_refused_message_shows_as_failed(browser: Browser, flow_server: Server) -> None:
    sender = (f"stranger_{secrets.token_hex(4)}", secrets.token_urlsafe(10))
    flow_server.add_user(*sender, "ESBMessaging.send")
    refused = httpx.post(
        flow_server.url + SEND,
        content=b"<Message><Receiver>Receiver_2</Receiver></Message>",
        headers={"Content-Type": "application/xml"},
        auth=sender,
    )
    assert refused.status_code == 403
    guid = refused.headers["sap_messageprocessinglogid"]

    with open_tab(browser, flow_server) as tab:
        sign_in_tab(tab, *flow_server.admin)
        tab.get_by_role("link", name="Monitor").click()
        tab.get_by_label("Status").select_option("FAILED")
        tab.get_by_label("Flow").fill("Partner Directory sender")
        tab.get_by_role("button", name="Filter").click()
        expect(tab).to_have_url(re.compile(r"status=FAILED&flow=Partner\+Directory\+sender"))
        row = tab.locator("tbody tr").first
        expect(row).to_contain_text("FAILED")
        expect(row).to_contain_text("Partner Directory sender")
        shot(tab, "monitor")

        tab.get_by_role("link", name=f"Details of message {guid}").click()
        expect(tab).to_have_url(re.compile(rf"/ui/monitor/{guid}$"))
        failure = tab.get_by_role("region", name="Why it failed")
        expect(failure).to_contain_text("identify the sender")
        expect(failure).to_contain_text(f"user {sender[0]} is not an authorized user")
        shot(tab, "message")

        tab.get_by_role("link", name="Partner Directory sender").click()
        expect(tab).to_have_url(re.compile(r"/ui/flows#flow-"))


def test_the_flows_page_lists_endpoints_and_roles(browser: Browser, flow_server: Server) -> None:
    with open_tab(browser, flow_server) as tab:
        sign_in_tab(tab, *flow_server.admin)
        tab.goto("/ui/flows")
        sender = tab.get_by_role("row").filter(has_text="Partner Directory sender")
        expect(sender).to_contain_text(SEND)
        expect(sender).to_contain_text("ESBMessaging.send")
        for n in (1, 2):
            row = tab.get_by_role("row").filter(has_text=f"/cxf/receiver_{n}")
            expect(row).to_contain_text(f"receiver_{n}.send")
        errors = tab.get_by_role("region", name="1 flow file could not be deployed")
        expect(errors).to_contain_text("broken.yaml")
        expect(errors).to_contain_text("unknown step kind 'teleport'")
        shot(tab, "flows")
        sender.get_by_role("link", name="Messages of Partner Directory sender").click()
        expect(tab.get_by_label("Flow")).to_have_value("Partner Directory sender")


def test_monitor_filters_are_checked(browser: Browser, flow_server: Server) -> None:
    with httpx.Client(base_url=flow_server.url) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/signin").text)
        assert token
        name, password = flow_server.admin
        client.post("/ui/signin", data={"name": name, "password": password, "csrf": token.group(1)})
        r = client.get("/ui/monitor", params={"status": "LOST", "since": "yesterday"})
        assert r.status_code == 400
        assert "Status must be one of FAILED, COMPLETED, PROCESSING" in r.text
        assert "Give a date and time as YYYY-MM-DDTHH:MM (UTC)" in r.text
        later = client.get("/ui/monitor", params={"since": "2999-01-01T00:00"})
        assert later.status_code == 200
        assert "No message matches these filters." in later.text


def test_a_partner_page_shows_its_recent_messages(
    browser: Browser, flow_server: Server, pid: str
) -> None:
    sender = (f"sender_{pid.lower()}", secrets.token_urlsafe(10))
    flow_server.add_user(*sender, "ESBMessaging.send")
    with Api(flow_server) as api:
        api.post("AuthorizedUsers", json={"User": sender[0], "Pid": pid}).raise_for_status()
    failed = httpx.post(
        flow_server.url + SEND,
        content=f"<Message><Receiver>{pid}_nowhere</Receiver></Message>".encode(),
        headers={"Content-Type": "application/xml"},
        auth=sender,
    )
    assert failed.status_code >= 400
    guid = failed.headers["sap_messageprocessinglogid"]

    with open_tab(browser, flow_server) as tab:
        sign_in_tab(tab, *flow_server.admin)
        tab.goto(f"/ui/partners/{pid}")
        messages = tab.locator("section[aria-labelledby=messages]")
        row = messages.locator("tbody tr").first
        expect(row).to_contain_text("FAILED")
        expect(row).to_contain_text("sent")
        expect(row.get_by_role("link", name=f"Details of message {guid}")).to_be_visible()
        shot(tab, "partner-with-messages")
        messages.get_by_role("link", name=f"All messages of {pid}").click()
        expect(tab.get_by_label("Partner")).to_have_value(pid)
        expect(tab.locator("tbody tr")).to_have_count(1)


def test_a_kept_body_is_listed_and_downloaded_not_shown(
    browser: Browser, flow_server: Server
) -> None:
    sender = (f"keeper_{secrets.token_hex(4)}", secrets.token_urlsafe(10))
    flow_server.add_user(*sender, "keep.send")
    body = b"<html><script>document.title='ran'</script>kept</html>"
    sent = httpx.post(
        flow_server.url + "/http/keep",
        content=body,
        headers={"Content-Type": "text/html"},
        auth=sender,
    )
    assert sent.status_code == 200
    guid = sent.headers["sap_messageprocessinglogid"]

    with open_tab(browser, flow_server) as tab:
        sign_in_tab(tab, *flow_server.admin)
        tab.goto(f"/ui/monitor/{guid}")
        row = tab.get_by_role("row").filter(has_text="received")
        expect(row).to_contain_text("text/html")
        expect(row).to_contain_text(f"{len(body)} B")
        shot(tab, "message-attachments")
        with tab.expect_download() as download:
            row.get_by_role("link", name="received").click()
        saved = download.value.path()
        assert saved is not None and Path(saved).read_bytes() == body
        expect(tab).to_have_url(re.compile(rf"/ui/monitor/{guid}$"))
        assert tab.title() != "ran"

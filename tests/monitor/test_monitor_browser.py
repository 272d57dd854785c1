"""The message monitor in Chromium: search by custom header property, quick time ranges,
page numbers with first and last, the error column, auto-refresh, and a message's steps
and exchange."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, expect

from partnergate.runtime.exchange import new_message_id
from partnergate.runtime.messagelog import COMPLETED, MessageLogEntry, utcnow
from partnergate.store import database
from partnergate.store.messagelog import StoreMessageLog

from ..conftest import Api
from ..ui.conftest import chromium, open_tab, run_async, shot, sign_in_tab
from .conftest import Scenario, order, send

PAGE_SIZE = 50


@pytest.fixture(scope="module")
def browser(scenario: Scenario) -> Iterator[Browser]:
    """Chromium after the scenario's server, so the store outlives the browser's loop."""
    with chromium() as launched:
        yield launched


def write_entries(store_url: str, entries: list[MessageLogEntry]) -> None:
    """Messages as if flows had run earlier (the log is read-only through the API)."""

    async def main() -> None:
        engine = database.create_engine(store_url)
        log = StoreMessageLog(engine)
        for entry in entries:
            await log.finished(entry)
        await log.flush()
        log.close()
        await engine.dispose()

    run_async(main)


def test_search_by_custom_header_property_and_quick_range(
    browser: Browser, scenario: Scenario, store_url: str
) -> None:
    number = f"PO-{time.time_ns()}"
    guid = order(scenario, number)
    order(scenario, number + "-2")
    old = MessageLogEntry(
        new_message_id(),
        "Orders",
        "/http/orders",
        COMPLETED,
        utcnow() - timedelta(hours=2),
        utcnow() - timedelta(hours=2),
        custom_properties=(("OrderNumber", number),),
    )
    write_entries(store_url, [old])
    srv = scenario.server
    with open_tab(browser, srv) as tab:
        sign_in_tab(tab, *srv.admin)
        tab.goto("/ui/monitor")
        tab.get_by_label("Custom header property").fill(f"OrderNumber={number}")
        tab.get_by_role("button", name="Filter").click()
        expect(tab).to_have_url(re.compile(r"property=OrderNumber%3DPO-"))
        expect(tab.locator("#total")).to_have_text("2")  # this one and the old one
        tab.get_by_role("link", name="Last hour").click()
        expect(tab).to_have_url(re.compile(r"range=1h"))
        expect(tab.locator("#total")).to_have_text("1")
        expect(tab.locator(f"tr[data-guid='{guid}']")).to_be_visible()
        expect(tab.locator(f"tr[data-guid='{old.message_guid}']")).to_have_count(0)
        tab.get_by_role("link", name="Last 24 hours").click()
        expect(tab.locator("#total")).to_have_text("2")
        shot(tab, "monitor-custom-header")
        tab.locator(f"tr[data-guid='{guid}']").get_by_role("link", name="Details").click()
        properties = tab.locator(".custom-properties")
        expect(properties).to_contain_text("OrderNumber")
        expect(properties).to_contain_text("Buyer")
        expect(tab.locator(".timeline-step")).to_have_count(3)


def test_paging_with_numbers_first_and_last(
    browser: Browser, scenario: Scenario, store_url: str
) -> None:
    flow = f"Paging {uuid.uuid4().hex[:8]}"
    start = utcnow() - timedelta(minutes=30)
    entries = [
        MessageLogEntry(
            new_message_id(),
            flow,
            "/http/paging",
            COMPLETED,
            start + timedelta(seconds=n),
            start + timedelta(seconds=n, milliseconds=5),
        )
        for n in range(PAGE_SIZE * 2 + 5)
    ]
    write_entries(store_url, entries)
    srv = scenario.server
    with open_tab(browser, srv) as tab:
        sign_in_tab(tab, *srv.admin)
        tab.goto(f"/ui/monitor?flow={flow.replace(' ', '+')}")
        expect(tab.locator("#total")).to_have_text(str(PAGE_SIZE * 2 + 5))
        expect(tab.locator("tbody tr")).to_have_count(PAGE_SIZE)
        expect(tab.locator(".pager [aria-current=page]")).to_have_text("Page 1")
        newest = entries[-1].message_guid
        expect(tab.locator("tbody tr").first).to_have_attribute("data-guid", newest)
        tab.get_by_role("link", name="Last »").click()
        expect(tab).to_have_url(re.compile(r"page=3"))
        expect(tab.locator("tbody tr")).to_have_count(5)
        expect(tab.locator("tbody tr").last).to_have_attribute("data-guid", entries[0].message_guid)
        tab.get_by_role("link", name="Page 2", exact=True).click()
        expect(tab.locator(".pager [aria-current=page]")).to_have_text("Page 2")
        expect(tab).to_have_url(re.compile(rf"flow={re.escape(flow.split()[0])}\+"))
        tab.get_by_role("link", name="« First").click()
        expect(tab.locator(".pager [aria-current=page]")).to_have_text("Page 1")
        shot(tab, "monitor-paging")


def test_failed_row_names_receiver_and_error_and_refresh_pauses(
    browser: Browser, scenario: Scenario
) -> None:
    failed = send(scenario, "Receiver_9").headers["sap_messageprocessinglogid"]
    ok = send(scenario, "Receiver_2").headers["sap_messageprocessinglogid"]
    srv = scenario.server
    with open_tab(browser, srv) as tab:
        sign_in_tab(tab, *srv.admin)
        tab.goto(f"/ui/monitor?id={failed}")
        row = tab.locator(f"tr[data-guid='{failed}']")
        expect(row.locator(".receiver")).to_have_text("Receiver_9")
        expect(row.locator(".error-summary-cell")).to_contain_text("look up the receiver")
        expect(row.locator(".error-summary-cell")).to_contain_text("Receiver_9/ADDRESS not found")
        toggle = tab.get_by_role("button", name="Pause auto-refresh")
        toggle.click()
        expect(tab.get_by_role("button", name="Resume auto-refresh")).to_have_attribute(
            "aria-pressed", "true"
        )
        tab.reload()
        expect(tab.get_by_role("button", name="Resume auto-refresh")).to_be_visible()
        tab.get_by_role("button", name="Resume auto-refresh").click()

        tab.goto(f"/ui/monitor/{ok}")
        expect(tab.locator(".timeline-step")).to_have_count(5)
        expect(tab.locator(".timeline-step").nth(4)).to_contain_text("answered 200")
        exchange = tab.locator("table.exchange tbody tr")
        expect(exchange).to_have_count(2)
        expect(exchange.nth(1)).to_contain_text("Receiver 2")
        shot(tab, "monitor-message-steps")
        exchange.nth(1).get_by_role("link").click()
        expect(tab.locator(".timeline-step")).to_have_count(2)
        tab.get_by_label("Log level", exact=True).select_option("TRACE")
        tab.get_by_role("button", name="Set log level").click()
        expect(tab.locator("#flow-level")).to_have_text("TRACE")
        tab.get_by_label("Log level", exact=True).select_option("INFO")
        tab.get_by_role("button", name="Set log level").click()
        expect(tab.locator("#flow-level")).to_have_text("INFO")


def test_search_by_message_or_correlation_id(browser: Browser, scenario: Scenario) -> None:
    sender = send(scenario, "Receiver_2").headers["sap_messageprocessinglogid"]
    with Api(scenario.server) as api:
        correlation = api.get(f"MessageProcessingLogs('{sender}')").json()["d"]["CorrelationId"]
        joined = api.get(
            "MessageProcessingLogs", params={"$filter": f"CorrelationId eq '{correlation}'"}
        ).json()["d"]["results"]
    receiver = next(e["MessageGuid"] for e in joined if e["MessageGuid"] != sender)
    srv = scenario.server
    with open_tab(browser, srv) as tab:
        sign_in_tab(tab, *srv.admin)
        tab.goto("/ui/monitor")
        field = tab.get_by_label("Message or correlation ID")
        field.fill(correlation)
        tab.get_by_role("button", name="Filter").click()
        expect(tab).to_have_url(re.compile(rf"id={correlation}"))
        expect(tab.locator("#total")).to_have_text("2")  # the sender's and the receiver's
        expect(tab.locator(f"tr[data-guid='{receiver}']")).to_be_visible()
        tab.get_by_label("Message or correlation ID").fill(receiver)
        tab.get_by_role("button", name="Filter").click()
        expect(tab.locator("#total")).to_have_text("1")
        expect(tab.locator(f"tr[data-guid='{receiver}']")).to_contain_text("Receiver 2")


def test_auto_refresh_waits_while_a_filter_is_being_written(
    browser: Browser, scenario: Scenario
) -> None:
    srv = scenario.server
    with open_tab(browser, srv) as tab:
        sign_in_tab(tab, *srv.admin)
        tab.clock.install()
        tab.goto("/ui/monitor")
        tab.evaluate("window.loadedOnce = true")
        field = tab.get_by_label("Message or correlation ID")
        field.fill("0MX9half")  # the focus stays in the field
        tab.clock.run_for(40_000)  # past two refreshes
        expect(field).to_have_value("0MX9half")
        tab.locator("h1").click()  # elsewhere, the text not yet sent
        tab.clock.run_for(40_000)
        expect(field).to_have_value("0MX9half")
        assert tab.evaluate("window.loadedOnce") is True
        field.fill("")
        tab.locator("h1").click()
        with tab.expect_navigation():
            tab.clock.run_for(40_000)  # nothing being written: the list reloads
        assert tab.evaluate("window.loadedOnce") is None
        tab.evaluate("window.loadedAgain = true")
        tab.get_by_label("Status", exact=True).select_option("FAILED")  # chosen, not sent
        tab.locator("h1").click()
        tab.clock.run_for(40_000)
        expect(tab.get_by_label("Status", exact=True)).to_have_value("FAILED")
        assert tab.evaluate("window.loadedAgain") is True

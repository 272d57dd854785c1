"""A person in Chromium renames a partner, reads its History tab and restores a value,
on a desktop (1280×800) and a phone (390×844) screen."""

from __future__ import annotations

import base64
import re

import pytest
from playwright.sync_api import Page, expect

from ..conftest import Api
from ..ui.conftest import shot

XSLT_1 = """<xsl:stylesheet version='2.0'>
  <xsl:template match='/'>
    <a/>
  </xsl:template>
</xsl:stylesheet>
"""
XSLT_2 = XSLT_1.replace("<a/>", "<b/>")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def no_sideways_scroll(page: Page) -> None:
    """Nothing in the page's main part reaches past the screen's right edge (wide diffs
    scroll inside their own box). The top menu's layout is the menu's own test."""
    width = page.viewport_size["width"]
    past = page.evaluate(
        """(width) => [...document.querySelectorAll('main *')]
            .filter(e => !e.closest('.diff-box') && e.getBoundingClientRect().right > width + 1)
            .map(e => e.tagName + '.' + e.className)""",
        width,
    )
    assert not past, f"wider than {width}px: {past}"


@pytest.mark.parametrize("size", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_rename_then_read_history_and_restore(
    page: Page, api: Api, pid: str, size: tuple[int, int]
) -> None:
    page.set_viewport_size({"width": size[0], "height": size[1]})
    name = "desktop" if size[0] > 800 else "phone"
    new = pid + "_renamed"
    api.post("StringParameters", json={"Pid": pid, "Id": "ADDRESS", "Value": "https://one"})
    api.put(f"StringParameters(Pid='{pid}',Id='ADDRESS')", json={"Value": "https://two"})
    binary = f"BinaryParameters(Pid='{pid}',Id='map.xsl')"
    first = {"Pid": pid, "Id": "map.xsl", "ContentType": "xsl", "Value": b64(XSLT_1)}
    assert api.post("BinaryParameters", json=first).status_code == 201
    assert api.put(binary, json={"ContentType": "xsl", "Value": b64(XSLT_2)}).status_code == 204

    page.goto(f"/ui/partners/{pid}")
    page.get_by_role("link", name="Rename…").click()
    page.get_by_label("New partner ID").fill(new)
    no_sideways_scroll(page)
    shot(page, f"rename-{name}")
    page.get_by_role("button", name="Rename").click()
    expect(page).to_have_url(re.compile(rf"/ui/partners/{new}$"))
    expect(page.get_by_role("status")).to_contain_text("2 entities moved in one change")

    page.get_by_role("link", name="History").click()
    expect(page).to_have_url(re.compile(rf"/ui/partners/{new}/history$"))
    expect(page.get_by_role("heading", name=f"Renamed {pid} → {new}")).to_be_visible()
    no_sideways_scroll(page)
    shot(page, f"history-{name}")

    page.goto(f"/ui/partners/{pid}/history")
    change = page.locator("li.change").filter(has_text="https://two").filter(has_text="Update")
    expect(change).to_have_count(1)
    expect(change.locator("td.del")).to_contain_text("https://one")
    expect(change.locator("td.add")).to_contain_text("https://two")
    xslt = page.locator("li.change").filter(has_text="map.xsl").filter(has_text="Update")
    expect(xslt.locator(".line-del")).to_contain_text("<a/>")
    expect(xslt.locator(".line-add")).to_contain_text("<b/>")
    no_sideways_scroll(page)
    shot(page, f"history-diff-{name}")

    # A change after the rename, undone from the new ID's history.
    api.put(f"StringParameters(Pid='{new}',Id='ADDRESS')", json={"Value": "https://three"})
    page.goto(f"/ui/partners/{new}/history")
    latest = page.locator("li.change").first
    expect(latest).to_contain_text("https://three")
    latest.get_by_role("button", name=re.compile("Restore the value before")).click()
    expect(page.get_by_role("status")).to_contain_text("changed back")
    value = api.get(f"StringParameters(Pid='{new}',Id='ADDRESS')").json()["d"]["Value"]
    assert value == "https://two"
    expect(page.locator("li.change").first).to_contain_text("Restore")

    # The menu stays reachable at this size.
    expect(page.get_by_role("navigation", name="Main")).to_be_attached()

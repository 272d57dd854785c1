"""Where used: the flows, stored stylesheets and messages that name a partner or parameter."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from html import unescape

import httpx
import pytest
from playwright.sync_api import Browser, expect

from ..conftest import Api, Server, start_server, stop_server
from .conftest import SIZES, admin_tab, shot, sign_in
from .test_search_everywhere import assert_fits

XSL = "http://www.w3.org/1999/XSL/Transform"
FLOW = """flow: Mapping by partner
endpoint: /http/mapping_{tag}
steps:
  - name: map
    xslt:
      stylesheet: pd:{pid}:MAP:Binary
      params:
        greeting: hello
  - name: look up
    set:
      property.ADDRESS:
        string-parameter: {{pid: {pid}, id: ADDRESS}}
      property.OTHER:
        string-parameter: {{pid: "${{header.to}}", id: TIMEOUT}}
"""
MAPPING = f"""<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}">
  <xsl:param name="greeting"/>
  <xsl:template match="/">
    <out><xsl:value-of select="$greeting"/>-<xsl:value-of select="/in"/></out>
  </xsl:template>
</xsl:stylesheet>
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def mapped(
    tmp_path_factory: pytest.TempPathFactory, store_url: str
) -> Iterator[tuple[Server, str]]:
    """A node with a flow that maps with a stored stylesheet of partner ``Mapper_<tag>``."""
    tag = uuid.uuid4().hex[:8]
    pid = f"Mapper_{tag}"
    tmp = tmp_path_factory.mktemp("usage")
    folder = tmp / "flows"
    folder.mkdir()
    (folder / "mapping.yaml").write_text(FLOW.format(tag=tag, pid=pid))
    srv = start_server(
        tmp, store_url, {"PARTNERGATE_FLOWS": str(folder), "PARTNERGATE_STEP_TIME_LIMIT": "3"}
    )
    try:
        with Api(srv) as api:
            for ident, text in (
                ("MAP", MAPPING),
                (
                    "CALLER",
                    f'<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}">'
                    f'<xsl:import href="pd:{pid}:MAP:Binary"/></xsl:stylesheet>',
                ),
            ):
                body = {"Pid": pid, "Id": ident, "ContentType": "xsl", "Value": b64(text)}
                assert api.post("BinaryParameters", json=body).status_code == 201
            assert (
                api.post(
                    "StringParameters", json={"Pid": pid, "Id": "ADDRESS", "Value": "x"}
                ).status_code
                == 201
            )
        yield srv, pid
    finally:
        stop_server(srv)


def test_a_partner_is_used_by_its_flow_and_a_stylesheet(mapped: tuple[Server, str]) -> None:
    server, pid = mapped
    with sign_in(server, *server.admin) as ui:
        page = ui.get("/ui/usage", params={"pid": pid})
    assert page.status_code == 200
    html = unescape(page.text)
    assert "mapping.yaml:6" in html  # the xslt step's pd: URI
    assert "mapping.yaml:12" in html  # the string-parameter source
    assert f"{pid} / CALLER" in html
    assert f"pd:{pid}:MAP:Binary" in html
    assert "not which parameters a flow looked up" in html


def test_a_parameter_id_is_found_with_a_literal_id_even_for_any_partner(
    mapped: tuple[Server, str],
) -> None:
    server, pid = mapped
    with sign_in(server, *server.admin) as ui:
        by_id = unescape(ui.get("/ui/usage", params={"id": "TIMEOUT"}).text)
        address = unescape(ui.get("/ui/usage", params={"pid": pid, "id": "ADDRESS"}).text)
    assert "mapping.yaml:14" in by_id and "${header.to}" in by_id
    assert "mapping.yaml:12" in address and "mapping.yaml:6" not in address


def test_an_unused_partner_has_no_uses(mapped: tuple[Server, str]) -> None:
    server, _ = mapped
    with sign_in(server, *server.admin) as ui:
        html = unescape(ui.get("/ui/usage", params={"pid": "Nobody_" + uuid.uuid4().hex}).text)
    assert "No deployed flow names it literally." in html
    assert "No stored stylesheet names it." in html


@pytest.mark.parametrize("size", SIZES)
def test_where_used_in_the_browser(browser: Browser, mapped: tuple[Server, str], size: str) -> None:
    server, pid = mapped
    with admin_tab(browser, server, size) as tab:
        tab.goto(f"/ui/usage?pid={pid}")
        flows = tab.get_by_role("region", name="Deployed flows")
        expect(flows.get_by_role("link", name="Mapping by partner").first).to_be_visible()
        expect(
            tab.get_by_role("region", name="Stylesheets in the Partner Directory")
        ).to_contain_text("CALLER")
        assert_fits(tab)
        shot(tab, f"usage-{size}")
        tab.get_by_label("Parameter ID").fill("ADDRESS")
        tab.get_by_role("button", name="Find uses").click()
        tab.wait_for_url("**id=ADDRESS")
        expect(flows).to_contain_text("string-parameter")
        assert_fits(tab)


def test_the_messages_of_the_partner_are_listed(
    browser: Browser, mapped: tuple[Server, str]
) -> None:
    """A message the partner sent through the flow is among the uses, linked to its log."""
    server, pid = mapped
    sender = (f"sender_{pid.lower()}", "Pw-" + uuid.uuid4().hex[:8])
    server.add_user(*sender, "ESBMessaging.send")
    with Api(server) as api:
        api.post("AuthorizedUsers", json={"User": sender[0], "Pid": pid}).raise_for_status()
        timeout = {"Pid": pid, "Id": "TIMEOUT", "Value": "5"}
        api.post("StringParameters", json=timeout).raise_for_status()
    sent = httpx.post(
        f"{server.url}/http/mapping_{pid.removeprefix('Mapper_')}",
        content=b"<in>x</in>",
        headers={"Content-Type": "application/xml", "to": pid},
        auth=sender,
        timeout=30,
    )
    assert sent.status_code == 200, sent.text
    guid = sent.headers["sap_messageprocessinglogid"]
    with admin_tab(browser, server, "phone") as tab:
        tab.goto(f"/ui/usage?pid={pid}&id=ADDRESS")
        messages = tab.get_by_role("region", name="Recent messages")
        row = messages.locator("tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("Mapping by partner")
        expect(row).to_contain_text("COMPLETED")
        assert_fits(tab)
        row.get_by_role("link").click()
        tab.wait_for_url(f"**/ui/monitor/{guid}")

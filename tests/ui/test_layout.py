"""Every page of the UI on a desktop (1280×800) and a phone (390×844), and by keyboard.

No page is wider than the window (a wide table scrolls inside its own box), and the main
menu is reachable at both sizes: in the header on a desktop, behind the Menu button on a
phone, which the keyboard opens too.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, Page, expect

from ..conftest import Api, Server
from .conftest import open_tab, shot, sign_in_tab
from .test_certificates_browser import make_certificate

MENU = ("Partners", "Certificates", "Mapping rules", "Monitor", "Flows")
LONG = "X" * 60


@pytest.fixture(scope="module")
def content(server: Server) -> Iterator[dict[str, str]]:
    """A partner with one of every kind, long IDs and values, and a mapped certificate."""
    pid = "L_" + uuid.uuid4().hex[:8] + "_" + "p" * 40
    user = f"layout_{uuid.uuid4().hex[:8]}"
    cert = make_certificate("layout-" + "c" * 50, 400)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with Api(server) as api:
        for entity_set, body in (
            ("StringParameters", {"Id": "ADDRESS", "Value": "https://r.example/" + "a" * 300}),
            ("StringParameters", {"Id": LONG, "Value": "v" * 900}),
            ("BinaryParameters", {"Id": "MAP", "ContentType": "xml", "Value": _b64(b"<a/>")}),
            ("UserCredentialParameters", {"Id": "LOGIN", "User": "r" * 60, "Password": "pw"}),
            ("AlternativePartners", {"Agency": "GS1" * 10, "Scheme": "GLN", "Id": "9" * 60}),
            ("AuthorizedUsers", {"User": user}),
        ):
            api.post(entity_set, json={"Pid": pid, **body}).raise_for_status()
        mapping = api.post("CertificateUserMappings", json={"User": user, "Certificate": _b64(pem)})
        mapping.raise_for_status()
        yield {"pid": pid, "user": user, "mapping": mapping.json()["d"]["Id"]}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pages(c: dict[str, str]) -> list[str]:
    pid, mapping = c["pid"], c["mapping"]
    return [
        "/ui/partners",
        f"/ui/partners?q={pid[:10]}",
        f"/ui/partners/{pid}",
        f"/ui/partners/{pid}/delete",
        "/ui/new-partner",
        "/ui/new-partner?kind=binary-parameters",
        f"/ui/partners/{pid}/string-parameters/new",
        f"/ui/partners/{pid}/string-parameters/edit?id={LONG}",
        f"/ui/partners/{pid}/string-parameters/delete?id={LONG}",
        f"/ui/partners/{pid}/binary-parameters/edit?id=MAP",
        f"/ui/partners/{pid}/credentials/edit?id=LOGIN",
        f"/ui/partners/{pid}/authorized-users/edit?user={c['user']}",
        "/ui/certificates",
        f"/ui/certificates/{mapping}",
        f"/ui/certificates/{mapping}/delete",
        "/ui/new-certificate",
        "/ui/rules",
        "/ui/new-rule",
        "/ui/monitor",
        "/ui/flows",
        "/ui/partners/no-such-partner/string-parameters/edit?id=A",
    ]


def overflow(tab: Page) -> int:
    """How many pixels the page is wider than the window (0 when nothing spills out)."""
    return int(
        tab.evaluate(
            "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
            " - document.documentElement.clientWidth"
        )
    )


def test_no_page_is_wider_than_the_window(sized: Page, content: dict[str, str]) -> None:
    wide = {}
    for path in pages(content):
        sized.goto(path)
        if (extra := overflow(sized)) > 0:
            wide[path] = extra
    assert wide == {}, f"pages wider than {sized.viewport_size}: {wide}"


SMALLEST = {"width": 360, "height": 740}
"""The narrowest phone the layout is made for."""


def smallest_phone_fits(browser: Browser, server: Server, paths: list[str]) -> None:
    """Every page at 360 px: no page wider than the window, the menu behind its button."""
    wide = {}
    with open_tab(browser, server) as tab:
        tab.set_viewport_size(SMALLEST)
        sign_in_tab(tab, *server.admin)
        tab.wait_for_url("**/ui/partners")
        for path in paths:
            tab.goto(path)
            toggle = tab.get_by_role("button", name="Menu")
            toggle.click()
            expect(toggle).to_have_attribute("aria-expanded", "true")
            link = tab.get_by_role("navigation", name="Main").get_by_role("link", name="Users")
            expect(link).to_be_in_viewport()
            if (extra := overflow(tab)) > 0:
                wide[path] = extra
    assert wide == {}, f"pages wider than 360 px: {wide}"


def test_every_page_fits_the_smallest_phone(
    browser: Browser, server: Server, content: dict[str, str]
) -> None:
    smallest_phone_fits(browser, server, pages(content))


def test_the_menu_is_reachable_at_both_sizes(sized: Page, content: dict[str, str]) -> None:
    width = sized.viewport_size["width"]  # type: ignore[index]
    phone = width < 500
    for path in ("/ui/partners", f"/ui/partners/{content['pid']}", "/ui/certificates"):
        sized.goto(path)
        toggle = sized.get_by_role("button", name="Menu")
        nav = sized.get_by_role("navigation", name="Main")
        if phone:
            expect(toggle).to_be_visible()
            expect(toggle).to_have_attribute("aria-expanded", "false")
            expect(nav.get_by_role("link", name="Flows")).to_be_hidden()
            toggle.click()
            expect(toggle).to_have_attribute("aria-expanded", "true")
        else:
            expect(toggle).to_be_hidden()
        for name in MENU:
            link = nav.get_by_role("link", name=name, exact=True)
            expect(link).to_be_visible()
            box = link.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, name
        expect(nav.get_by_role("button", name="Sign out")).to_be_visible()
        assert overflow(sized) <= 0
    shot(sized, f"menu-{width}")


def test_the_phone_menu_opens_and_closes_by_keyboard(browser: Browser, server: Server) -> None:
    with open_tab(browser, server) as tab:
        tab.set_viewport_size({"width": 390, "height": 844})
        sign_in_tab(tab, *server.admin)
        tab.wait_for_url("**/ui/partners")
        toggle = tab.get_by_role("button", name="Menu")
        for _ in range(5):
            tab.keyboard.press("Tab")
            if toggle.evaluate("e => e === document.activeElement"):
                break
        expect(toggle).to_be_focused()
        outline = toggle.evaluate("e => getComputedStyle(e).outlineStyle")
        assert outline != "none", "the focused menu button shows no focus ring"
        tab.keyboard.press("Enter")
        partners = tab.get_by_role("navigation", name="Main").get_by_role("link", name="Partners")
        expect(partners).to_be_focused()
        tab.keyboard.press("Tab")
        tab.keyboard.press("Enter")
        expect(tab).to_have_url(server.url + "/ui/certificates")
        toggle.focus()
        tab.keyboard.press("Enter")
        expect(toggle).to_have_attribute("aria-expanded", "true")
        tab.keyboard.press("Escape")
        expect(toggle).to_have_attribute("aria-expanded", "false")
        expect(toggle).to_be_focused()


def test_tables_show_their_actions_on_a_phone(
    browser: Browser, server: Server, content: dict[str, str]
) -> None:
    """The partner list stacks into cards; a partner's tables scroll inside their box."""
    with open_tab(browser, server) as tab:
        tab.set_viewport_size({"width": 390, "height": 844})
        sign_in_tab(tab, *server.admin)
        tab.goto(f"/ui/partners?q={content['pid'][:10]}")
        delete = tab.get_by_role("link", name=f"Delete {content['pid']}")
        expect(delete).to_be_visible()
        box = delete.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390
        shot(tab, "partners-phone")
        tab.goto(f"/ui/partners/{content['pid']}")
        strings = tab.locator("section[aria-labelledby=string-parameters]")
        edit = strings.get_by_role("link", name=f"Edit {LONG}")
        edit.scroll_into_view_if_needed()
        expect(edit).to_be_in_viewport()
        edit.focus()
        tab.keyboard.press("Enter")
        expect(tab.get_by_role("heading", level=1)).to_contain_text(LONG)
        shot(tab, "string-parameter-phone")


def test_forms_submit_with_enter(page: Page, api: Api, pid: str) -> None:
    page.goto("/ui/new-partner")
    page.get_by_label("Partner ID").fill(pid)
    page.get_by_label("ID", exact=True).fill("ADDRESS")
    page.get_by_label("ID", exact=True).press("Enter")
    expect(page.get_by_role("status")).to_contain_text(f"Partner '{pid}' created")
    assert api.get(f"StringParameters(Pid='{pid}',Id='ADDRESS')").status_code == 200
    page.goto("/ui/partners")
    page.get_by_label("Find partners").fill(pid)
    page.get_by_label("Find partners").press("Enter")
    expect(page.get_by_role("link", name=pid, exact=True)).to_be_visible()

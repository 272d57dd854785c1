"""The newer pages on a desktop (1280×800) and a phone (390×844): search, the bulk grid,
where used, documents, users and clients, import and export, a partner's history, rename
and copy. No page body scrolls sideways, the whole menu is reachable (behind the Menu
button on a phone), and each page's main action works from the keyboard."""

from __future__ import annotations

import base64
import io
import re
import uuid
import zipfile

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from ..conftest import Api, Server
from .conftest import shot
from .test_layout import overflow, smallest_phone_fits
from .test_search_everywhere import assert_fits

MENU = ("Partners", "Certificates", "Mapping rules", "Monitor", "Flows", "Bulk", "Users")
XSLT = b"""<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><out><xsl:value-of select="/in"/></out></xsl:template>
</xsl:stylesheet>
"""
LONG = "https://receiver.example/" + "long-path-segment/" * 20


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def content(server: Server) -> dict[str, str]:
    """A partner of every kind with long values and a history, a user and an OAuth client."""
    tag = uuid.uuid4().hex[:8]
    pid = f"Phone_{tag}_" + "p" * 30
    user = f"phone_user_{tag}"
    with Api(server) as api:
        for entity_set, body in (
            ("StringParameters", {"Pid": pid, "Id": "ADDRESS", "Value": LONG}),
            ("StringParameters", {"Pid": pid, "Id": "TIMEOUT_" + "T" * 50, "Value": "10"}),
            (
                "BinaryParameters",
                {"Pid": pid, "Id": "MAP", "ContentType": "xsl", "Value": b64(XSLT)},
            ),
            ("AlternativePartners", {"Pid": pid, "Agency": "GS1", "Scheme": "GLN", "Id": "4" * 40}),
            ("AuthorizedUsers", {"Pid": pid, "User": f"sender_{tag}_" + "u" * 40}),
        ):
            assert api.post(entity_set, json=body).status_code == 201, body
        key = f"StringParameters(Pid='{pid}',Id='ADDRESS')"
        assert api.put(key, json={"Value": LONG + "v2"}).status_code == 204
    server.add_user(user, "Pw-" + tag, "AuthGroup.Administrator")
    return {"tag": tag, "pid": pid, "user": user}


def pages(c: dict[str, str]) -> list[str]:
    pid = c["pid"]
    return [
        f"/ui/search?q={c['tag']}",
        "/ui/grid",
        f"/ui/grid?set=string-parameters&filter=Pid eq '{pid}'",
        f"/ui/grid?set=binary-parameters&filter=Pid eq '{pid}'",
        f"/ui/grid?set=alternative-partners&filter=Pid eq '{pid}'",
        f"/ui/grid?set=authorized-users&filter=Pid eq '{pid}'",
        f"/ui/usage?pid={pid}",
        f"/ui/usage?pid={pid}&id=ADDRESS",
        f"/ui/documents/{pid}/MAP",
        f"/ui/new-document?pid={pid}",
        "/ui/accounts",
        f"/ui/accounts/users/{c['user']}",
        "/ui/import",
        f"/ui/partners/{pid}/history",
        f"/ui/partners/{pid}/rename",
        f"/ui/partners/{pid}/copy",
    ]


def size_of(tab: Page) -> str:
    return "phone" if tab.viewport_size["width"] < 500 else "desktop"  # type: ignore[index]


def fits(tab: Page) -> None:
    """Neither the page nor anything in its body reaches past the window's right edge."""
    assert_fits(tab)
    assert overflow(tab) <= 0, f"{tab.url} is wider than {tab.viewport_size}"


def open_menu(tab: Page) -> None:
    """On a phone, opens the menu with its button; on a desktop the menu is already shown."""
    toggle = tab.get_by_role("button", name="Menu")
    if size_of(tab) == "phone":
        expect(toggle).to_have_attribute("aria-expanded", "false")
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
    else:
        expect(toggle).to_be_hidden()


def menu_reachable(tab: Page) -> None:
    width = tab.viewport_size["width"]  # type: ignore[index]
    open_menu(tab)
    nav = tab.get_by_role("navigation", name="Main")
    for name in MENU:
        link = nav.get_by_role("link", name=name, exact=True)
        expect(link).to_be_visible()
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, name
    expect(nav.get_by_label("Search everywhere")).to_be_visible()
    expect(nav.get_by_role("button", name="Sign out")).to_be_visible()


def test_every_new_page_fits_and_keeps_its_menu(sized: Page, content: dict[str, str]) -> None:
    wide, broken = {}, {}
    for path in pages(content):
        answer = sized.goto(path)
        if answer is None or answer.status != 200:
            broken[path] = answer and answer.status
            continue
        try:
            fits(sized)
        except AssertionError as exc:
            wide[path] = str(exc).splitlines()[0]
        menu_reachable(sized)
        assert overflow(sized) <= 0, f"the open menu makes {path} wider than the window"
    assert broken == {}, broken
    assert wide == {}, f"pages wider than {sized.viewport_size}: {wide}"


def test_every_new_page_fits_the_smallest_phone(
    browser: Browser, server: Server, content: dict[str, str]
) -> None:
    smallest_phone_fits(browser, server, pages(content))


def test_search_from_the_menu_by_keyboard(sized: Page, content: dict[str, str]) -> None:
    sized.goto("/ui/partners")
    open_menu(sized)
    box = sized.get_by_label("Search everywhere")
    box.focus()
    sized.keyboard.type(content["tag"])
    sized.keyboard.press("Enter")
    sized.wait_for_url(re.compile(r"/ui/search\?q="))
    expect(sized.get_by_role("link", name=content["pid"]).first).to_be_visible()
    fits(sized)
    shot(sized, f"phone-pages-search-{size_of(sized)}")


def test_bulk_change_previewed_and_applied_by_keyboard(
    sized: Page, api: Api, content: dict[str, str]
) -> None:
    pid = f"Grid_{uuid.uuid4().hex[:8]}"
    for ident in ("A", "B"):
        assert (
            api.post("StringParameters", json={"Pid": pid, "Id": ident, "Value": "old"}).status_code
            == 201
        )
    sized.goto("/ui/grid")
    sized.get_by_label("$filter").fill(f"Pid eq '{pid}'")
    sized.get_by_label("$filter").press("Enter")
    expect(sized.get_by_role("row")).to_have_count(3)
    fits(sized)
    for ident in ("A", "B"):
        check = sized.get_by_label(f"Select {ident} of {pid}")
        check.focus()
        sized.keyboard.press("Space")
        expect(check).to_be_checked()
    sized.get_by_label("New value").fill("new")
    set_column = sized.get_by_role("button", name="Set column…")
    set_column.focus()
    sized.keyboard.press("Enter")
    expect(sized.get_by_role("heading", level=1)).to_have_text("Set Value of 2 string parameters")
    fits(sized)
    width = sized.viewport_size["width"]  # type: ignore[index]
    for cell in sized.locator("td.changed").all():
        box = cell.bounding_box()
        assert box is not None and box["x"] + box["width"] <= width, "the new value is cut off"
    menu_reachable(sized)
    shot(sized, f"phone-pages-grid-preview-{size_of(sized)}")
    values = api.get("StringParameters", params={"$filter": f"Pid eq '{pid}'"}).json()["d"]
    assert {r["Value"] for r in values["results"]} == {"old"}, "a preview changes nothing"
    confirm = sized.get_by_role("button", name="Confirm: edit 2")
    confirm.focus()
    sized.keyboard.press("Enter")
    expect(sized.locator(".flash")).to_have_text("2 string parameters changed.")
    fits(sized)
    values = api.get("StringParameters", params={"$filter": f"Pid eq '{pid}'"}).json()["d"]
    assert {r["Value"] for r in values["results"]} == {"new"}


def test_add_an_oauth_client_by_keyboard(sized: Page, server: Server) -> None:
    name = f"phone_client_{uuid.uuid4().hex[:6]}"
    sized.goto("/ui/accounts")
    summary = sized.get_by_text("Add an OAuth client")
    summary.focus()
    sized.keyboard.press("Enter")
    field = sized.get_by_label("Client ID")
    expect(field).to_be_visible()
    fits(sized)
    field.fill(name)
    field.press("Enter")
    expect(sized.locator(".flash")).to_contain_text("shown only this once")
    expect(sized.locator("#secret")).not_to_be_empty()
    fits(sized)
    menu_reachable(sized)
    shot(sized, f"phone-pages-client-secret-{size_of(sized)}")
    sized.get_by_role("link", name="Done").click()
    sized.get_by_role("link", name=f"Manage {name}").click()
    expect(sized.get_by_role("heading", name="Roles")).to_be_visible()
    fits(sized)
    menu_reachable(sized)
    shot(sized, f"phone-pages-client-{size_of(sized)}")
    token = server.url + "/oauth/token"
    assert token  # the client's token endpoint is the accounts test's subject


def test_save_a_document_by_keyboard(sized: Page, api: Api) -> None:
    pid = f"Doc_{uuid.uuid4().hex[:8]}"
    body = {"Pid": pid, "Id": "CONF", "ContentType": "json", "Value": b64(b'{"a": 1}')}
    assert api.post("BinaryParameters", json=body).status_code == 201
    sized.goto(f"/ui/documents/{pid}/CONF")
    fits(sized)
    editor = sized.get_by_label("Content of CONF")
    editor.fill('{"a": 2, "long": "' + "x" * 300 + '"}')
    save = sized.get_by_role("button", name="Check and save")
    save.focus()
    sized.keyboard.press("Enter")
    expect(sized.locator(".flash")).to_contain_text("CONF")
    fits(sized)
    menu_reachable(sized)
    shot(sized, f"phone-pages-document-{size_of(sized)}")
    stored = api.get(f"BinaryParameters(Pid='{pid}',Id='CONF')").json()["d"]["Value"]
    assert base64.b64decode(stored).startswith(b'{"a": 2')


def test_where_used_by_keyboard(sized: Page, content: dict[str, str]) -> None:
    sized.goto(f"/ui/usage?pid={content['pid']}")
    field = sized.get_by_label("Parameter ID")
    field.fill("ADDRESS")
    field.press("Enter")
    sized.wait_for_url("**id=ADDRESS")
    fits(sized)
    menu_reachable(sized)


def _zip(pid: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(
            f"partner-directory/{pid}/String.properties",
            f"ADDRESS={LONG}\nTIMEOUT=30\n",
        )
        archive.writestr(f"partner-directory/{pid}/Binary/MAP.xsl", XSLT)
        archive.writestr(
            f"partner-directory/{pid}/AlternativePartners.yaml",
            f"- Agency: GS1\n  Id: '{uuid.uuid4().int:040d}'\n  Scheme: GLN\n",
        )
    return out.getvalue()


def test_import_a_zip_see_the_plan_and_apply_it(sized: Page, api: Api, tmp_path) -> None:  # noqa: ANN001
    pid = f"Zip_{uuid.uuid4().hex[:8]}_" + "z" * 30
    upload = tmp_path / "pd.zip"
    upload.write_bytes(_zip(pid))
    sized.goto("/ui/partners")
    open_menu(sized)
    sized.get_by_role("navigation", name="Main").get_by_role("link", name="Partners").click()
    sized.get_by_role("link", name="Import").click()
    expect(sized.get_by_role("heading", level=1)).to_have_text("Import partners")
    fits(sized)
    sized.get_by_label("Zip file").set_input_files(str(upload))
    show = sized.get_by_role("button", name="Show the plan")
    show.focus()
    sized.keyboard.press("Enter")
    expect(sized.get_by_role("heading", level=1)).to_have_text("Import plan")
    expect(sized.locator("#plan-summary")).to_contain_text("4 to create, 0 to change, 0 to delete")
    expect(sized.get_by_role("heading", name=pid)).to_be_visible()
    fits(sized)
    menu_reachable(sized)
    shot(sized, f"phone-pages-import-plan-{size_of(sized)}")
    assert api.get(f"StringParameters(Pid='{pid}',Id='TIMEOUT')").status_code == 404
    apply = sized.get_by_role("button", name="Apply these changes")
    apply.focus()
    sized.keyboard.press("Enter")
    expect(sized.locator(".flash")).to_contain_text("Imported:")
    fits(sized)
    assert api.get(f"StringParameters(Pid='{pid}',Id='TIMEOUT')").json()["d"]["Value"] == "30"
    got = api.get(f"BinaryParameters(Pid='{pid}',Id='MAP')").json()["d"]["Value"]
    assert base64.b64decode(got) == XSLT


def test_export_the_ticked_partner(sized: Page, content: dict[str, str]) -> None:
    pid = content["pid"]
    sized.goto(f"/ui/partners?q={pid}")
    fits(sized)
    tick = sized.get_by_label(f"Select {pid} for export")
    tick.focus()
    sized.keyboard.press("Space")
    with sized.expect_download() as info:
        sized.get_by_role("button", name="Export").click()
    data = info.value.path().read_bytes()  # type: ignore[union-attr]
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert {n.split("/")[1] for n in names} == {pid}
    assert f"partner-directory/{pid}/Binary/MAP.xsl" in names


def test_copy_a_partner_by_keyboard(sized: Page, api: Api) -> None:
    pid = f"Move_{uuid.uuid4().hex[:8]}"
    assert (
        api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).status_code == 201
    )
    sized.goto(f"/ui/partners/{pid}")
    sized.get_by_role("link", name="Copy…").click()
    field = sized.get_by_label("Copy to partner")
    field.fill(pid + "_copy")
    fits(sized)
    field.press("Enter")
    expect(sized).to_have_url(re.compile(rf"/ui/partners/{pid}_copy$"))
    fits(sized)
    assert api.get(f"StringParameters(Pid='{pid}_copy',Id='A')").json()["d"]["Value"] == "1"


def lines_of(cell: Locator) -> int:
    """How many lines the first text (or link) of an element takes up."""
    return int(
        cell.evaluate(
            """e => { const r = document.createRange(); r.selectNodeContents(e.firstChild);
            return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; }"""
        )
    )


def test_grid_and_history_keep_ids_and_field_names_whole(
    sized: Page, content: dict[str, str]
) -> None:
    """On a phone the grid scrolls inside its box rather than breaking an ID letter by
    letter, and a history diff's field names stay on one line."""
    pid = content["pid"]
    sized.goto(f"/ui/grid?set=string-parameters&filter=Pid eq '{pid}'")
    cells = sized.locator("#grid td.mono")
    for text in (pid, "ADDRESS"):
        assert lines_of(cells.filter(has_text=text).first) == 1, f"{text} wraps"
    fits(sized)
    sized.goto(f"/ui/partners/{pid}/history")
    assert lines_of(sized.locator("table.diff th[scope=row]").filter(has_text="Value").first) == 1
    fits(sized)

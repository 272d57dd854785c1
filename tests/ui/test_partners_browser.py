"""A person at /ui in Chromium: partners, their parameters, users and deletion."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from ..conftest import Api, Server
from .conftest import open_tab, shot, sign_in_tab

XSLT = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- orders for Receiver_1 -->
<xsl:stylesheet version="2.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/Order">
    <PurchaseOrder number="{@id}"><xsl:value-of select="Buyer"/> &amp; co</PurchaseOrder>
  </xsl:template>
</xsl:stylesheet>
"""


def section(page: Page, slug: str):  # noqa: ANN201 - a Playwright Locator
    return page.locator(f"section[aria-labelledby={slug}]")


def test_sign_in_shows_the_partner_list(browser: Browser, server: Server) -> None:
    with open_tab(browser, server) as tab:
        tab.goto("/ui/partners?q=Receiver")
        expect(tab).to_have_url(re.compile(r"/ui/signin\?next="))
        shot(tab, "signin")
        tab.get_by_label("User name").fill(server.admin[0])
        tab.get_by_label("Password").fill("not the password")
        tab.get_by_role("button", name="Sign in").click()
        expect(tab.get_by_role("alert")).to_contain_text("user name or the password is wrong")
        tab.get_by_label("Password").fill(server.admin[1])
        tab.get_by_role("button", name="Sign in").click()
        expect(tab).to_have_url(re.compile(r"/ui/partners\?q=Receiver$"))
        expect(tab.get_by_role("heading", name="Partners")).to_be_visible()
        tab.get_by_role("button", name="Sign out").click()
        expect(tab.get_by_role("status")).to_contain_text("You are signed out")
        tab.goto("/ui/partners")
        expect(tab).to_have_url(re.compile(r"/ui/signin"))


def test_create_sender_cert_by_adding_an_authorized_user(page: Page, api: Api) -> None:
    if api.get("Partners('Sender_CERT')").status_code == 200:
        assert api.delete("Partners('Sender_CERT')").status_code in (200, 204)
    api.delete("AuthorizedUsers('user_for_sender_cert')")

    page.get_by_role("link", name="New partner").click()
    page.get_by_role("link", name="Authorized user", exact=True).click()
    page.get_by_label("Partner ID").fill("Sender_CERT")
    page.get_by_label("User", exact=True).fill("User_For_Sender_Cert")
    shot(page, "new-partner")
    page.get_by_role("button", name="Create partner").click()

    expect(page).to_have_url(re.compile(r"/ui/partners/Sender_CERT$"))
    expect(page.get_by_role("status")).to_contain_text("Partner 'Sender_CERT' created")
    users = section(page, "authorized-users")
    expect(users.get_by_role("cell", name="user_for_sender_cert", exact=True)).to_be_visible()
    expect(users).to_contain_text(api.user)
    shot(page, "partner")

    stored = api.get("AuthorizedUsers('user_for_sender_cert')").json()["d"]
    assert stored["Pid"] == "Sender_CERT"
    assert stored["CreatedBy"] == stored["LastModifiedBy"] == api.user


def test_string_parameter_add_edit_delete(page: Page, api: Api, pid: str) -> None:
    api.post("AuthorizedUsers", json={"Pid": pid, "User": f"u_{pid}"}).raise_for_status()
    page.goto(f"/ui/partners/{pid}")
    strings = section(page, "string-parameters")
    expect(strings).to_contain_text("No string parameters")
    strings.get_by_role("link", name="Add string parameter").click()
    page.get_by_label("ID", exact=True).fill("ADDRESS")
    page.get_by_label("Value").fill("https://r1.example/cxf/receiver_1")
    page.get_by_role("button", name="Add").click()

    expect(page.get_by_role("status")).to_contain_text("String parameter 'ADDRESS' added")
    expect(strings).to_contain_text("https://r1.example/cxf/receiver_1")
    strings.get_by_role("link", name="Edit ADDRESS").click()
    shot(page, "string-parameter")
    page.get_by_label("Value").fill("https://r1.example/cxf/v2")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("String parameter 'ADDRESS' saved")
    expect(strings).to_contain_text("https://r1.example/cxf/v2")
    assert api.get(f"StringParameters(Pid='{pid}',Id='ADDRESS')").json()["d"]["Value"] == (
        "https://r1.example/cxf/v2"
    )

    strings.get_by_role("link", name="Delete ADDRESS").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Delete string parameter")
    shot(page, "delete-string-parameter")
    page.get_by_role("button", name="Delete string parameter").click()
    expect(page.get_by_role("status")).to_contain_text("String parameter 'ADDRESS' deleted")
    expect(strings).to_contain_text("No string parameters")
    assert api.get(f"StringParameters(Pid='{pid}',Id='ADDRESS')").status_code == 404


def test_upload_a_binary_parameter_and_see_it_highlighted(
    page: Page, api: Api, pid: str, tmp_path: Path
) -> None:
    api.post("AuthorizedUsers", json={"Pid": pid, "User": f"u_{pid}"}).raise_for_status()
    upload = tmp_path / "order-mapping.xsl"
    upload.write_bytes(XSLT)
    page.goto(f"/ui/partners/{pid}/binary-parameters/new")
    page.get_by_label("ID", exact=True).fill("MAPPING")
    page.get_by_label("Upload a file").set_input_files(str(upload))
    page.get_by_role("button", name="Add").click()

    expect(page.get_by_role("status")).to_contain_text("Binary parameter 'MAPPING' added")
    binaries = section(page, "binary-parameters")
    expect(binaries.get_by_text("xsl", exact=True)).to_be_visible()
    expect(binaries).to_contain_text(f"{len(XSLT)} B")
    binaries.get_by_role("link", name="View MAPPING").click()

    code = page.get_by_role("region", name="XML content of MAPPING")
    expect(code.locator(".hl-tag", has_text="xsl:stylesheet").first).to_be_visible()
    expect(code.locator(".hl-comment")).to_have_text("<!-- orders for Receiver_1 -->")
    expect(code.locator(".hl-string", has_text='"/Order"')).to_be_visible()
    shot(page, "binary-parameter")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download").click()
    assert download.value.suggested_filename == "MAPPING.xsl"
    assert Path(download.value.path()).read_bytes() == XSLT

    stored = api.get(f"BinaryParameters(Pid='{pid}',Id='MAPPING')").json()["d"]
    assert stored["ContentType"] == "xsl"
    assert base64.b64decode(stored["Value"]) == XSLT


def test_a_bad_pid_is_refused_next_to_its_field(page: Page, api: Api) -> None:
    page.goto("/ui/new-partner")
    page.get_by_label("Partner ID").fill("Sender CERT!")
    page.get_by_label("ID", exact=True).fill("ADDRESS")
    page.get_by_label("Value").fill("https://example.com")
    page.get_by_role("button", name="Create partner").click()

    pid_input = page.get_by_label("Partner ID")
    expect(pid_input).to_have_attribute("aria-invalid", "true")
    expect(pid_input).to_have_value("Sender CERT!")
    error = page.locator("#error-Pid")
    expect(error).to_contain_text("contains characters that are not allowed (' ' '!')")
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    expect(page.get_by_label("Value")).to_have_value("https://example.com")
    shot(page, "new-partner-error")
    assert api.get("Partners('Sender CERT!')").status_code in (400, 404)


def test_delete_a_partner_through_its_confirmation(page: Page, api: Api, pid: str) -> None:
    for entity_set, body in (
        ("StringParameters", {"Id": "ADDRESS", "Value": "https://r.example"}),
        ("StringParameters", {"Id": "NAME", "Value": "Receiver"}),
        ("UserCredentialParameters", {"Id": "LOGIN", "User": "r", "Password": "pw"}),
        ("AlternativePartners", {"Agency": "GS1", "Scheme": "GLN", "Id": pid[-10:]}),
        ("AuthorizedUsers", {"User": f"u_{pid}"}),
    ):
        api.post(entity_set, json={"Pid": pid, **body}).raise_for_status()
    page.goto(f"/ui/partners?q={pid}")
    page.get_by_role("link", name=pid, exact=True).click()
    page.get_by_role("link", name="Delete partner…").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Delete partner {pid}?")
    expect(page.locator(".doomed")).to_contain_text("2 string parameters")
    expect(page.locator(".doomed")).to_contain_text("1 user credential")
    expect(page.locator(".doomed")).to_contain_text(f"u_{pid.lower()}")
    shot(page, "delete-partner")
    page.get_by_label("Type DELETE to confirm").fill("DELETE")
    page.get_by_role("button", name=f"Delete {pid} and its 5 entities").click()

    expect(page).to_have_url(re.compile(r"/ui/partners$"))
    expect(page.get_by_role("status")).to_contain_text(f"Partner '{pid}' and all its parts deleted")
    assert api.get(f"Partners('{pid}')").status_code == 404
    page.goto(f"/ui/partners/{pid}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"There is no partner {pid}")


def test_credentials_never_show_the_password(page: Page, api: Api, pid: str) -> None:
    api.post("AuthorizedUsers", json={"Pid": pid, "User": f"u_{pid}"}).raise_for_status()
    page.goto(f"/ui/partners/{pid}/credentials/new")
    page.get_by_label("ID", exact=True).fill("RECEIVER_LOGIN")
    page.get_by_label("User", exact=True).fill("r1")
    page.get_by_label("Password").fill("s3cret-Pa55")
    page.get_by_role("button", name="Add").click()
    credentials = section(page, "credentials")
    expect(credentials).to_contain_text("stored, not shown")
    assert "s3cret-Pa55" not in page.content()

    credentials.get_by_role("link", name="Change RECEIVER_LOGIN").click()
    expect(page.get_by_label("New password")).to_have_value("")
    assert "s3cret-Pa55" not in page.content()
    page.get_by_label("New password").fill("n3w-Pa55")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("User credential 'RECEIVER_LOGIN' saved")
    stored = api.get(f"UserCredentialParameters(Pid='{pid}',Id='RECEIVER_LOGIN')").json()["d"]
    assert stored["User"] == "r1"
    assert stored["LastModifiedBy"] == api.user


def test_alternative_partner_and_moving_a_user(page: Page, api: Api, pid: str) -> None:
    other = pid + "_B"
    api.post("AuthorizedUsers", json={"Pid": pid, "User": f"mover_{pid}"}).raise_for_status()
    api.post("StringParameters", json={"Pid": pid, "Id": "KEEP", "Value": "x"}).raise_for_status()
    api.post("StringParameters", json={"Pid": other, "Id": "X", "Value": "y"}).raise_for_status()
    page.goto(f"/ui/partners/{pid}/alternative-partners/new")
    page.get_by_label("Agency").fill("GS1")
    page.get_by_label("Scheme").fill("GLN")
    page.get_by_label("ID", exact=True).fill("4012345000009")
    page.get_by_role("button", name="Add").click()
    expect(section(page, "alternative-partners")).to_contain_text("4012345000009")

    users = section(page, "authorized-users")
    users.get_by_role("link", name=f"Move mover_{pid.lower()}").click()
    page.get_by_label("Partner", exact=True).fill(other)
    page.get_by_role("button", name="Move").click()
    expect(page).to_have_url(re.compile(rf"/ui/partners/{other}#authorized-users$"))
    expect(page.get_by_role("status")).to_contain_text(f"moved here from partner '{pid}'")
    expect(section(page, "authorized-users")).to_contain_text(f"mover_{pid.lower()}")


def test_forms_work_without_javascript(
    browser: Browser, server: Server, api: Api, pid: str
) -> None:
    api.post("AuthorizedUsers", json={"Pid": pid, "User": f"u_{pid}"}).raise_for_status()
    with open_tab(browser, server, javascript=False) as tab:
        sign_in_tab(tab, *server.admin)
        tab.goto(f"/ui/partners/{pid}/string-parameters/new")
        tab.get_by_label("ID", exact=True).fill("NOJS")
        tab.get_by_label("Value").fill("plain form")
        tab.get_by_role("button", name="Add").click()
        expect(tab.get_by_role("status")).to_contain_text("String parameter 'NOJS' added")
    assert api.get(f"StringParameters(Pid='{pid}',Id='NOJS')").json()["d"]["Value"] == "plain form"


def test_every_field_has_a_label_and_the_keyboard_reaches_it(page: Page) -> None:
    for path in ("/ui/new-partner?kind=binary-parameters", "/ui/new-partner?kind=credentials"):
        page.goto(path)
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(e => !e.labels || e.labels.length === 0).map(e => e.name)"""
        )
        assert unlabelled == [], path
    page.goto("/ui/partners")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="New partner")).to_be_focused()

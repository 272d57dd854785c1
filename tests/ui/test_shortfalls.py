"""What a new administrator ran into in Chromium, each now done as they expected."""

from __future__ import annotations

import base64
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from partnergate.security import pki

from ..conftest import Api, Server, start_server, stop_server
from .conftest import open_tab, shot, sign_in_tab

ROOT = Path(__file__).resolve().parents[2]


def section(page: Page, slug: str):  # noqa: ANN201 - a Playwright Locator
    return page.locator(f"section[aria-labelledby={slug}]")


def test_a_pasted_pid_past_the_limit_is_said_not_cut(page: Page, api: Api) -> None:
    long_pid = "P" + "x" * 99
    page.goto("/ui/new-partner")
    field = page.get_by_label("Partner ID")
    field.fill(long_pid)
    expect(field).to_have_value(long_pid)  # nothing cut off while typing or pasting
    expect(page.locator("#limit-field-Pid")).to_have_text("100 characters: at most 60 are allowed")
    page.get_by_label("ID", exact=True).fill("ADDRESS")
    page.get_by_role("button", name="Create partner").click()
    expect(page.locator("#error-Pid")).to_contain_text(
        "Partner ID is 100 characters long; at most 60 are allowed"
    )
    expect(page.get_by_label("Partner ID")).to_have_value(long_pid)
    assert (
        api.get(
            "StringParameters", params={"$filter": "Id eq 'ADDRESS' and startswith(Pid,'Pxxxx')"}
        ).json()["d"]["results"]
        == []
    )


def test_no_field_cuts_what_is_pasted_into_it(
    page: Page, api: Api, pid: str, tmp_path: Path
) -> None:
    """The grid's target, a document's partner and ID, an account's name: a value past the
    limit stays whole and is said to be too long; a document ID up to the store's 1500
    characters is kept whole."""
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).raise_for_status()
    cases = [
        (f"/ui/grid?set=string-parameters&filter=Pid eq '{pid}'", "", "Copy to partner", 60),
        ("/ui/new-document", "", "Partner ID", 60),
        ("/ui/new-document", "", "Parameter ID", 1500),
        ("/ui/accounts", "Add a user", "User name", 150),
    ]
    for path, opener, label, limit in cases:
        page.goto(path)
        if opener:
            page.get_by_text(opener, exact=True).click()
        field = page.get_by_label(label)
        long = "L" * (limit + 40)
        field.fill(long)
        expect(field).to_have_value(long)
        note = page.locator(f"#limit-{field.get_attribute('id')}")
        expect(note).to_have_text(f"{limit + 40} characters: at most {limit} are allowed")

    ident = "MAPPING_" + "m" * 92
    stylesheet = tmp_path / "map.xml"
    stylesheet.write_bytes(b"<a/>")
    page.goto(f"/ui/new-document?pid={pid}")
    page.get_by_label("Parameter ID").fill(ident)
    page.get_by_label("File", exact=True).set_input_files(str(stylesheet))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_contain_text(f"Binary parameter '{ident}' added")
    assert api.get(f"BinaryParameters(Pid='{pid}',Id='{ident}')").status_code == 200


def test_the_grid_and_document_pages_name_a_field_by_its_label(
    page: Page, api: Api, pid: str, tmp_path: Path
) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).raise_for_status()
    long_pid = "T" * 100
    page.goto(f"/ui/grid?set=string-parameters&filter=Pid eq '{pid}'")
    page.get_by_label(f"Select A of {pid}").check()
    page.get_by_label("Copy to partner").fill(long_pid)
    page.get_by_role("button", name="Copy…").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Partner ID is 100 characters long; at most 60 are allowed"
    )
    assert "Property '" not in page.content()

    document = tmp_path / "a.xml"
    document.write_bytes(b"<a/>")
    page.goto("/ui/new-document")
    page.get_by_label("Partner ID").fill(long_pid)
    page.get_by_label("File", exact=True).set_input_files(str(document))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Partner ID is 100 characters long; at most 60 are allowed"
    )
    assert "Property '" not in page.content()
    assert api.get(f"Partners('{long_pid}')").status_code in (400, 404)

    for path, fills, said in (
        (f"/ui/partners/{pid}/rename", {"New partner ID": long_pid}, "New partner ID is 100"),
        (f"/ui/partners/{pid}/copy", {"Copy to partner": long_pid}, "Copy to partner is 100"),
        (
            f"/ui/partners/{pid}/string-parameters/copy?id=A",
            {"Copy to partner": pid, "ID of the copy": "I" * 1600},
            "ID of the copy is 1600",
        ),
    ):
        page.goto(path)
        for label, value in fills.items():
            page.get_by_label(label).fill(value)
        page.get_by_label(label).press("Enter")
        expect(page.get_by_role("alert")).to_contain_text(said)
        expect(page.get_by_label(label)).to_have_value(value)
        assert "Property '" not in page.content(), path
    assert api.get(f"StringParameters(Pid='{pid}',Id='A')").status_code == 200


def test_every_mistake_of_a_form_shows_at_once_by_its_label(page: Page) -> None:
    page.goto("/ui/new-partner?kind=credentials")
    page.get_by_label("Partner ID").fill("Sender CERT")
    page.get_by_label("ID", exact=True).fill("bad id")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Create partner").click()
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("Nothing was saved")
    expect(summary.get_by_role("listitem")).to_have_count(3)
    expect(page.locator("#error-Pid")).to_contain_text("Partner ID contains characters")
    expect(page.locator("#error-Id")).to_contain_text("ID contains characters")
    expect(page.locator("#error-User")).to_contain_text("Enter the user")
    assert "Property '" not in page.content()
    shot(page, "all-errors")


def test_a_duplicate_names_and_links_the_partner_that_has_it(
    page: Page, api: Api, pid: str
) -> None:
    owner = pid + "_OWNER"
    gln = "40" + uuid.uuid4().hex[:11]
    api.post(
        "AlternativePartners", json={"Pid": owner, "Agency": "GS1", "Scheme": "GLN", "Id": gln}
    ).raise_for_status()
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).raise_for_status()
    page.goto(f"/ui/partners/{pid}/alternative-partners/new")
    page.get_by_label("Agency").fill("GS1")
    page.get_by_label("Scheme").fill("GLN")
    page.get_by_label("ID", exact=True).fill(gln)
    page.get_by_role("button", name="Add").click()
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text(f"GS1 / GLN / {gln} already belongs to partner {owner}")
    assert "Hexagency" not in page.content()
    summary.get_by_role("link", name=owner).click()
    expect(page).to_have_url(re.compile(rf"/ui/partners/{owner}#alternative-partners$"))


def test_a_refused_upload_keeps_its_file_and_junk_is_not_taken_for_xml(
    page: Page, api: Api, pid: str, tmp_path: Path
) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).raise_for_status()
    junk = tmp_path / "mapping.xml"
    junk.write_bytes(base64.b64encode(os.urandom(3000)))
    page.goto(f"/ui/partners/{pid}/binary-parameters/new")
    page.get_by_label("ID", exact=True).fill("MAP PING")
    page.get_by_label("Upload a file").set_input_files(str(junk))
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#error-Id")).to_contain_text("ID contains characters")
    expect(page.locator("#error-Value")).to_contain_text("not well-formed XML")
    expect(page.locator(".kept")).to_contain_text("mapping.xml")
    shot(page, "kept-upload")

    page.get_by_label("ID", exact=True).fill("MAPPING")
    page.get_by_role("button", name="Add").click()  # the kept file, still not XML
    expect(page.locator("#error-Value")).to_contain_text("not well-formed XML")
    assert api.get(f"BinaryParameters(Pid='{pid}',Id='MAPPING')").status_code == 404
    page.get_by_label("Save it anyway").check()
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_role("status")).to_contain_text("Binary parameter 'MAPPING' added")
    stored = api.get(f"BinaryParameters(Pid='{pid}',Id='MAPPING')").json()["d"]
    assert base64.b64decode(stored["Value"]) == junk.read_bytes()


def test_a_refused_document_upload_keeps_its_file(
    page: Page, api: Api, pid: str, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.xml"
    junk.write_bytes(base64.b64encode(os.urandom(3000)))
    page.goto(f"/ui/new-document?pid={pid}")
    page.get_by_label("File", exact=True).set_input_files(str(junk))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#check-result")).to_contain_text("Check failed at line 1")
    expect(page.locator(".kept")).to_contain_text("junk.xml")
    assert api.get(f"BinaryParameters(Pid='{pid}',Id='junk.xml')").status_code == 404
    page.get_by_label("Save even if the check fails").check()
    page.get_by_role("button", name="Upload").click()  # the kept file, not chosen again
    expect(page.get_by_role("status")).to_contain_text("Binary parameter 'junk.xml' added")
    stored = api.get(f"BinaryParameters(Pid='{pid}',Id='junk.xml')").json()["d"]
    assert base64.b64decode(stored["Value"]) == junk.read_bytes()


def test_the_added_row_is_marked_and_its_message_in_view(page: Page, api: Api, pid: str) -> None:
    for n in range(25):
        api.post(
            "StringParameters", json={"Pid": pid, "Id": f"S{n:02d}", "Value": "v"}
        ).raise_for_status()
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"/ui/partners/{pid}/authorized-users/new")
    page.get_by_label("User", exact=True).fill(f"added_{pid}")
    page.get_by_role("button", name="Add").click()
    status = section(page, "authorized-users").get_by_role("status")
    expect(status).to_contain_text(f"Authorized user 'added_{pid.lower()}' added")
    expect(status).to_be_in_viewport()
    row = page.locator("tr.just-added")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(f"added_{pid.lower()}")
    expect(row).to_be_in_viewport()
    assert page.locator(".flash").count() == 1
    shot(page, "just-added")


def test_the_partner_list_tells_counts_address_change_and_total(
    page: Page, api: Api, pid: str
) -> None:
    gln = "41" + uuid.uuid4().hex[:11]
    for entity_set, body in (
        ("StringParameters", {"Id": "ADDRESS", "Value": f"https://{pid.lower()}.example/in"}),
        ("StringParameters", {"Id": "NAME", "Value": "value-" + pid}),
        ("AlternativePartners", {"Agency": "GS1", "Scheme": "GLN", "Id": gln}),
        ("AuthorizedUsers", {"User": f"listed_{pid}"}),
    ):
        api.post(entity_set, json={"Pid": pid, **body}).raise_for_status()
    page.goto("/ui/partners")
    expect(page.locator("#partner-total")).to_have_text(re.compile(r"^\d+ partners?$"))
    for query, matched in (
        (pid, ""),
        (gln, f"alternative ID {gln}"),
        ("value-" + pid, "parameter value value-" + pid),
        (f"listed_{pid}".lower(), f"authorized user listed_{pid.lower()}"),
    ):
        page.get_by_label("Find partners").fill(query)
        page.get_by_role("main").get_by_role("button", name="Search").click()
        expect(page.locator("#partner-total")).to_have_text(f"1 partner found for “{query}”")
        row = page.locator("tbody tr")
        expect(row).to_have_count(1)
        expect(row.get_by_role("link", name=pid, exact=True)).to_be_visible()
        if matched:
            expect(row).to_contain_text("matched " + matched)
        expect(row).to_contain_text(f"https://{pid.lower()}.example/in")
        expect(row).to_contain_text("2 string parameters")
        expect(row).to_contain_text("1 alternative partner")
        expect(row).to_contain_text("1 authorized user")
        expect(row.locator("time")).to_have_count(1)
        expect(row).to_contain_text(api.user)
    shot(page, "partner-list-search")


def test_monospace_fields_show_underscores(page: Page) -> None:
    page.goto("/ui/new-partner")
    page.get_by_label("Partner ID").fill("Sender_CERT")
    room = page.get_by_label("Partner ID").evaluate(
        """e => { const s = getComputedStyle(e);
                  return (e.clientHeight - parseFloat(s.paddingTop) - parseFloat(s.paddingBottom))
                         / parseFloat(s.fontSize); }"""
    )
    assert room >= 1.3, f"the text box is {room:.2f} em tall: underscores are clipped"


def test_deleting_a_partner_asks_to_type_delete(page: Page, api: Api, pid: str) -> None:
    long_id = "L" * 255
    api.post(
        "AlternativePartners", json={"Pid": pid, "Agency": "A", "Scheme": "S", "Id": long_id}
    ).raise_for_status()
    page.goto(f"/ui/partners/{pid}/delete")
    card = page.locator(".danger-card")
    expect(card).to_contain_text("Its only entity goes with it")
    assert "These 1" not in page.content()
    card_box, chip_box = card.bounding_box(), card.locator(".chip").bounding_box()
    assert card_box and chip_box
    assert chip_box["x"] + chip_box["width"] <= card_box["x"] + card_box["width"]
    page.get_by_label("Type DELETE to confirm").fill("delete")
    page.get_by_role("button", name=re.compile(f"^Delete {pid}")).click()
    expect(page.locator("#error-confirm")).to_contain_text("Type DELETE in capitals")
    assert api.get(f"Partners('{pid}')").status_code == 200
    page.get_by_label("Type DELETE to confirm").fill("DELETE")
    page.get_by_label("Type DELETE to confirm").press("Enter")
    expect(page.get_by_role("status")).to_contain_text(f"Partner '{pid}' and all its parts deleted")
    assert api.get(f"Partners('{pid}')").status_code == 404


def test_a_certificate_of_a_user_of_no_partner_can_be_authorised(
    page: Page, api: Api, pid: str, tmp_path: Path
) -> None:
    """The chain file that ``partnergate pki`` writes maps its leaf; then the user is
    authorised for a partner from the certificate's page."""
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).raise_for_status()
    ca = pki.init_ca(tmp_path / "pki")
    name = "chain_" + uuid.uuid4().hex[:8]
    bundle = pki.issue_client(ca, tmp_path / "pki", name, password="pw")
    chain = tmp_path / "pki" / f"{name}-chain.pem"
    assert chain.read_bytes().count(b"BEGIN CERTIFICATE") >= 2
    user = "nobody_" + uuid.uuid4().hex[:8]
    page.goto(f"/ui/new-certificate?user={user}")
    page.get_by_label("Upload a file").set_input_files(str(chain))
    page.get_by_role("button", name="Map certificate").click()
    expect(page.get_by_role("status")).to_contain_text(f"Certificate mapped to user '{user}'")
    page.get_by_role("link", name="authorise").first.click()

    expect(page.locator("dl.facts").first).to_contain_text(
        f"none: {user} is not an authorized user"
    )
    form = page.locator("section[aria-labelledby=authorise]")
    form.get_by_label("Partner ID").fill(pid)
    form.get_by_role("button", name="Authorise").click()
    expect(page.get_by_role("status")).to_contain_text(
        f"User '{user}' is now an authorized user of partner '{pid}'"
    )
    expect(page.locator("dl.facts").first.get_by_role("link", name=pid)).to_be_visible()
    assert api.get(f"AuthorizedUsers('{user}')").json()["d"]["Pid"] == pid
    rows = api.get("CertificateUserMappings", params={"$filter": f"User eq '{user}'"}).json()
    stored = base64.b64decode(rows["d"]["results"][0]["Certificate"])
    assert stored.count(b"BEGIN CERTIFICATE") == 1
    assert stored.strip() == bundle.cert_path.read_bytes().strip()


def test_an_authorised_user_no_one_can_send_as_is_pointed_out(
    page: Page, api: Api, server: Server, pid: str
) -> None:
    """A typed user name is checked: no user, OAuth client, mapped certificate or rule has
    it, so the page says so (saved all the same: the sender may come later)."""
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).raise_for_status()
    typo = "typo_" + uuid.uuid4().hex[:8]
    page.goto(f"/ui/partners/{pid}/authorized-users/new")
    page.get_by_label("User", exact=True).fill(typo)
    page.get_by_role("button", name="Add").click()
    status = section(page, "authorized-users").get_by_role("status")
    expect(status).to_contain_text(f"Authorized user '{typo}' added")
    expect(status).to_contain_text(f"No user, OAuth client or certificate is called '{typo}'")
    expect(status).to_have_class(re.compile(r"\bflash-warn\b"))
    assert api.get(f"AuthorizedUsers('{typo}')").json()["d"]["Pid"] == pid

    local = "Local_" + uuid.uuid4().hex[:8]
    server.add_user(local, "Pw-" + local, "ESBMessaging.send")
    page.goto("/ui/new-partner?kind=authorized-users")
    page.get_by_label("Partner ID").fill(pid + "_2")
    page.get_by_label("User", exact=True).fill(local)
    page.get_by_role("button", name="Create partner").click()
    expect(page.get_by_role("status")).to_contain_text(f"Partner '{pid}_2' created")
    expect(page.get_by_role("status")).not_to_contain_text("No user")
    expect(page.get_by_role("status")).to_have_class(re.compile(r"\bflash-ok\b"))


def test_a_move_to_a_partner_that_does_not_exist_says_it_is_new(
    page: Page, api: Api, pid: str
) -> None:
    """A typo in the target of a move makes a new partner: the page says so."""
    user = "moved_" + uuid.uuid4().hex[:8]
    api.post("AuthorizedUsers", json={"Pid": pid, "User": user}).raise_for_status()
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).raise_for_status()
    page.goto(f"/ui/partners/{pid}/authorized-users/edit?user={user}")
    page.get_by_label("Partner", exact=True).fill(pid + "_typo")
    page.get_by_role("button", name="Move").click()
    status = page.get_by_role("status")
    expect(status).to_contain_text(f"Partner '{pid}_typo' is new")
    expect(status).to_have_class(re.compile(r"\bflash-warn\b"))

    page.goto(f"/ui/partners/{pid}_typo/authorized-users/edit?user={user}")
    page.get_by_label("Partner", exact=True).fill(pid)
    page.get_by_role("button", name="Move").click()
    expect(page.get_by_role("status")).to_contain_text(f"moved here from partner '{pid}_typo'")
    expect(page.get_by_role("status")).not_to_contain_text("is new")
    assert api.get(f"AuthorizedUsers('{user}')").json()["d"]["Pid"] == pid


def test_a_list_past_its_time_limit_is_a_503_page(browser: Browser, tmp_path: Path) -> None:
    """A search that runs past query_time_limit is an error page with its 503, not a 500.

    SQLite of its own, whatever the test store: its deadline is checked every few
    milliseconds of work, which 60,000 rows to search are sure to take.
    """
    db = tmp_path / "slow.db"
    limited = start_server(
        tmp_path, f"sqlite:///{db}", {"PARTNERGATE_QUERY_TIME_LIMIT": "0.000001"}
    )
    try:
        with Api(limited) as api:
            api.post("StringParameters", json={"Pid": "T", "Id": "A", "Value": "v" * 200})
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT * FROM string_parameters").fetchone()
            rows = [(row[0], f"A{n}", *row[2:]) for n in range(60_000)]
            marks = ",".join("?" * len(row))
            conn.executemany(f"INSERT INTO string_parameters VALUES ({marks})", rows)
        with open_tab(browser, limited) as tab:
            sign_in_tab(tab, *limited.admin)
            response = tab.goto("/ui/partners?q=zzz")
            assert response is not None and response.status == 503
            expect(tab.get_by_role("heading", level=1)).to_have_text("Busy, try again")
            expect(tab.locator("main")).to_contain_text("query_time_limit")
            expect(tab.get_by_role("link", name="Back to the partners")).to_be_visible()
    finally:
        stop_server(limited)


def test_the_demo_names_its_ui_and_sigterm_stops_its_server() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "partnergate", "demo", "--keep-running"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        text = "".join(lines)
        found = re.search(r"Admin UI: (http://\S+/ui/) — user (\S+), password (\S+)", text)
        assert found, text
        url, user, password = found.groups()
        assert "==> admin UI: " + url in text
        signin = httpx.get(url, follow_redirects=True, timeout=10)
        assert signin.status_code == 200 and "Sign in" in signin.text
        assert user == "admin" and password
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=3)

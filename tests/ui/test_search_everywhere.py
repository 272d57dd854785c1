"""Search everywhere: the header's box finds partners by anything they are made of."""

from __future__ import annotations

import base64
import uuid
from html import unescape

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, Page, expect

from ..conftest import Api, Server
from .conftest import SIZES, admin_tab, shot, unfold_menu
from .test_certificates_browser import make_certificate

OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const header = document.querySelector('header');
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (header && header.contains(el)) continue;
    const box = el.getBoundingClientRect();
    if (!box.width || box.right <= width + 1) continue;
    let scrolls = false;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden') { scrolls = true; break; }
    }
    if (!scrolls) {
      let path = el.tagName + '.' + el.className + ' ' + Math.round(box.right);
      for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        path += ' < ' + p.tagName + '.' + p.className;
      }
      wide.push(path);
    }
  }
  return wide.slice(0, 5);
}"""


def assert_fits(tab: Page) -> None:
    """Nothing in the page body sticks out sideways; wide tables scroll inside their box.

    The header is left to the layout's own test: its menu collapses on phones.
    """
    tab.wait_for_load_state("load")
    assert tab.evaluate(OVERFLOW) == [], f"wider than the {tab.viewport_size} viewport"


@pytest.fixture(scope="module")
def findable(server: Server) -> dict[str, str]:
    """One partner with one of everything search looks at, under unusual names."""
    tag = uuid.uuid4().hex[:8]
    pid = f"Findme_{tag}"
    cert = make_certificate(f"Subject_{tag}", days=200)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with Api(server) as api:
        bodies = {
            "StringParameters": {
                "Pid": pid,
                "Id": "ADDRESS",
                "Value": f"https://host-{tag}.example",
            },
            "BinaryParameters": {
                "Pid": pid,
                "Id": f"map_{tag}",
                "ContentType": "xsl",
                "Value": base64.b64encode(b"<x/>").decode(),
            },
            "AlternativePartners": {"Pid": pid, "Agency": "GS1", "Scheme": "GLN", "Id": f"40{tag}"},
            "AuthorizedUsers": {"Pid": pid, "User": f"user_{tag}"},
            "CertificateUserMappings": {
                "User": f"user_{tag}",
                "Certificate": base64.b64encode(pem).decode(),
            },
        }
        for entity_set, body in bodies.items():
            done = api.post(entity_set, json=body)
            assert done.status_code == 201, done.text
    return {"tag": tag, "pid": pid, "subject": f"CN=Subject_{tag}"}


@pytest.mark.parametrize(
    ("text", "group", "label"),
    [
        ("findme_{tag}", "Partners (ID)", "{pid}"),
        ("40{tag}", "Alternative partners", "GS1 / GLN / 40{tag}"),
        ("host-{tag}", "String parameters (ID or value)", "ADDRESS"),
        ("map_{tag}", "Binary parameters (ID or content type)", "map_{tag}"),
        ("USER_{tag}", "Authorized users", "user_{tag}"),
        ("subject_{tag}", "Certificates (subject, issuer, thumbprint or user)", "CN=Subject_{tag}"),
    ],
)
def test_each_kind_of_match_is_found(
    ui: httpx.Client, findable: dict[str, str], text: str, group: str, label: str
) -> None:
    page = ui.get("/ui/search", params={"q": text.format(**findable)})
    assert page.status_code == 200
    html = unescape(page.text)
    assert group in html
    assert label.format(**findable) in html


def test_a_thumbprint_finds_the_certificate(
    ui: httpx.Client, findable: dict[str, str], api: Api
) -> None:
    rows = api.get(
        "CertificateUserMappings", params={"$filter": f"User eq 'user_{findable['tag']}'"}
    )
    pem = base64.b64decode(rows.json()["d"]["results"][0]["Certificate"])
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    thumb = x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()
    page = ui.get("/ui/search", params={"q": thumb[10:40].upper()})
    assert findable["subject"] in unescape(page.text)


def test_an_overlong_search_is_a_400(ui: httpx.Client) -> None:
    assert ui.get("/ui/search", params={"q": "x" * 201}).status_code == 400


@pytest.mark.parametrize("size", SIZES)
def test_search_from_the_header(
    browser: Browser, server: Server, findable: dict[str, str], size: str
) -> None:
    with admin_tab(browser, server, size) as tab:
        unfold_menu(tab)
        tab.get_by_role("searchbox", name="Search everywhere").fill("GLN")
        tab.get_by_role("searchbox", name="Search everywhere").press("Enter")
        tab.wait_for_url("**/ui/search?q=GLN")
        tab.get_by_label("Find partners by ID").fill(f"40{findable['tag']}")
        tab.get_by_role("button", name="Search", exact=True).last.click()
        group = tab.get_by_role("region", name="Alternative partners")
        expect(group).to_contain_text(f"GS1 / GLN / 40{findable['tag']}")
        assert_fits(tab)
        shot(tab, f"search-{size}")
        group.get_by_role("link", name=findable["pid"]).click()
        tab.wait_for_url(f"**/ui/partners/{findable['pid']}")


def test_a_group_shows_at_most_twenty_and_says_there_are_more(ui: httpx.Client, api: Api) -> None:
    tag = "many" + uuid.uuid4().hex[:6]
    for i in range(21):
        body = {"Pid": f"{tag}_{i:02d}", "Id": "NOTE", "Value": tag}
        assert api.post("StringParameters", json=body).status_code == 201
    html = unescape(ui.get("/ui/search", params={"q": tag}).text)
    assert f"{tag}_19" in html and f"{tag}_20" not in html
    assert '<span class="count">20+</span>' in html
    assert "More match" in html

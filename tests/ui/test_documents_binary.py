"""Binary parameters as documents: raw files in and out, checked first, edited, tried."""

from __future__ import annotations

import base64
import uuid
from html import unescape
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from ..conftest import Api, Server
from .conftest import SIZES, admin_tab, csrf_of, shot, sign_in
from .test_search_everywhere import assert_fits
from .test_usage_where_used import XSL, mapped  # noqa: F401 - the module's node

BAD_XSLT = f"""<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}">
<xsl:template match="/">
  <xsl:value-of select="foo(("/>
</xsl:template>
</xsl:stylesheet>
"""
SLOW_XSLT = f"""<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}" xmlns:f="urn:loop">
<xsl:function name="f:loop"><xsl:param name="n"/>
  <xsl:sequence select="if ($n lt 0) then 0 else f:loop($n + 1)"/>
</xsl:function>
<xsl:template match="/"><n><xsl:value-of select="f:loop(1)"/></n></xsl:template>
</xsl:stylesheet>
"""


def upload(
    ui: httpx.Client,
    pid: str,
    ident: str,
    name: str,
    content: bytes,
    content_type: str = "auto",
    force: bool = False,
) -> httpx.Response:
    csrf = csrf_of(ui.get("/ui/new-document").text)
    data = {"csrf": csrf, "pid": pid, "id": ident, "ContentType": content_type}
    if force:
        data["force"] = "on"
    return ui.post("/ui/new-document", data=data, files={"File": (name, content)})


def stored(api: Api, pid: str, ident: str) -> bytes | None:
    got = api.get(f"BinaryParameters(Pid='{pid}',Id='{ident}')")
    if got.status_code == 404:
        return None
    return base64.b64decode(got.json()["d"]["Value"])


@pytest.fixture
def node(mapped: tuple[Server, str]) -> Server:  # noqa: F811
    return mapped[0]


@pytest.fixture
def doc_pid() -> str:
    return "Doc_" + uuid.uuid4().hex[:8]


def test_base64_junk_as_xml_is_not_saved_unless_asked(node: Server, doc_pid: str) -> None:
    junk = base64.b64encode(uuid.uuid4().bytes * 50)
    with sign_in(node, *node.admin) as ui, Api(node) as api:
        refused = upload(ui, doc_pid, "JUNK", "junk.xml", junk)
        assert refused.status_code == 422
        html = unescape(refused.text)
        assert "Check failed at line 1" in html and "not well-formed XML" in html
        assert stored(api, doc_pid, "JUNK") is None
        forced = upload(ui, doc_pid, "JUNK", "junk.xml", junk, force=True)
        assert forced.status_code == 303
        assert stored(api, doc_pid, "JUNK") == junk


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("bad.xsl", BAD_XSLT.encode(), "Check failed at line 3"),
        ("bad.json", b'{\n  "a": 1,\n  "b": \n}', "Check failed at line 4"),
        (
            "bad.xsd",
            b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">\n<xs:element/>\n</xs:schema>',
            "Check failed at line 2",
        ),
        ("bad.xml", b"<a>\n<b>\n</a>", "Check failed at line 3"),
    ],
)
def test_each_checked_type_names_the_line(
    node: Server, doc_pid: str, name: str, content: bytes, said: str
) -> None:
    with sign_in(node, *node.admin) as ui, Api(node) as api:
        refused = upload(ui, doc_pid, "X", name, content)
        assert refused.status_code == 422
        assert said in unescape(refused.text)
        assert stored(api, doc_pid, "X") is None


def test_a_good_stylesheet_is_stored_raw_and_downloads_raw(node: Server, doc_pid: str) -> None:
    text = (
        f'<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}">'
        '<xsl:template match="/"><ok/></xsl:template></xsl:stylesheet>'
    )
    with sign_in(node, *node.admin) as ui, Api(node) as api:
        done = upload(ui, doc_pid, "", "good.xslt", text.encode())
        assert done.status_code == 303
        assert stored(api, doc_pid, "good.xslt") == text.encode()
        page = ui.get(f"/ui/documents/{doc_pid}/good.xslt")
        assert page.status_code == 200 and "Try this XSLT" in page.text
        raw = ui.get(
            f"/ui/partners/{doc_pid}/binary-parameters/download", params={"id": "good.xslt"}
        )
        assert raw.content == text.encode()


def test_edit_the_text_in_the_page(node: Server, doc_pid: str) -> None:
    with sign_in(node, *node.admin) as ui, Api(node) as api:
        assert upload(ui, doc_pid, "CONF", "c.json", b'{"a": 1}').status_code == 303
        page = ui.get(f"/ui/documents/{doc_pid}/CONF")
        csrf = csrf_of(page.text)
        bad = ui.post(
            f"/ui/documents/{doc_pid}/CONF",
            data={"csrf": csrf, "action": "save", "Text": '{"a": }'},
        )
        assert bad.status_code == 422
        assert '{"a": }' in unescape(bad.text)  # what was typed stays in the editor
        assert stored(api, doc_pid, "CONF") == b'{"a": 1}'
        good = ui.post(
            f"/ui/documents/{doc_pid}/CONF",
            data={"csrf": csrf, "action": "save", "Text": '{"a": 2}'},
        )
        assert good.status_code == 303
        assert stored(api, doc_pid, "CONF") == b'{"a": 2}'


def test_try_the_stylesheet_with_the_flows_parameters(mapped: tuple[Server, str]) -> None:  # noqa: F811
    server, pid = mapped
    with sign_in(server, *server.admin) as ui:
        page = ui.get(f"/ui/documents/{pid}/MAP")
        assert "greeting=hello" in page.text  # the flow's params, offered
        tried = ui.post(
            f"/ui/documents/{pid}/MAP",
            data={
                "csrf": csrf_of(page.text),
                "action": "try",
                "sample": "<in>abc</in>",
                "params": "greeting=hello",
            },
        )
    assert tried.status_code == 200
    assert "hello-abc" in unescape(tried.text)


def test_a_stylesheet_that_runs_too_long_is_stopped(node: Server, doc_pid: str) -> None:
    with sign_in(node, *node.admin) as ui:
        assert upload(ui, doc_pid, "SLOW", "slow.xsl", SLOW_XSLT.encode()).status_code == 303
        page = ui.get(f"/ui/documents/{doc_pid}/SLOW")
        tried = ui.post(
            f"/ui/documents/{doc_pid}/SLOW",
            data={"csrf": csrf_of(page.text), "action": "try", "sample": "<in/>", "params": ""},
        )
    assert "504: the mapping did not finish within 3 s" in unescape(tried.text)


@pytest.mark.parametrize("size", SIZES)
def test_documents_in_the_browser(
    browser: Browser,
    mapped: tuple[Server, str],  # noqa: F811
    size: str,
    tmp_path: Path,
) -> None:
    server, pid = mapped
    file = tmp_path / "lookup.xml"
    file.write_text("<lookup>\n  <entry/>\n</lookup>\n")
    with admin_tab(browser, server, size) as tab:
        tab.goto(f"/ui/new-document?pid={pid}")
        tab.get_by_label("Parameter ID").fill(f"LOOKUP_{size}")
        tab.get_by_label("File", exact=True).set_input_files(str(file))
        tab.get_by_role("button", name="Upload").click()
        expect(tab.locator(".flash")).to_contain_text(f"Binary parameter 'LOOKUP_{size}' added")
        editor = tab.get_by_label(f"Content of LOOKUP_{size}")
        expect(editor).to_have_value("<lookup>\n  <entry/>\n</lookup>\n")
        assert_fits(tab)
        editor.fill("<lookup>\n  <entry>\n</lookup>\n")
        tab.get_by_role("button", name="Check and save").click()
        expect(tab.locator("#check-result")).to_contain_text("Check failed at line 3")
        expect(editor).to_have_value("<lookup>\n  <entry>\n</lookup>\n")
        assert_fits(tab)
        shot(tab, f"document-check-{size}")

        tab.goto(f"/ui/documents/{pid}/MAP")
        tab.get_by_label("Sample message (XML)").fill("<in>browser</in>")
        tab.get_by_role("button", name="Run").click()
        expect(tab.locator("#try-output")).to_contain_text("hello-browser")
        assert_fits(tab)
        shot(tab, f"document-try-{size}")


def test_a_kept_file_sent_back_by_hand_is_checked_as_an_upload(
    ui: httpx.Client, api: Api, pid: str
) -> None:
    """The refused form's kept file (``Kept``) comes from the client: bytes that are not
    base64 and a DOCTYPE are refused as a chosen file would be, and nothing is stored."""
    doctype = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    for kept, ident in (
        ("not base64 \x00\xff!", "NOT_B64"),
        (base64.b64encode(doctype).decode(), "DOCTYPE"),
        (base64.b64encode(b"\xff\xfe\x00<a/>" * 10).decode(), "BYTES"),
    ):
        csrf = csrf_of(ui.get("/ui/new-document").text)
        data = {
            "csrf": csrf,
            "pid": pid,
            "id": ident,
            "ContentType": "xml",
            "Kept": kept,
            "KeptName": "kept.xml",
        }
        r = ui.post("/ui/new-document", data=data)
        assert 400 <= r.status_code < 500, (ident, r.status_code)
        assert stored(api, pid, ident) is None, ident

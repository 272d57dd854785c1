"""Sender XML has one door (DECISIONS D10): every hostile variant through every step.

The same bodies go to an XPath step, an XSLT step, a script reading ``message.xml()``,
a SOAP endpoint and the API's Atom bodies, against the real server. Nothing may be read
from the file system or fetched from the network, the server keeps answering, and the
sender learns its mistake with a 4xx.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from partnergate.security import xmldoor

from ..conftest import Api, Server, start_server, stop_server

XSL = "http://www.w3.org/1999/XSL/Transform"
COPY_XSL = f"""<xsl:stylesheet version="1.0" xmlns:xsl="{XSL}">
  <xsl:template match="/"><copied><xsl:copy-of select="/*"/></copied></xsl:template>
</xsl:stylesheet>"""
FETCH_XSL = f"""<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}">
  <xsl:template match="/r[@doc]"><got><xsl:copy-of select="document(string(@doc))"/></got>
  </xsl:template>
  <xsl:template match="/r[@text]"><got><xsl:value-of select="unparsed-text(@text)"/></got>
  </xsl:template>
  <xsl:template match="/r[@collection]">
    <got><xsl:value-of select="count(collection(string(@collection)))"/></got>
  </xsl:template>
  <xsl:template match="/r[@pd]"><got><xsl:value-of select="document(string(@pd))"/></got>
  </xsl:template>
  <xsl:template match="/r[@write]">
    <xsl:result-document href="{{@write}}"><written/></xsl:result-document><got/>
  </xsl:template>
</xsl:stylesheet>"""
LOOP_XSL = f"""<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}" xmlns:f="urn:f">
  <xsl:function name="f:spin"><xsl:param name="n"/>
    <xsl:sequence select="if ($n ge 0) then f:spin($n + 1) else $n"/></xsl:function>
  <xsl:template match="/"><never><xsl:value-of select="f:spin(0)"/></never></xsl:template>
</xsl:stylesheet>"""

FLOWS = {
    "xpath": "endpoint: /http/door/xpath\nsteps:\n"
    "  - set:\n      property.V: {xpath: 'string(/*)'}\n"
    "  - reply:\n      body: 'xpath ${property.V}'\n",
    "xslt": "endpoint: /http/door/xslt\nsteps:\n  - xslt: copy.xsl\n",
    "fetch": "endpoint: /http/door/fetch\nsteps:\n  - xslt: fetch.xsl\n",
    "pd": "endpoint: /http/door/pd\nsteps:\n"
    "  - xslt: pd:${header.map-pid}:${header.map-id}:Binary\n",
    "script": "endpoint: /http/door/script\nsteps:\n  - script: xml.py\n",
    "text": "endpoint: /http/door/text\nsteps:\n  - script: text.py\n",
    "template": "endpoint: /http/door/template\nsteps:\n  - reply:\n      body: 'got ${body}'\n",
    "json": "endpoint: /http/door/json\nsteps:\n"
    "  - set:\n      property.V: {jsonpath: '$.a'}\n  - reply:\n      body: ok\n",
    "soap": "endpoint: /cxf/door/soap\nsteps:\n"
    "  - set:\n      property.V: {xpath: 'string(/*)'}\n"
    "  - reply:\n      body: '<ok>${property.V}</ok>'\n",
    "loop": "endpoint: /http/door/loop\ntime-limit: 2\nsteps:\n  - xslt: loop.xsl\n",
    "spin": "endpoint: /http/door/spin\nsteps:\n"
    "  - script:\n      file: spin.py\n      time-limit: 1\n",
    "sleep": "endpoint: /http/door/sleep\ntime-limit: 1\nsteps:\n  - script: sleep.py\n",
}
SCRIPTS = {
    "xml.py": "def process(message, pd):\n    message.set_body('tag ' + message.xml().tag)\n",
    "text.py": "def process(message, pd):\n    message.set_body(message.get_body(str).upper())\n",
    "sleep.py": "import time\n\ndef process(message, pd):\n    time.sleep(20)\n",
    "spin.py": "def process(message, pd):\n    n = 0\n    while True:\n"
    "        try:\n            n += 1\n        except Exception:\n            pass\n",
}
XML_ENDPOINTS = ("/http/door/xpath", "/http/door/xslt", "/http/door/script", "/cxf/door/soap")
SECRET = "door-secret-" + uuid.uuid4().hex


@dataclass
class Door:
    server: Server
    sender: tuple[str, str]
    secret_file: Path
    fifo: Path

    def send(self, path: str, body: bytes | str, **headers: str) -> httpx.Response:
        content = body.encode() if isinstance(body, str) else body
        headers.setdefault("Content-Type", "application/xml")
        return httpx.post(
            self.server.url + path, content=content, headers=headers, auth=self.sender, timeout=60
        )


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Door]:
    tmp = tmp_path_factory.mktemp("door")
    folder = tmp / "flows"
    folder.mkdir()
    for name, text in FLOWS.items():
        (folder / f"{name}.yaml").write_text(text)
    for name, text in SCRIPTS.items():
        (folder / name).write_text(text)
    (folder / "copy.xsl").write_text(COPY_XSL)
    (folder / "fetch.xsl").write_text(FETCH_XSL)
    (folder / "loop.xsl").write_text(LOOP_XSL)
    secret_file = tmp / "secret.txt"
    secret_file.write_text(SECRET)
    fifo = tmp / "never-opened"
    os.mkfifo(fifo)
    srv = start_server(tmp, store_url, {"PARTNERGATE_FLOWS": str(folder)})
    try:
        sender = (f"door_{secrets.token_hex(4)}", secrets.token_urlsafe(10))
        srv.add_user(*sender, "ESBMessaging.send")
        yield Door(srv, sender, secret_file, fifo)
    finally:
        stop_server(srv)


class SilentListener:
    """A TCP listener that accepts and never answers; counts who connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/x"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def listener() -> Iterator[SilentListener]:
    silent = SilentListener()
    try:
        yield silent
    finally:
        silent.close()


def hostile_bodies(door: Door, url: str) -> dict[str, str | bytes]:
    file_uri = door.secret_file.as_uri()
    return {
        "internal entity (billion laughs)": '<?xml version="1.0"?><!DOCTYPE r ['
        + '<!ENTITY a "aaaaaaaaaa">'
        + "".join(
            f'<!ENTITY {c} "{("&" + p + ";") * 10}">'
            for p, c in zip("abcdefg", "bcdefgh", strict=True)
        )
        + "]><r>&h;</r>",
        "external file entity": f'<!DOCTYPE r [<!ENTITY x SYSTEM "{file_uri}">]><r>&x;</r>',
        "missing file entity": '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///no/such/file">]><r>&x;</r>',
        "entity on a fifo": f'<!DOCTYPE r [<!ENTITY x SYSTEM "{door.fifo.as_uri()}">]><r>&x;</r>',
        "parameter entity": f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{url}"> %p;]><r>x</r>',
        "http entity": f'<!DOCTYPE r [<!ENTITY x SYSTEM "{url}">]><r>&x;</r>',
        "entity on the server's own health": (
            f'<!DOCTYPE r [<!ENTITY x SYSTEM "{door.server.url}/health">]><r>&x;</r>'
        ),
        "external DTD": f'<!DOCTYPE r SYSTEM "{url}"><r>x</r>',
        "UTF-16 DOCTYPE": f'<!DOCTYPE r [<!ENTITY x SYSTEM "{file_uri}">]><r>&x;</r>'.encode(
            "utf-16"
        ),
    }


def test_the_door_refuses_every_dtd_and_entity_kind(door: Door, listener: SilentListener) -> None:
    for name, body in hostile_bodies(door, listener.url).items():
        data = body.encode() if isinstance(body, str) else body
        with pytest.raises(xmldoor.XmlRefused) as refused:
            xmldoor.parse(data)
        assert refused.value.kind == "doctype", name
        assert refused.value.status == 400
    assert listener.connections == []


def test_dtd_and_entity_bodies_are_400_on_every_xml_step(
    door: Door, listener: SilentListener
) -> None:
    bodies = hostile_bodies(door, listener.url)
    with ThreadPoolExecutor(4) as pool:
        for path in XML_ENDPOINTS:
            sent = {name: pool.submit(door.send, path, body) for name, body in bodies.items()}
            # the server keeps answering while hostile messages are in flight
            assert httpx.get(door.server.url + "/health", timeout=30).status_code == 200
            for name, future in sent.items():
                r = future.result(timeout=60)
                assert r.status_code == 400, (path, name, r.status_code, r.text)
                assert "DOCTYPE" in r.text, (path, name, r.text)
                assert SECRET not in r.text and "root:" not in r.text
    assert listener.connections == []
    # nobody ever opened the fifo for reading (else this open would find a reader)
    with pytest.raises(OSError):
        os.close(os.open(door.fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_xinclude_is_not_processed(door: Door) -> None:
    body = (
        '<r xmlns:xi="http://www.w3.org/2001/XInclude">'
        f'<xi:include href="{door.secret_file.as_uri()}" parse="text"/></r>'
    )
    for path in XML_ENDPOINTS:
        r = door.send(path, body)
        assert r.status_code == 200, (path, r.text)
        assert SECRET not in r.text


def test_saxon_fetches_no_file_or_http_uri(door: Door, listener: SilentListener) -> None:
    file_uri = door.secret_file.as_uri()
    for attribute, uri in (
        ("doc", file_uri),
        ("doc", "/etc/passwd"),
        ("doc", listener.url),
        ("doc", door.server.url + "/health"),
        ("text", file_uri),
        ("text", listener.url),
        ("collection", door.secret_file.parent.as_uri()),
        ("write", (door.secret_file.parent / "written.xml").as_uri()),
    ):
        r = door.send("/http/door/fetch", f'<r {attribute}="{uri}"/>')
        assert r.status_code == 500, (attribute, uri, r.text)
        assert any(w in r.text for w in ("prohibited", "disallowed", "result-document")), r.text
        assert SECRET not in r.text and "root:" not in r.text
    assert listener.connections == []
    assert not (door.secret_file.parent / "written.xml").exists()


def test_binary_parameters_reaching_saxon_pass_the_door(door: Door, pid: str) -> None:
    file_uri = door.secret_file.as_uri()
    hostile = {
        "IMPORTS_FILE": f'<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}">'
        f'<xsl:import href="{file_uri}"/></xsl:stylesheet>',
        "ENTITY": f'<!DOCTYPE xsl:stylesheet [<!ENTITY x SYSTEM "{file_uri}">]>'
        f'<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}">'
        '<xsl:template match="/"><r>&x;</r></xsl:template></xsl:stylesheet>',
        "DATA": f'<!DOCTYPE d [<!ENTITY x SYSTEM "{file_uri}">]><d>&x;</d>',
        "GOOD": f'<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}">'
        '<xsl:template match="/"><fine><xsl:value-of select="/r"/></fine></xsl:template>'
        "</xsl:stylesheet>",
    }
    with Api(door.server) as api:
        for id, text in hostile.items():
            value = base64.b64encode(text.encode()).decode()
            parameter = {"Pid": pid, "Id": id, "ContentType": "xsl", "Value": value}
            created = api.post("BinaryParameters", json=parameter)
            assert created.status_code == 201, created.text
    for id in ("IMPORTS_FILE", "ENTITY"):
        r = door.send("/http/door/pd", "<r>x</r>", **{"map-pid": pid, "map-id": id})
        assert r.status_code == 500, (id, r.text)
        assert SECRET not in r.text
    r = door.send("/http/door/fetch", f'<r pd="pd:{pid}:DATA:Binary"/>')
    assert r.status_code == 500 and "DOCTYPE" in r.text and SECRET not in r.text
    r = door.send("/http/door/pd", "<r>x</r>", **{"map-pid": pid, "map-id": "GOOD"})
    assert r.status_code == 200 and b"<fine>x</fine>" in r.content, r.text


def test_encodings(door: Door) -> None:
    valid = {
        "UTF-16 with BOM": '<?xml version="1.0" encoding="UTF-16"?><r>Grüße</r>'.encode("utf-16"),
        "UTF-16 without declaration": "<r>Grüße</r>".encode("utf-16"),
        "ISO-8859-1": '<?xml version="1.0" encoding="ISO-8859-1"?><r>Grüße</r>'.encode("latin-1"),
    }
    for name, body in valid.items():
        for path in XML_ENDPOINTS:
            r = door.send(path, body)
            assert r.status_code == 200, (name, path, r.text)
        assert "Grüße" in door.send("/http/door/xpath", body).text, name
    for path in ("/http/door/xpath", "/http/door/xslt", "/http/door/script"):
        r = door.send(path, b'<?xml version="1.0" encoding="bogus"?><r/>')
        assert r.status_code == 415, (path, r.text)
        assert "encoding" in r.text
    r = door.send("/cxf/door/soap", b'<?xml version="1.0" encoding="bogus"?><r/>')
    assert r.status_code == 400 and "encoding" in r.text


def test_charset_of_the_content_type(door: Door) -> None:
    for path in ("/http/door/template", "/http/door/text"):
        r = door.send(path, b"hello", **{"Content-Type": "text/plain; charset=bogus"})
        assert r.status_code == 415, (path, r.text)
        assert "bogus" in r.text
        r = door.send(path, b"hello", **{"Content-Type": "text/plain; charset=base64"})
        assert r.status_code == 415, (path, r.text)
        latin = {"Content-Type": "text/plain; charset=latin-1"}
        r = door.send(path, "grüße".encode("latin-1"), **latin)
        assert r.status_code == 200, (path, r.text)
        assert "GRÜSSE" in r.content.decode("utf-8").upper(), (path, r.content)


def test_bytes_that_are_not_xml_and_huge_bodies(door: Door) -> None:
    for body in (b"\x00\x01\xff\xfe\x00garbage", b"\xff\xfe\x00", b"", b"<r>\xff</r>"):
        for path in ("/http/door/xpath", "/http/door/xslt", "/http/door/script"):
            r = door.send(path, body)
            assert r.status_code == 400, (path, body, r.text)
    huge = b"<r>" + b"x" * (9 * 1024 * 1024) + b"</r>"
    r = door.send("/http/door/xpath", huge)
    assert r.status_code == 413


def test_nesting_depth_has_one_limit_for_every_step(door: Door) -> None:
    limit = xmldoor.MAX_DEPTH
    for depth in (limit + 1, 150, 255, 256, 300, 10_000):
        body = "<a>" * depth + "</a>" * depth
        for path in XML_ENDPOINTS:
            r = door.send(path, body)
            assert r.status_code == 400, (depth, path, r.text)
            assert f"deeper than {limit} levels" in r.text, (depth, path, r.text)
    body = "<a>" * limit + "x" + "</a>" * limit
    for path in XML_ENDPOINTS:
        r = door.send(path, body)
        assert r.status_code == 200, (path, r.text)


def test_json_nested_too_deep_is_400(door: Door) -> None:
    for depth in (101, 5_000, 100_000):
        r = door.send("/http/door/json", "[" * depth + "]" * depth)
        assert r.status_code == 400, (depth, r.text)
        assert "deeper than 100 levels" in r.text
    r = door.send("/http/door/json", '{"a": ' + "[" * 99 + "]" * 99 + "}")
    assert r.status_code == 200, r.text


def test_atom_bodies_pass_the_door(door: Door, pid: str, listener: SilentListener) -> None:
    m = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
    d = "http://schemas.microsoft.com/ado/2007/08/dataservices"

    def entry(value: str, prolog: str = "", wrap: int = 0) -> str:
        return (
            f'{prolog}<entry xmlns="http://www.w3.org/2005/Atom" xmlns:m="{m}" xmlns:d="{d}">'
            + "<x>" * wrap
            + '<content type="application/xml"><m:properties>'
            f"<d:Pid>{pid}</d:Pid><d:Id>ATOM</d:Id><d:Value>{value}</d:Value>"
            "</m:properties></content>" + "</x>" * wrap + "</entry>"
        )

    atom = {"Content-Type": "application/atom+xml"}
    with Api(door.server) as api:
        for name, prolog in (
            ("file", f'<!DOCTYPE e [<!ENTITY x SYSTEM "{door.secret_file.as_uri()}">]>'),
            ("http", f'<!DOCTYPE e [<!ENTITY x SYSTEM "{listener.url}">]>'),
            ("parameter", f'<!DOCTYPE e [<!ENTITY % p SYSTEM "{listener.url}"> %p;]>'),
            ("internal", '<!DOCTYPE e [<!ENTITY x "inner">]>'),
        ):
            r = api.post("StringParameters", content=entry("&x;", prolog), headers=atom)
            assert r.status_code == 400, (name, r.text)
            assert "DOCTYPE" in r.text and SECRET not in r.text
        r = api.post("StringParameters", content=entry("v", wrap=200), headers=atom)
        assert r.status_code == 400 and "deeper than 100 levels" in r.text, r.text
        r = api.post(
            "StringParameters",
            content=entry("v", '<?xml version="1.0" encoding="bogus"?>'),
            headers=atom,
        )
        assert r.status_code == 400 and "encoding" in r.text, r.text
        assert api.get(f"StringParameters(Pid='{pid}',Id='ATOM')").status_code == 404
        utf16 = entry("Grüße", '<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16")
        r = api.post("StringParameters", content=utf16, headers=atom)
        assert r.status_code == 201, r.text
        got = api.get(f"StringParameters(Pid='{pid}',Id='ATOM')").json()["d"]
        assert got["Value"] == "Grüße"
    assert listener.connections == []


def test_an_endless_transform_ends_with_504_and_frees_its_worker(door: Door) -> None:
    with ThreadPoolExecutor(2) as pool:
        looping = pool.submit(door.send, "/http/door/loop", "<r/>")
        for _ in range(5):  # the event loop stays free while Saxon spins
            assert httpx.get(door.server.url + "/health", timeout=30).status_code == 200
        r = looping.result(timeout=60)
    assert r.status_code == 504, r.text
    assert "within 2 s" in r.text and "step 1 (xslt)" in r.text
    for _ in range(3):  # the killed worker was replaced: mapping goes on
        r = door.send("/http/door/xslt", "<r>after</r>")
        assert r.status_code == 200 and b"<copied><r>after</r></copied>" in r.content


def test_a_runaway_script_ends_with_504(door: Door) -> None:
    with ThreadPoolExecutor(2) as pool:
        spinning = pool.submit(door.send, "/http/door/spin", "x")
        assert httpx.get(door.server.url + "/health", timeout=30).status_code == 200
        r = spinning.result(timeout=60)
    assert r.status_code == 504, r.text
    assert "spin.py did not finish within 1 s" in r.text
    r = door.send("/http/door/text", b"still here", **{"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.text == "STILL HERE"


def test_a_script_waiting_in_c_code_ends_with_504_and_others_go_on(door: Door) -> None:
    """``time.sleep`` cannot be interrupted: its thread is given up, not waited for."""
    for _ in range(10):  # more than the script threads there are
        r = door.send("/http/door/sleep", "x")
        assert r.status_code == 504, r.text
        assert "sleep.py did not finish within 1 s" in r.text
    r = door.send("/http/door/text", b"not stuck", **{"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.text == "NOT STUCK"

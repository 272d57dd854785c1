"""XSLT with SaxonC-HE: pd: URIs in import, include and document(), SAP's setProperty."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from partnergate.runtime import PartnerDirectory

from .conftest import DictDirectory, engine_for, exchange, flow_from, run_async, zipped

DATA = Path(__file__).parent / "data"

CURRENCY_CODES = b"""<LookUp>
  <Entry><SenderCode>EUR</SenderCode><ReceiverCode>978</ReceiverCode></Entry>
  <Entry><SenderCode>USD</SenderCode><ReceiverCode>840</ReceiverCode></Entry>
</LookUp>"""

SENDER_MESSAGE = (
    '<Order xmlns:main="https://main.com/"><Sender>Sender_BASIC</Sender>'
    "<Receiver>Receiver_1</Receiver><main:Body>Hello</main:Body><Currency>EUR</Currency></Order>"
)

PD_FLOW = """
endpoint: /http/map
steps:
  - set:
      property.SENDER: Sender_BASIC
  - name: map
    xslt: pd:${property.SENDER}:SENDER_XSLT:Binary
"""


def sap_sample(reader: DictDirectory) -> None:
    """SAP's sample binary parameters: two zipped stylesheets and a lookup table."""
    reader.binaries[("Sender_BASIC", "SENDER_XSLT")] = (
        zipped("sender_basic.xsl", (DATA / "sender_basic.xsl").read_bytes()),
        "zip",
    )
    reader.binaries[("GenericPartner", "xsl_util")] = (
        zipped("xsl_util.xsl", (DATA / "xsl_util.xsl").read_bytes()),
        "zip",
    )
    reader.binaries[("GenericPartner", "CurrencyCodes")] = (CURRENCY_CODES, "xml")


def children(body: bytes) -> list[tuple[str, str]]:
    root = etree.fromstring(body)
    return [(etree.QName(c).localname, c.text or "") for c in root]


@run_async
async def test_sap_sample_stylesheets_from_the_partner_directory(
    reader: DictDirectory, directory: PartnerDirectory, tmp_path: Path
) -> None:
    sap_sample(reader)
    flow = flow_from(tmp_path, PD_FLOW)
    async with engine_for(directory) as (engine, _):
        message = exchange(SENDER_MESSAGE, user="u")
        reply = await engine.process(flow, message)
    assert reply.status == 200, reply.body
    assert etree.QName(etree.fromstring(reply.body)).localname == "Message"
    assert children(reply.body) == [("Content", "Hello"), ("Currency", "978")]
    assert message.properties["SENDER_ID"] == "Sender_BASIC"
    assert message.properties["RECEIVER_ID"] == "Receiver_1"


@run_async
async def test_changed_binary_parameters_are_used_after_invalidation(
    reader: DictDirectory, directory: PartnerDirectory, tmp_path: Path
) -> None:
    sap_sample(reader)
    flow = flow_from(tmp_path, PD_FLOW)
    async with engine_for(directory) as (engine, _):
        first = await engine.process(flow, exchange(SENDER_MESSAGE))
        assert children(first.body)[1] == ("Currency", "978")

        # a document() table, read at run time
        reader.binaries[("GenericPartner", "CurrencyCodes")] = (
            CURRENCY_CODES.replace(b"978", b"EUR-978"),
            "xml",
        )
        directory.invalidate("BinaryParameters", {"Pid": "GenericPartner", "Id": "CurrencyCodes"})
        second = await engine.process(flow, exchange(SENDER_MESSAGE))
        assert children(second.body)[1] == ("Currency", "EUR-978")

        # an imported module, read when the stylesheet compiles
        util = (DATA / "xsl_util.xsl").read_bytes().replace(b"<Currency>", b"<Money>")
        util = util.replace(b"</Currency>", b"</Money>")
        reader.binaries[("GenericPartner", "xsl_util")] = (zipped("xsl_util.xsl", util), "zip")
        directory.invalidate("BinaryParameters", {"Pid": "GenericPartner", "Id": "xsl_util"})
        third = await engine.process(flow, exchange(SENDER_MESSAGE))
        assert children(third.body)[1] == ("Money", "EUR-978")


@run_async
async def test_missing_imported_parameter_is_404(
    reader: DictDirectory, directory: PartnerDirectory, tmp_path: Path
) -> None:
    sap_sample(reader)
    del reader.binaries[("GenericPartner", "xsl_util")]
    flow = flow_from(tmp_path, PD_FLOW)
    async with engine_for(directory) as (engine, log):
        message = exchange(SENDER_MESSAGE)
        reply = await engine.process(flow, message)
    assert reply.status == 404
    assert reply.body == (
        b"step 2 'map' failed: binary parameter GenericPartner/xsl_util"
        b" not found in the Partner Directory\n"
    )
    entry = log.get(message.message_id)
    assert entry is not None and entry.failed_step == "step 2 'map'"


@run_async
async def test_file_stylesheet_with_include_params_and_set_header(
    directory: PartnerDirectory, tmp_path: Path
) -> None:
    flow = flow_from(
        tmp_path,
        f"""
endpoint: /http/items
steps:
  - set:
      header.dc_country: DE
  - xslt:
      stylesheet: {DATA / "mapping" / "items.xsl"}
      params:
        greeting: hello ${{header.dc_country}}
""",
    )
    order = (
        '<p:Order xmlns:p="urn:orders"><p:Item><p:Category>books</p:Category></p:Item>'
        "<p:Item><p:Category>tea</p:Category></p:Item></p:Order>"
    )
    async with engine_for(directory) as (engine, _):
        message = exchange(order)
        reply = await engine.process(flow, message)
    assert reply.status == 200, reply.body
    root = etree.fromstring(reply.body)
    assert root.get("country") == "DE"
    assert root.get("greeting") == "hello DE"
    assert [i.text for i in root] == ["BOOKS", "TEA"]
    assert message.headers["ItemCount"] == "2"


@run_async
async def test_output_encoding_of_the_stylesheet_is_kept(
    directory: PartnerDirectory, tmp_path: Path
) -> None:
    flow = flow_from(
        tmp_path, f"endpoint: /http/l\nsteps:\n  - xslt: {DATA / 'mapping' / 'latin1.xsl'}\n"
    )
    async with engine_for(directory) as (engine, _):
        reply = await engine.process(flow, exchange("<a>é</a>"))
    assert reply.body.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')
    assert "<Grüße>é</Grüße>".encode("iso-8859-1") in reply.body


@run_async
async def test_stylesheet_failures(directory: PartnerDirectory, tmp_path: Path) -> None:
    mapping = DATA / "mapping"
    stop = flow_from(tmp_path, f"endpoint: /http/s\nsteps:\n  - xslt: {mapping / 'stop.xsl'}\n")
    broken = flow_from(tmp_path, f"endpoint: /http/b\nsteps:\n  - xslt: {mapping / 'broken.xsl'}\n")
    async with engine_for(directory) as (engine, _):
        reply = await engine.process(stop, exchange("<a>X</a>"))
        assert reply.status == 500
        assert reply.body == b"step 1 (xslt) failed: the mapping stopped: no route for X\n"

        reply = await engine.process(broken, exchange("<a/>"))
        assert reply.status == 500
        text = reply.body.decode()
        assert text.startswith("step 1 (xslt) failed: stylesheet ")
        assert "does not compile" in text and "undeclared" in text
        assert str(tmp_path) not in text and str(DATA) not in text

        reply = await engine.process(stop, exchange("not xml"))
        assert reply.status == 400
        assert b"not well-formed XML" in reply.body


@run_async
async def test_zip_parameter_without_a_single_stylesheet(
    reader: DictDirectory, directory: PartnerDirectory, tmp_path: Path
) -> None:
    import io
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", "a")
        z.writestr("b.txt", "b")
    reader.binaries[("Sender_BASIC", "SENDER_XSLT")] = (archive.getvalue(), "zip")
    flow = flow_from(tmp_path, PD_FLOW)
    async with engine_for(directory) as (engine, _):
        reply = await engine.process(flow, exchange("<a/>"))
    assert reply.status == 500
    assert b"pd:Sender_BASIC:SENDER_XSLT:Binary cannot be used: the zip parameter must hold" in (
        reply.body
    )


@run_async
async def test_concurrent_messages_each_get_their_own_result(
    reader: DictDirectory, directory: PartnerDirectory, tmp_path: Path
) -> None:
    import asyncio

    sap_sample(reader)
    flow = flow_from(tmp_path, PD_FLOW)
    async with engine_for(directory) as (engine, _):
        messages = [exchange(SENDER_MESSAGE.replace("Hello", f"Hello {i}")) for i in range(24)]
        replies = await asyncio.gather(*(engine.process(flow, m) for m in messages))
    for i, reply in enumerate(replies):
        assert children(reply.body)[0] == ("Content", f"Hello {i}")
    assert reader.calls["binary"] == 3  # each parameter read once, then cached

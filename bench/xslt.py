"""What the XML door and Saxon in worker processes cost an XSLT step, against the old way.

The old way, measured in the same run: the body parsed by a plain lxml parser, and Saxon
on one thread of the server process (``_SaxonWorker`` called directly, on a
single-thread executor). The new way: the body through :mod:`partnergate.security.xmldoor`
and the step through :class:`partnergate.runtime.xslt.XsltEngine`, whose Saxon runs in
spawned worker processes (the body goes over a pipe and the result comes back). Both map
the same ~2 KB order with the same stylesheet, in the same process, without HTTP, so the
figures are the step's own cost; the table prints medians of the rounds and the ratio.

    .venv/bin/python bench/xslt.py                   # about a minute
    .venv/bin/python bench/xslt.py --messages 200 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import table
from lxml import etree

from partnergate.runtime.directory import PartnerDirectory
from partnergate.runtime.exchange import Exchange
from partnergate.runtime.xslt import XsltEngine, _parameters, _SaxonWorker, _Task
from partnergate.security import xmldoor

STYLESHEET = """<xsl:stylesheet version="2.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:param name="partner" select="'?'"/>
  <xsl:template match="/Order">
    <Invoice partner="{$partner}" lines="{count(Item)}">
      <xsl:for-each select="Item">
        <Line no="{position()}" sku="{@sku}"><xsl:value-of select="Qty * Price"/></Line>
      </xsl:for-each>
    </Invoice>
  </xsl:template>
</xsl:stylesheet>"""
ORDER = (
    "<Order>"
    + "".join(
        f'<Item sku="SKU-{i:04d}"><Qty>{i % 7 + 1}</Qty><Price>{i * 1.25:.2f}</Price>'
        f"<Text>item number {i} of the order</Text></Item>"
        for i in range(20)
    )
    + "</Order>"
).encode()
PLAIN = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class _NoDirectory:
    """The bench reads no Partner Directory: its stylesheet is a file."""


def per_call(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


async def per_message(send: Callable[[], Awaitable[object]], n: int, concurrency: int) -> float:
    """Wall time per message with ``concurrency`` messages in flight."""
    queue = iter(range(n))

    async def lane() -> None:
        for _ in queue:
            await send()

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return (time.perf_counter() - start) / n


async def main(messages: int, rounds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-xslt-"))
    stylesheet = folder / "invoice.xsl"
    stylesheet.write_text(STYLESHEET)
    directory = PartnerDirectory(_NoDirectory(), files_dir=folder / "pd-files")  # type: ignore[arg-type]

    saxon_thread = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    inline = await loop.run_in_executor(
        saxon_thread, lambda: _SaxonWorker(directory.files_dir.absolute(), 16)
    )
    engine = XsltEngine(directory, workers=2)

    async def old_step() -> object:
        root = etree.fromstring(ORDER, PLAIN)
        exchange = Exchange(body=ORDER)
        source = etree.tostring(root.getroottree(), encoding=str)
        task = _Task("file", str(stylesheet), source, _parameters(exchange, {"partner": "P"}), 0)
        reply: Any = await loop.run_in_executor(saxon_thread, inline.run, task)
        assert reply[0] == "ok", reply
        return reply

    async def new_step() -> object:
        exchange = Exchange(body=ORDER)
        return await engine.transform(stylesheet, exchange, {"partner": "P"})

    assert (await old_step())[1] == (await new_step()).body  # type: ignore[index, attr-defined]
    for _ in range(50):  # warm both: compiled stylesheets, both workers started
        await old_step()
        await asyncio.gather(new_step(), new_step())

    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, value in (
            ("parse, plain lxml", per_call(lambda: etree.fromstring(ORDER, PLAIN), messages * 10)),
            ("parse, XML door", per_call(lambda: xmldoor.parse(ORDER), messages * 10)),
            ("xslt step, 1 in flight, old", await per_message(old_step, messages, 1)),
            ("xslt step, 1 in flight, new", await per_message(new_step, messages, 1)),
            ("xslt step, 8 in flight, old", await per_message(old_step, messages, 8)),
            ("xslt step, 8 in flight, new", await per_message(new_step, messages, 8)),
        ):
            results.setdefault(name, []).append(value)
    engine.close()
    saxon_thread.shutdown()

    median = {name: statistics.median(values) for name, values in results.items()}
    rows = []
    for name, value in median.items():
        old = name.replace(", new", ", old").replace("XML door", "plain lxml")
        ratio = value / median[old]
        rows.append([name, f"{value * 1e6:,.0f}", f"{ratio:.2f}"])
    print(f"{len(ORDER)} byte order, {messages} messages per round, median of {rounds} rounds")
    print(table(["what", "µs per message", "× old"], rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rounds))

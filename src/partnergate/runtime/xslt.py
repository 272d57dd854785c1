"""XSLT 3.0 with SaxonC-HE, where ``pd:`` URIs name binary parameters (DECISIONS D6).

How ``pd:`` resolves: binary parameters are materialised as files
``<files_dir>/<Pid>:<Id>:Binary`` (zip parameters unpacked) and an XML catalog rewrites
the ``pd:`` prefix to that folder, for ``xsl:import``, ``xsl:include`` and
``document()`` alike. A file is written when first needed: when Saxon reports it cannot
read ``pd:P:I:Binary``, the parameter is materialised and the compilation or
transformation runs again. Invalidation deletes the file and drops compiled stylesheets,
so the next message sees the current content.

SAP's extension functions ``setHeader($exchange, name, value)`` and
``setProperty($exchange, name, value)`` in namespace ``http://sap.com/it/`` cannot be
registered in SaxonC-HE 13.1 (``register_user_function`` leaves them unknown). Instead the
principal stylesheet module gets two ``xsl:function`` declarations of those names, whose
body is an ``xsl:message`` carrying the name and value; the messages are collected after
the transformation and applied to the exchange. Like SAP's, they act only where their
result is used (e.g. ``xsl:value-of select="hci:setProperty(...)"``).

Stylesheet parameters receive the exchange's properties, then its headers (a header wins
over a property of the same name), then the step's own ``params``, all as strings.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import quoteattr

from lxml import etree

from .directory import PartnerDirectory
from .errors import misconfigured, missing, unreadable
from .exchange import Exchange
from .pduri import PD_URI, PdUri

XSL = "http://www.w3.org/1999/XSL/Transform"
SAP_IT = "http://sap.com/it/"
MESSAGES = "urn:partnergate:xslt"
SAP_FUNCTIONS = ("setHeader", "setProperty")
_FUNCTION_KINDS = {"setHeader": "header", "setProperty": "property"}
MAX_MATERIALISE_ROUNDS = 16

_NCNAME = re.compile(r"[A-Za-z_][\w.\-]*")
_FILE_URI = re.compile(r"file:/[^\s]*")


def _last_segment(match: re.Match[str]) -> str:
    uri, trail = match.group(0), ""
    if uri.endswith(":"):
        uri, trail = uri[:-1], ":"
    return (unquote(uri.rstrip("/").rsplit("/", 1)[-1]) or "stylesheet") + trail


@dataclass
class XsltResult:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)


class _NeedsParameter(Exception):
    def __init__(self, uri: PdUri) -> None:
        self.uri = uri


_WORKER: ThreadPoolExecutor | None = None
_WORKER_LOCK = threading.Lock()


def _saxon_thread() -> ThreadPoolExecutor:
    """The one thread of this process that ever touches Saxon objects.

    SaxonC-HE 13.1 (a GraalVM native image) aborts the whole process ("StackOverflowError
    ... wrong IsolateThread") when its objects are used, or even freed, on more than one
    thread. So every engine runs on this thread, and objects to be dropped are handed to
    it, so that their last reference goes away here too.
    """
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xslt")
        return _WORKER


def _release(*objects: object) -> None:
    """Drop Saxon objects on the Saxon thread: the caller gives up its references."""
    _saxon_thread().submit(_drop, list(objects))


def _drop(objects: list[object]) -> None:
    for item in objects:
        if isinstance(item, dict):
            item.clear()
    objects.clear()


class XsltEngine:
    """Compiles and runs stylesheets on the process's Saxon thread; one processor per engine.

    The event loop stays free while a stylesheet runs; see :func:`_saxon_thread` for why
    there is one thread.
    """

    def __init__(self, directory: PartnerDirectory, *, max_compiled: int = 256) -> None:
        self.directory = directory
        self.max_compiled = max_compiled
        self._pool = _saxon_thread()
        self._compile_lock = threading.Lock()
        self._init_lock = threading.Lock()
        self._compiled: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._processor: Any = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        directory.add_invalidation_listener(self._invalidated)

    async def transform(
        self,
        stylesheet: Path | PdUri,
        exchange: Exchange,
        params: Mapping[str, str] | None = None,
    ) -> XsltResult:
        """Run ``stylesheet`` over the exchange's body; raises :class:`StepError`."""
        try:
            root = exchange.xml()
        except ValueError as exc:
            raise unreadable(str(exc)) from None
        source = etree.tostring(root.getroottree(), encoding=str)
        values = _parameters(exchange, params or {})
        loop = asyncio.get_running_loop()
        for _ in range(MAX_MATERIALISE_ROUNDS):
            try:
                if isinstance(stylesheet, PdUri):
                    await self._materialise(stylesheet)
                return await loop.run_in_executor(self._pool, self._run, stylesheet, source, values)
            except _NeedsParameter as need:
                await self._materialise(need.uri)
        raise misconfigured("the stylesheet keeps needing further pd: parameters")

    def close(self) -> None:
        with self._compile_lock:
            compiled, self._compiled = self._compiled, OrderedDict()
        processor, self._processor = self._processor, None
        self._pool.submit(_drop, [compiled, processor]).result()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __del__(self) -> None:
        compiled, processor = self.__dict__.get("_compiled"), self.__dict__.get("_processor")
        if compiled or processor is not None:
            _release(compiled, processor)

    # on worker threads

    def _run(self, stylesheet: Path | PdUri, source: str, values: dict[str, str]) -> XsltResult:
        processor = self._saxon()
        executable = self._executable(stylesheet).clone()
        executable.set_save_xsl_message(True, None)
        for name, value in values.items():
            executable.set_parameter(name, processor.make_string_value(value))
        document = processor.parse_xml(xml_text=source)
        assert self._scratch is not None
        with tempfile.NamedTemporaryFile(dir=self._scratch.name, suffix=".out") as out:
            try:
                executable.transform_to_file(xdm_node=document, output_file=out.name)
            except Exception as exc:
                raise self._failure(exc, _messages(executable)[1]) from None
            body = Path(out.name).read_bytes()
        sets, _ = _messages(executable)
        result = XsltResult(body)
        for kind, name, value in sets:
            (result.headers if kind == "header" else result.properties)[name] = value
        return result

    def _executable(self, stylesheet: Path | PdUri) -> Any:
        if isinstance(stylesheet, Path):
            try:
                key: tuple[Any, ...] = ("file", stylesheet, stylesheet.stat().st_mtime_ns)
            except OSError:
                raise misconfigured(f"stylesheet {stylesheet.name} cannot be read") from None
            href, name = stylesheet.as_uri(), stylesheet.name
        else:
            key = ("pd", stylesheet.pid, stylesheet.id)
            href = name = str(stylesheet)
        with self._compile_lock:
            executable = self._compiled.get(key)
            if executable is not None:
                self._compiled.move_to_end(key)
                return executable
            try:
                executable = (
                    self._saxon()
                    .new_xslt30_processor()
                    .compile_stylesheet(stylesheet_text=_wrapper(href), encoding="UTF-8")
                )
            except Exception as exc:
                raise self._failure(exc, [], compiling=name) from None
            self._compiled[key] = executable
            while len(self._compiled) > self.max_compiled:
                self._compiled.popitem(last=False)  # on the Saxon thread: safe to free here
            return executable

    def _saxon(self) -> Any:
        if self._processor is not None:
            return self._processor
        with self._init_lock:
            if self._processor is None:
                from saxonche import PySaxonProcessor

                files = self.directory.files_dir.as_uri() + "/"
                self._scratch = tempfile.TemporaryDirectory(prefix="partnergate-xslt-")
                catalog = Path(self._scratch.name) / "catalog.xml"
                catalog.write_text(_CATALOG.format(files=files), encoding="utf-8")
                processor = PySaxonProcessor(license=False)
                processor.set_catalog_files([str(catalog)])
                self._processor = processor
        return self._processor

    def _failure(self, exc: Exception, messages: list[str], *, compiling: str = "") -> Exception:
        text = str(exc)
        need = PD_URI.search(text)
        if need is not None and need.group(3) == "Binary" and "I/O error" in text:
            return _NeedsParameter(PdUri(need.group(1), need.group(2), "Binary"))
        reason = self._scrub(text)
        if compiling:
            return misconfigured(f"stylesheet {compiling} does not compile: {reason}")
        if "terminated by xsl:message" in text:
            said = "; ".join(m for m in messages if m) or reason
            return misconfigured(f"the mapping stopped: {said}")
        return misconfigured(f"the mapping failed: {reason}")

    def _scrub(self, text: str) -> str:
        """Saxon's message without file paths of this machine."""
        text = text.replace(self.directory.files_dir.as_uri() + "/", "pd:")
        text = _FILE_URI.sub(_last_segment, text)
        return " ".join(text.split())[:400]

    # on the event loop

    async def _materialise(self, uri: PdUri) -> None:
        try:
            path = await self.directory.binary_file(uri.pid, uri.id)
        except ValueError as exc:
            raise misconfigured(f"{uri} cannot be used: {exc}") from None
        if path is None:
            raise missing(f"binary parameter {uri.pid}/{uri.id} not found in the Partner Directory")

    def _invalidated(self, entity_set: str, key: Mapping[str, str]) -> None:
        if entity_set in ("BinaryParameters", "Partners", "*"):
            with self._compile_lock:
                compiled, self._compiled = self._compiled, OrderedDict()
            _release(compiled)


_CATALOG = """<?xml version="1.0"?>
<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">
  <rewriteURI uriStartString="pd:" rewritePrefix="{files}"/>
  <rewriteSystem systemIdStartString="pd:" rewritePrefix="{files}"/>
</catalog>
"""

_SAP_FUNCTION = """
<xsl:function xmlns:xsl="{xsl}" xmlns:pg="{pg}" name="Q{{{sap}}}{name}">
  <xsl:param name="exchange"/>
  <xsl:param name="name"/>
  <xsl:param name="value"/>
  <xsl:message>
    <pg:set kind="{kind}" name="{{$name}}"><xsl:value-of select="$value"/></pg:set>
  </xsl:message>
</xsl:function>""".strip()


def _wrapper(href: str) -> str:
    """A stylesheet that imports the real one and adds SAP's functions at higher precedence.

    The real stylesheet compiles from its own URI, unchanged: its relative imports, its
    line numbers in errors and its XSLT version (1.0 backwards compatibility included)
    stay as written.
    """
    functions = "\n".join(
        _SAP_FUNCTION.format(
            xsl=XSL, sap=SAP_IT, pg=MESSAGES, name=name, kind=_FUNCTION_KINDS[name]
        )
        for name in SAP_FUNCTIONS
    )
    return (
        f'<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}">\n'
        f"<xsl:import href={quoteattr(href)}/>\n{functions}\n</xsl:stylesheet>"
    )


def _messages(executable: Any) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The header and property assignments, and the stylesheet's own messages."""
    sets: list[tuple[str, str, str]] = []
    others: list[str] = []
    found = executable.get_xsl_messages()
    if found is None:
        return sets, others
    for document in found:
        ours = False
        for child in document.children or ():
            if child.name == f"Q{{{MESSAGES}}}set":
                kind = child.get_attribute_value("kind") or "property"
                sets.append((kind, child.get_attribute_value("name") or "", child.string_value))
                ours = True
        if not ours:
            others.append(" ".join(document.string_value.split()))
    return sets, others


def _parameters(exchange: Exchange, params: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in exchange.properties.items():
        if _NCNAME.fullmatch(name) and isinstance(value, str | int | float | bool):
            values[name] = value if isinstance(value, str) else str(value)
    for name, value in exchange.headers.items():
        if _NCNAME.fullmatch(name):
            values[name] = value
    values.update(params)
    return values

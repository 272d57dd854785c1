"""XSLT 3.0 with SaxonC-HE, where ``pd:`` URIs name binary parameters (DECISIONS D6, D10).

How ``pd:`` resolves: binary parameters are materialised as files
``<files_dir>/<Pid>:<Id>:Binary`` (zip parameters unpacked) and an XML catalog rewrites
the ``pd:`` prefix to that folder, for ``xsl:import``, ``xsl:include`` and
``document()`` alike. A file is written when first needed: when Saxon reports it cannot
read ``pd:P:I:Binary``, the parameter is materialised and the compilation or
transformation runs again. Invalidation deletes the file and drops compiled stylesheets,
so the next message sees the current content.

What Saxon may reach (D10): the message arrives as a document that passed the XML door
(no DOCTYPE, no entity, bounded depth), serialised again; a materialised binary parameter
must pass the door too (or, if it is not XML, carry no DOCTYPE). Saxon's
``allowedProtocols`` is ``pd`` while a message runs, so ``document()``, ``doc()``,
``unparsed-text()``, ``collection()`` and imports reach ``pd:`` URIs only: ``file:``,
``http:`` and every other scheme are refused. ``xsl:result-document`` (which SaxonC
writes to any ``file:`` URI regardless of that setting) is captured in memory and fails
the mapping. A stylesheet file of a flow is the one
exception: it compiles on a Saxon processor of its own that allows ``file:`` too, so
that its ``xsl:import`` and ``xsl:include`` of neighbouring files work as written, and
that processor is narrowed to ``pd`` before any message runs (SaxonC narrows a processor's
protocols but never widens them again).

Where Saxon runs: in a few spawned worker processes (:mod:`.processpool`). SaxonC holds
the GIL for a whole transformation and cannot be interrupted, so a transform on a thread
of the server would stop the event loop; a worker that runs past the step's time limit is
killed (the message ends with 504) and replaced.

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
import codecs
import re
import secrets
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import quoteattr

from lxml import etree

from ..security import xmldoor
from .directory import PartnerDirectory
from .errors import StepError, misconfigured, missing, refused, step_timeout
from .exchange import Exchange
from .pduri import PD_URI, PdUri
from .processpool import ProcessPool, WorkerLost, WorkerTimeout

XSL = "http://www.w3.org/1999/XSL/Transform"
SAP_IT = "http://sap.com/it/"
MESSAGES = "urn:partnergate:xslt"
SAP_FUNCTIONS = ("setHeader", "setProperty")
_FUNCTION_KINDS = {"setHeader": "header", "setProperty": "property"}
MAX_MATERIALISE_ROUNDS = 16
DEFAULT_WORKERS = 2
DEFAULT_TIME_LIMIT = 10.0

ALLOWED_PROTOCOLS = "http://saxon.sf.net/feature/allowedProtocols"
MESSAGE_PROTOCOLS = "pd"
"""The only URI scheme Saxon may open while a message runs."""
FLOW_FILE_PROTOCOLS = "file,pd"
"""While a flow's own stylesheet file compiles: its neighbouring files too."""

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


@dataclass(frozen=True)
class _Task:
    """One transformation, as sent to a worker."""

    kind: str  # "file" or "pd"
    stylesheet: str  # an absolute path, or a pd: URI
    source: str
    params: dict[str, str]
    generation: int
    content: bytes = b""
    """For ``check``: the stylesheet to compile, not stored anywhere yet."""


class XsltEngine:
    """Runs stylesheets in Saxon worker processes; one engine per server process.

    ``workers`` bounds how many transformations run at once (each worker holds its own
    Saxon processor and compiled stylesheets).
    """

    def __init__(
        self,
        directory: PartnerDirectory,
        *,
        workers: int = DEFAULT_WORKERS,
        time_limit: float = DEFAULT_TIME_LIMIT,
        max_compiled: int = 256,
    ) -> None:
        self.directory = directory
        self.workers = workers
        self.time_limit = time_limit
        self.max_compiled = max_compiled
        self._pool: ProcessPool | None = None
        self._generation = 0
        self._checked: set[tuple[str, str]] = set()
        directory.add_invalidation_listener(self._invalidated)

    async def transform(
        self,
        stylesheet: Path | PdUri,
        exchange: Exchange,
        params: Mapping[str, str] | None = None,
        *,
        time_limit: float | None = None,
    ) -> XsltResult:
        """Run ``stylesheet`` over the exchange's body; raises :class:`StepError`.

        ``time_limit`` bounds the whole step, the rounds that materialise further ``pd:``
        parameters included.
        """
        try:
            root = exchange.xml()
        except ValueError as exc:
            raise refused(exc) from None
        source = etree.tostring(root.getroottree(), encoding=str)
        values = _parameters(exchange, params or {})
        limit = time_limit if time_limit is not None else self.time_limit
        if isinstance(stylesheet, PdUri):
            kind, name = "pd", str(stylesheet)
        else:
            kind, name = "file", str(stylesheet)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        for _ in range(MAX_MATERIALISE_ROUNDS):
            if isinstance(stylesheet, PdUri):
                await self._materialise(stylesheet)
            task = _Task(kind, name, source, values, self._generation)
            try:
                left = max(deadline - loop.time(), 0.001)
                reply = await self._workers().call(task, left)
            except WorkerTimeout:
                raise step_timeout(
                    f"the mapping did not finish within {limit:g} s and was stopped"
                ) from None
            except WorkerLost as exc:
                raise misconfigured("the mapping ended its worker", detail=str(exc)) from None
            if reply[0] == "ok":
                return XsltResult(reply[1], reply[2], reply[3])
            if reply[0] == "need":
                await self._materialise(PdUri(reply[1], reply[2], "Binary"))
                continue
            raise misconfigured(reply[1])
        raise misconfigured("the stylesheet keeps needing further pd: parameters")

    async def check(self, content: bytes, *, time_limit: float | None = None) -> str | None:
        """Why ``content`` does not compile as a stylesheet (Saxon's words, with the line),
        or None if it does; nothing runs, and ``pd:`` imports resolve as in a message."""
        loop = asyncio.get_running_loop()
        limit = time_limit if time_limit is not None else self.time_limit
        deadline = loop.time() + limit
        for _ in range(MAX_MATERIALISE_ROUNDS):
            task = _Task("check", "", "", {}, self._generation, content)
            try:
                reply = await self._workers().call(task, max(deadline - loop.time(), 0.001))
            except WorkerTimeout:
                return f"the stylesheet did not compile within {limit:g} s"
            except WorkerLost as exc:
                return f"the stylesheet ended its worker ({exc})"
            if reply[0] == "ok":
                return None
            if reply[0] == "need":
                try:
                    await self._materialise(PdUri(reply[1], reply[2], "Binary"))
                except StepError as exc:
                    return exc.text
                continue
            return str(reply[1])
        return "the stylesheet keeps needing further pd: parameters"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _workers(self) -> ProcessPool:
        if self._pool is None:
            files = str(self.directory.files_dir.absolute())
            self._pool = ProcessPool(
                serve_saxon, (files, self.max_compiled), size=self.workers, name="xslt"
            )
        return self._pool

    # on the event loop

    async def _materialise(self, uri: PdUri) -> None:
        try:
            path = await self.directory.binary_file(uri.pid, uri.id)
        except ValueError as exc:
            raise misconfigured(f"{uri} cannot be used: {exc}") from None
        if path is None:
            raise missing(f"binary parameter {uri.pid}/{uri.id} not found in the Partner Directory")
        if (uri.pid, uri.id) in self._checked:
            return
        try:
            _check_parameter(path.read_bytes(), f"binary parameter {uri.pid}/{uri.id}")
        except xmldoor.XmlRefused as exc:
            path.unlink(missing_ok=True)
            raise misconfigured(f"{uri} cannot be used: {exc.reason}") from None
        self._checked.add((uri.pid, uri.id))

    def _invalidated(self, entity_set: str, key: Mapping[str, str]) -> None:
        if entity_set in ("BinaryParameters", "Partners", "*"):
            self._generation += 1
            self._checked.clear()


def _check_parameter(content: bytes, what: str) -> None:
    """A binary parameter Saxon may read: XML that passes the door, or something that is
    not XML (text for ``unparsed-text()``) and carries no DOCTYPE either."""
    try:
        xmldoor.check(content, what=what)
    except xmldoor.XmlRefused as exc:
        if exc.kind != "syntax" or xmldoor.declares_doctype(content):
            raise


# in a worker process


def serve_saxon(conn: Connection, files_dir: str, max_compiled: int) -> None:
    """A worker's life: answer each :class:`_Task` until the server closes the pipe."""
    worker = _SaxonWorker(Path(files_dir), max_compiled)
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(worker.run(task))


class _NeedsParameter(Exception):
    def __init__(self, uri: PdUri) -> None:
        self.uri = uri


class _Failed(Exception):
    pass


class _SaxonWorker:
    """One Saxon processor and its compiled stylesheets, in one worker process."""

    def __init__(self, files_dir: Path, max_compiled: int) -> None:
        from saxonche import PySaxonProcessor

        self.files_dir = files_dir
        self.files_uri = files_dir.as_uri() + "/"
        self.max_compiled = max_compiled
        self._scratch = tempfile.TemporaryDirectory(prefix="partnergate-xslt-")
        self._catalog = Path(self._scratch.name) / "catalog.xml"
        self._catalog.write_text(_CATALOG.format(files=self.files_uri), encoding="utf-8")
        self._new_processor: Any = PySaxonProcessor
        self.processor = self._processor(MESSAGE_PROTOCOLS)
        self._compiled: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._generation = 0

    def _processor(self, protocols: str) -> Any:
        processor = self._new_processor(license=False)
        processor.set_catalog_files([str(self._catalog)])
        processor.set_configuration_property(ALLOWED_PROTOCOLS, protocols)
        return processor

    def run(self, task: _Task) -> tuple[Any, ...]:
        if task.generation != self._generation:
            self._compiled.clear()
            self._generation = task.generation
        try:
            if task.kind == "check":
                self._check(task.content)
                return ("ok", b"", {}, {})
            return ("ok", *self._transform(task))
        except _NeedsParameter as need:
            return ("need", need.uri.pid, need.uri.id)
        except _Failed as exc:
            return ("fail", str(exc))
        except Exception as exc:  # whatever else Saxon raises fails this message only
            return ("fail", f"the mapping failed: {self._scrub(str(exc))}")

    def _transform(self, task: _Task) -> tuple[bytes, dict[str, str], dict[str, str]]:
        processor, compiled, encoding = self._executable(task)
        executable = compiled.clone()
        executable.set_save_xsl_message(True, None)
        executable.set_property("!encoding", "UTF-8")
        # xsl:result-document would write files whatever allowedProtocols says: keep them
        # in memory, and refuse the mapping if it made any
        executable.set_capture_result_documents(True)
        for name, value in task.params.items():
            executable.set_parameter(name, processor.make_string_value(value))
        document = processor.parse_xml(xml_text=task.source)
        try:
            text = executable.transform_to_string(xdm_node=document)
        except Exception as exc:
            raise self._failure(exc, _messages(executable)[1]) from None
        if executable.get_result_documents():
            raise _Failed("the mapping used xsl:result-document; only its principal result is used")
        body = _encoded(text or "", encoding)
        headers: dict[str, str] = {}
        properties: dict[str, str] = {}
        sets, _ = _messages(executable)
        for kind, name, value in sets:
            (headers if kind == "header" else properties)[name] = value
        return body, headers, properties

    def _check(self, content: bytes) -> None:
        """Compile ``content`` from a scratch file under ``pd:``, as a stored one would be."""
        folder = self.files_dir / ".check"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{secrets.token_hex(8)}.xsl"
        path.write_bytes(content)
        try:
            self.processor.new_xslt30_processor().compile_stylesheet(
                stylesheet_text=_wrapper(f"pd:.check/{path.name}"), encoding="UTF-8"
            )
        except Exception as exc:
            failure = self._failure(exc, [])
            if isinstance(failure, _NeedsParameter):
                raise failure from None
            reason = self._scrub(str(exc)).replace(f"pd:.check/{path.name}", "the stylesheet")
            raise _Failed(reason.replace(path.name, "the stylesheet")) from None
        finally:
            path.unlink(missing_ok=True)

    def _executable(self, task: _Task) -> tuple[Any, Any, str]:
        """The processor and compiled stylesheet, and the output encoding the principal
        module declares.

        Output is written to a string (writing a file would need ``file:`` access) in
        UTF-8 and encoded in the declared encoding afterwards.
        """
        if task.kind == "file":
            path = Path(task.stylesheet)
            try:
                key: tuple[Any, ...] = ("file", path, path.stat().st_mtime_ns)
            except OSError:
                raise _Failed(f"stylesheet {path.name} cannot be read") from None
            href, name = path.as_uri(), path.name
        else:
            key = ("pd", task.stylesheet)
            href = name = task.stylesheet
            path = self.files_dir / task.stylesheet.removeprefix("pd:")
        found = self._compiled.get(key)
        if found is not None:
            self._compiled.move_to_end(key)
            return found  # type: ignore[no-any-return]
        if task.kind == "file":
            processor = self._processor(FLOW_FILE_PROTOCOLS)
        else:
            processor = self.processor
        try:
            executable = processor.new_xslt30_processor().compile_stylesheet(
                stylesheet_text=_wrapper(href), encoding="UTF-8"
            )
        except Exception as exc:
            raise self._failure(exc, [], compiling=name) from None
        finally:
            processor.set_configuration_property(ALLOWED_PROTOCOLS, MESSAGE_PROTOCOLS)
        found = self._compiled[key] = (processor, executable, _output_encoding(path))
        while len(self._compiled) > self.max_compiled:
            self._compiled.popitem(last=False)
        return found

    def _failure(self, exc: Exception, messages: list[str], *, compiling: str = "") -> Exception:
        text = str(exc)
        need = PD_URI.search(text)
        if need is not None and need.group(3) == "Binary" and "I/O error" in text:
            return _NeedsParameter(PdUri(need.group(1), need.group(2), "Binary"))
        reason = self._scrub(text)
        if compiling:
            return _Failed(f"stylesheet {compiling} does not compile: {reason}")
        if "terminated by xsl:message" in text:
            said = "; ".join(m for m in messages if m) or reason
            return _Failed(f"the mapping stopped: {said}")
        return _Failed(f"the mapping failed: {reason}")

    def _scrub(self, text: str) -> str:
        """Saxon's message without file paths of this machine."""
        text = text.replace(self.files_uri, "pd:")
        text = _FILE_URI.sub(_last_segment, text)
        return " ".join(text.split())[:400]


def _output_encoding(path: Path) -> str:
    """The ``encoding`` of the last unnamed ``xsl:output`` of a stylesheet module."""
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
    try:
        root = etree.parse(str(path), parser).getroot()
    except (OSError, etree.XMLSyntaxError):
        return "UTF-8"
    encoding = "UTF-8"
    for output in root.iterchildren(f"{{{XSL}}}output"):
        if output.get("name") is None and output.get("encoding"):
            encoding = output.get("encoding", "UTF-8").strip()
    return encoding


def _encoded(text: str, encoding: str) -> bytes:
    """Saxon's UTF-8 output in the encoding the stylesheet asked for."""
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        return text.encode("utf-8")
    if codec.name == "utf-8":
        return text.encode("utf-8")
    if text.startswith("<?xml"):
        end = text.find("?>")
        declaration = text[:end].replace('encoding="UTF-8"', f'encoding="{encoding}"')
        text = declaration + text[end:]
    return text.encode(codec.name, errors="xmlcharrefreplace")


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

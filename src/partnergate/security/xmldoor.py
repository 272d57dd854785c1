"""The one door every XML document from outside passes through (DECISIONS D10).

Lives here: the hardened parser for message bodies, SOAP envelopes, Atom payloads and
binary parameters that reach a transform, and the limits it enforces. Must not know: HTTP
frameworks, flows, the store. ``odata/`` and ``runtime/`` call :func:`parse`; nothing
else there builds an ``XMLParser`` for outside input.

What the door refuses, with :class:`XmlRefused` naming the reason:

- a document type declaration of any kind (internal subset, external DTD): no DTD is
  loaded and no entity, internal, external or parameter, is declared or expanded, so
  "billion laughs", XXE file reads and entity URLs end here before anything is looked up;
- nesting deeper than :data:`MAX_DEPTH` elements (the depth Saxon's parser accepts, so
  a transform never meets a document the door let through and Saxon cannot read);
- more than :data:`MAX_BYTES` bytes;
- an encoding libxml2 does not know (``kind == "encoding"``; the runtime answers 415);
- anything that is not well-formed XML, including bytes that are not text.

libxml2 runs with ``resolve_entities=False, load_dtd=False, no_network=True,
huge_tree=False``: nothing is fetched and XInclude is never processed (``xi:include``
stays an ordinary element). The encoding comes from the byte order mark or the XML
declaration (UTF-8 when neither says otherwise); UTF-16 with a BOM is accepted.
"""

from __future__ import annotations

import threading
from typing import Literal

from lxml import etree

MAX_DEPTH = 100
"""Deepest element nesting accepted (the root is level 1): SaxonC's parser refuses 101."""
MAX_BYTES = 16 * 1024 * 1024
"""Largest document accepted; message bodies are bounded earlier by ``max_body_bytes``."""

RefusalKind = Literal["syntax", "doctype", "depth", "size", "encoding"]

_DOCTYPE_MARKS = tuple(
    "<!DOCTYPE".encode(codec) for codec in ("utf-8", "utf-16-le", "utf-16-be")
) + tuple("<!ENTITY".encode(codec) for codec in ("utf-8", "utf-16-le", "utf-16-be"))


class XmlRefused(ValueError):
    """The document did not pass the door; ``reason`` says why in a sender's words."""

    def __init__(self, reason: str, kind: RefusalKind = "syntax") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind

    @property
    def status(self) -> int:
        """The HTTP status this refusal means for the sender: 415 for an unknown
        encoding, else 400."""
        return 415 if self.kind == "encoding" else 400


_LOCAL = threading.local()


def _parser() -> etree.XMLParser:
    """One parser per thread: lxml parsers must not be shared between threads."""
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = etree.XMLParser(
            resolve_entities=False,
            load_dtd=False,
            dtd_validation=False,
            no_network=True,
            huge_tree=False,
        )
    return parser


def _too_deep() -> etree.XPath:
    """True when an element sits below level :data:`MAX_DEPTH`; evaluated inside libxml2."""
    check = getattr(_LOCAL, "too_deep", None)
    if check is None:
        check = _LOCAL.too_deep = etree.XPath("boolean(/" + "/".join(["*"] * (MAX_DEPTH + 1)) + ")")
    return check


def parse(data: bytes, *, what: str = "the XML", max_bytes: int = MAX_BYTES) -> etree._Element:
    """The root element of ``data``, or :class:`XmlRefused`.

    ``what`` names the document in the reason ("the message", "binary parameter P/I").
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("the XML door takes bytes, so that the document's own encoding counts")
    data = bytes(data)
    if len(data) > max_bytes:
        raise XmlRefused(f"{what} is larger than {max_bytes} bytes", "size")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise _syntax_refusal(exc, what, data) from None
    except (etree.LxmlError, ValueError) as exc:  # anything else libxml2 stops at
        raise XmlRefused(f"{what} is not well-formed XML ({exc})") from None
    if root is None:
        raise XmlRefused(f"{what} is empty")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise _doctype(what)
    if data.count(b"<") > MAX_DEPTH and _too_deep()(root):  # fewer tags cannot nest deeper
        raise XmlRefused(f"{what} is nested deeper than {MAX_DEPTH} levels", "depth")
    return root


def check(data: bytes, *, what: str = "the XML", max_bytes: int = MAX_BYTES) -> None:
    """Raise :class:`XmlRefused` unless ``data`` passes the door."""
    parse(data, what=what, max_bytes=max_bytes)


def declares_doctype(data: bytes) -> bool:
    """Whether ``data`` carries a DOCTYPE or an entity declaration anywhere, in UTF-8 or
    UTF-16: for content that may not be XML at all (text a transform reads) yet must not
    smuggle a DTD to a parser other than ours."""
    return any(mark in data for mark in _DOCTYPE_MARKS)


def _doctype(what: str) -> XmlRefused:
    return XmlRefused(
        f"{what} has a DOCTYPE; document type declarations and entities are not accepted",
        "doctype",
    )


def _syntax_refusal(exc: etree.XMLSyntaxError, what: str, data: bytes) -> XmlRefused:
    message = (exc.msg or str(exc)).strip()
    lowered = message.lower()
    if "unsupported encoding" in lowered or "unknown encoding" in lowered:
        return XmlRefused(f"{what} has an encoding that is not supported ({message})", "encoding")
    if "excessive depth" in lowered:
        return XmlRefused(f"{what} is nested deeper than {MAX_DEPTH} levels", "depth")
    if declares_doctype(data):
        return _doctype(what)
    return XmlRefused(f"{what} is not well-formed XML ({message})")

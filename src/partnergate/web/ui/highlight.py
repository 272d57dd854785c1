"""Syntax highlighting of XML and JSON parameter values, on the server.

A few regular expressions rather than a vendored library: the UI only needs to tell
markup, names, strings and comments apart, and every byte of the value passes through
:func:`markupsafe.escape` before it reaches the page. Text longer than
:data:`MAX_HIGHLIGHT_CHARS` is shown plain, so a large value costs no regex time.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator

from markupsafe import Markup, escape

MAX_HIGHLIGHT_CHARS = 512 * 1024

_XML = re.compile(
    r"""
    (?P<comment><!--.*?(?:-->|\Z))
    | (?P<cdata><!\[CDATA\[.*?(?:\]\]>|\Z))
    | (?P<pi><\?.*?(?:\?>|\Z))
    | (?P<doctype><!DOCTYPE[^>]*>?)
    | (?P<open></?)(?P<name>[^\s/>!?<&="']+)
      (?P<attrs>(?:\s+[^\s=/>]+(?:\s*=\s*(?:"[^"]*"|'[^']*'))?)*)
      (?P<space>\s*)(?P<close>/?>)?
    | (?P<entity>&(?:\#[0-9]+|\#x[0-9a-fA-F]+|[A-Za-z][\w.-]*);)
    | (?P<text>[^<&]+|[<&])
    """,
    re.DOTALL | re.VERBOSE,
)
_ATTR = re.compile(
    r"""(?P<space>\s+)(?P<name>[^\s=/>]+)(?:(?P<eq>\s*=\s*)(?P<value>"[^"]*"|'[^']*'))?"""
)

_JSON = re.compile(
    r"""
    (?P<key>"(?:[^"\\\n]|\\.)*"(?=\s*:))
    | (?P<string>"(?:[^"\\\n]|\\.)*"?)
    | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
    | (?P<literal>true|false|null)
    | (?P<punct>[{}\[\],:])
    | (?P<other>\s+|[^"\s{}\[\],:]+)
    """,
    re.VERBOSE,
)

LANGUAGES = {"xml": "xml", "xsl": "xml", "xsd": "xml", "json": "json", "text": "text"}
"""Content type of a binary parameter → how its text is highlighted."""


def _span(kind: str, text: str) -> str:
    return f'<span class="hl-{kind}">{escape(text)}</span>'


def _xml_tokens(text: str) -> Iterator[str]:
    for m in _XML.finditer(text):
        kind = m.lastgroup
        if m.group("name") is not None:
            yield _span("punct", m.group("open"))
            yield _span("tag", m.group("name"))
            for a in _ATTR.finditer(m.group("attrs")):
                yield str(escape(a.group("space")))
                yield _span("attr", a.group("name"))
                if a.group("value") is not None:
                    yield _span("punct", a.group("eq"))
                    yield _span("string", a.group("value"))
            yield str(escape(m.group("space")))
            if m.group("close"):
                yield _span("punct", m.group("close"))
        elif kind == "text":
            yield str(escape(m.group()))
        else:
            yield _span(str(kind), m.group())


def _json_tokens(text: str) -> Iterator[str]:
    for m in _JSON.finditer(text):
        kind = m.lastgroup
        if kind == "other":
            yield str(escape(m.group()))
        else:
            yield _span(str(kind), m.group())


def highlight(text: str, language: str) -> Markup:
    """HTML for ``text`` with ``<span class="hl-…">`` around the tokens of ``language``."""
    if len(text) > MAX_HIGHLIGHT_CHARS or language not in ("xml", "json"):
        return escape(text)
    tokens = _xml_tokens(text) if language == "xml" else _json_tokens(text)
    return Markup("".join(tokens))


def decode(value: bytes, content_type: str) -> str:
    """The text of a text-typed value: its ``;encoding=``, else a BOM, else UTF-8.

    Undecodable bytes show as U+FFFD rather than failing the page.
    """
    _, _, params = content_type.partition(";")
    declared = params.partition("=")[2].strip()
    if declared:
        try:
            return value.decode(declared, errors="replace")
        except LookupError:
            pass
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if value.startswith(bom):
            return value.decode(encoding, errors="replace")
    return value.decode("utf-8", errors="replace")

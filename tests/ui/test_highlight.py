"""The server-side highlighter: every byte escaped, tokens told apart, bad input survives."""

from __future__ import annotations

import re
from urllib.parse import unquote

from partnergate.model.entities import PARTNER_ENTITY_SETS
from partnergate.model.rules import CONTENT_TYPES
from partnergate.web.ui.directory import SECTIONS
from partnergate.web.ui.highlight import MAX_HIGHLIGHT_CHARS, decode, highlight
from partnergate.web.ui.kinds import CONTENT_TYPE_NAMES, DOWNLOAD
from partnergate.web.ui.pages import segment, unsegment

TAGS = re.compile(r"<[^>]+>")


def spans(html: str, kind: str) -> list[str]:
    return re.findall(rf'<span class="hl-{kind}">(.*?)</span>', html, re.DOTALL)


def test_xml_tokens() -> None:
    html = highlight(
        '<?xml version="1.0"?>\n<!-- c -->\n<a:b x="1" y=\'2\'>t &amp; <![CDATA[<z>]]></a:b>',
        "xml",
    )
    assert spans(html, "pi") == ["&lt;?xml version=&#34;1.0&#34;?&gt;"]
    assert spans(html, "comment") == ["&lt;!-- c --&gt;"]
    assert spans(html, "tag") == ["a:b", "a:b"]
    assert spans(html, "attr") == ["x", "y"]
    assert spans(html, "string") == ["&#34;1&#34;", "&#39;2&#39;"]
    assert spans(html, "entity") == ["&amp;amp;"]
    assert spans(html, "cdata") == ["&lt;![CDATA[&lt;z&gt;]]&gt;"]


def test_json_tokens() -> None:
    html = highlight('{"a": "b", "n": -1.5e3, "ok": [true, null]}', "json")
    assert spans(html, "key") == ["&#34;a&#34;", "&#34;n&#34;", "&#34;ok&#34;"]
    assert spans(html, "string") == ["&#34;b&#34;"]
    assert spans(html, "number") == ["-1.5e3"]
    assert spans(html, "literal") == ["true", "null"]


def test_nothing_escapes_the_markup() -> None:
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)"> "</span><b>'
    for language in ("xml", "json", "text"):
        html = str(highlight(evil, language))
        for tag in TAGS.findall(html):
            assert re.fullmatch(r'</span>|<span class="hl-[a-z]+">', tag), tag


def test_broken_input_keeps_every_character() -> None:
    for text, language in (
        ("<a x=>< & <!-- open", "xml"),
        ('{"open": "str', "json"),
        ("<<<>>>&&&", "xml"),
    ):
        html = str(highlight(text, language))
        plain = TAGS.sub("", html).replace("&lt;", "<").replace("&gt;", ">")
        plain = plain.replace("&#34;", '"').replace("&#39;", "'").replace("&amp;", "&")
        assert plain == text


def test_large_values_are_shown_plain() -> None:
    text = "<a>" * (MAX_HIGHLIGHT_CHARS // 3 + 1)
    assert 'class="hl-' not in highlight(text, "xml")


def test_decoding_follows_the_declared_encoding_then_a_bom() -> None:
    assert decode("grüße".encode("iso-8859-1"), "text;encoding=ISO-8859-1") == "grüße"
    assert decode("<a/>".encode("utf-16"), "xml") == "<a/>"
    assert decode(b"\xef\xbb\xbf<a/>", "xml") == "<a/>"
    assert decode(b"\xff<a/>", "xml") == "\ufffd<a/>"


def test_the_ui_knows_every_entity_set_and_content_type() -> None:
    assert sorted(k.entity_set for k in SECTIONS) == sorted(PARTNER_ENTITY_SETS)
    assert set(CONTENT_TYPE_NAMES) == set(DOWNLOAD) == set(CONTENT_TYPES)


def test_pid_path_segments_survive_dot_segments() -> None:
    for pid in ("Sender_CERT", ".", "..", "...", "a.b", "<x>@~"):
        assert unsegment(unquote(segment(pid))) == pid
    assert segment("..") == "!.."
    assert segment("<a>") == "%3Ca%3E"

"""Fuzz the OData API: URLs, query options, headers, cookies and JSON/Atom bodies.

Each test sends what Hypothesis draws to one real server over a socket and checks the
property of :mod:`.fuzz_support`: an answer within 30 s, never a 5xx, and after a refused
write the store as it was. ``PARTNERGATE_FUZZ=long`` (``make fuzz``) tries many more.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from .fuzz_support import (
    ENTITY_SETS,
    KEYS,
    PRINTABLE_LATIN1,
    PROPERTIES,
    Target,
    entity_body,
    examples,
    json_value,
    key_predicate,
    start_target,
    stop_target,
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, own_store: str) -> Iterator[Target]:
    found = start_target(tmp_path_factory.mktemp("fuzz_api"), own_store)
    try:
        yield found
    finally:
        stop_target(found)


# --- URLs and query options ----------------------------------------------------------------

FUNCTIONS = {
    "substringof": 2,
    "startswith": 2,
    "endswith": 2,
    "length": 1,
    "tolower": 1,
    "toupper": 1,
    "trim": 1,
    "concat": 2,
    "indexof": 2,
    "substring": 2,
    "replace": 3,
    "year": 1,
    "day": 1,
    "round": 1,
    "nope": 1,
}
OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le", "and", "or", "add", "mod", "EQ", "eqq")

literal = st.one_of(
    st.text(PRINTABLE_LATIN1, max_size=6).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.text(PRINTABLE_LATIN1, max_size=6).map(lambda s: "'" + s + "'"),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(
        [
            "null",
            "true",
            "false",
            "datetime'2024-01-01T00:00:00'",
            "datetime'2024-13-99'",
            "guid'00000000-0000-0000-0000-000000000000'",
            "1.5M",
            "2L",
            "X'00'",
            "'",
            "''",
            "1e400",
            "-",
            "()",
            "binary'AA=='",
        ]
    ),
)


def filter_expression(props: tuple[str, ...]) -> st.SearchStrategy[str]:
    """A $filter from OData's grammar, near misses included. Replacements stay short:
    amplification through nested ``replace`` is a finding of its own (4)."""
    operand = st.one_of(st.sampled_from([*props, "Nope", "d/Pid"]), literal)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        call = st.sampled_from(sorted(FUNCTIONS)).flatmap(
            lambda f: st.lists(inner, min_size=0, max_size=FUNCTIONS[f] + 1).map(
                lambda args: f"{f}({','.join(args)})"
            )
        )
        binary = st.tuples(inner, st.sampled_from(OPERATORS), inner).map(" ".join)
        return st.one_of(
            call,
            binary,
            inner.map(lambda e: f"not {e}"),
            inner.map(lambda e: f"({e})"),
            inner.map(lambda e: f"({e}"),
        )

    tree = st.recursive(operand, extend, max_leaves=8)
    junk = st.text(string.printable, max_size=30)
    return st.one_of(tree, tree, junk)


@st.composite
def query_options(draw: st.DrawFn, entity_set: str) -> list[tuple[str, str]]:
    props = PROPERTIES.get(entity_set, ("Pid",))
    choices = {
        "$filter": filter_expression(props),
        "$orderby": st.lists(
            st.tuples(
                st.sampled_from([*props, "Nope", ""]), st.sampled_from(["", " asc", " desc", " x"])
            ).map("".join),
            max_size=3,
        ).map(",".join),
        "$select": st.lists(st.sampled_from([*props, "*", "Nope", "", " "]), max_size=3).map(
            ",".join
        ),
        "$top": st.one_of(st.integers(-5, 2**70).map(str), st.text(string.printable, max_size=5)),
        "$skip": st.one_of(st.integers(-5, 2**70).map(str), st.text(string.printable, max_size=5)),
        "$inlinecount": st.sampled_from(["allpages", "none", "", "ALLPAGES", "x"]),
        "$format": st.sampled_from(["json", "atom", "xml"]),
        "$expand": st.sampled_from(["Attachments", "x", ""]),
        "$skiptoken": st.text(string.printable, max_size=10),
        "user": st.text(PRINTABLE_LATIN1, max_size=10),
        "x": st.text(string.printable, max_size=5),
    }
    names = draw(st.lists(st.sampled_from(sorted(choices)), max_size=4))
    return [(name, draw(choices[name])) for name in names]


VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "#?")


def as_url(text: str) -> str:
    """Visible ASCII as it is (``%`` too, so broken escapes reach the server); the rest,
    which no client can put on a request line, percent-encoded."""
    return quote(text, safe=VISIBLE)


def encode_query(options: list[tuple[str, str]], raw: bool) -> str:
    if raw:  # as a careless client writes it: quotes, commas, & and = as they are
        return "&".join(as_url(f"{k}={v}") for k, v in options)
    return "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in options)


@st.composite
def api_path(draw: st.DrawFn) -> tuple[str, str]:
    entity_set = draw(st.sampled_from([*ENTITY_SETS, "Nope", "$metadata", "$count"]))
    path = entity_set
    if entity_set in KEYS and draw(st.booleans()):
        path += draw(key_predicate(entity_set))
        tail = st.sampled_from(
            ["", "", "/$value", "/Value", "/Value/$value", "/Attachments", "/$count", "/Pid/x", "/"]
        )
        path += draw(tail)
    elif draw(st.booleans()):
        path += draw(st.sampled_from(["/$count", "()", "/", "/$value"]))
    if draw(st.integers(0, 4)) == 0:  # escapes as a client could send them
        path = draw(
            st.sampled_from(
                [
                    path.replace("'", "%27"),
                    path.replace("P", "%50"),
                    path + "%",
                    path + "%zz",
                    path + "%C3%28",
                    path + "%00",
                    path + "%E2%82%AC",
                ]
            )
        )
    return entity_set, path


@examples(500)
@given(where=api_path(), options=st.data(), raw=st.booleans())
def test_urls_and_query_options(target: Target, where: tuple[str, str], options, raw) -> None:
    """Any path below /api/v1 with any query options: answered, never with a 5xx."""
    entity_set, path = where
    query = encode_query(options.draw(query_options(entity_set)), raw)
    url = "/api/v1/" + as_url(path) + ("?" + query if query else "")
    target.send("GET", url, headers={**target.authorized, "Accept": "application/json"})


@example(path="", value="bogus")
@example(path="StringParameters", value="")
@example(path="$metadata", value=" ")
@given(
    path=st.sampled_from(["", "StringParameters", "$metadata", "Partners('FZ_A')", "$batch"]),
    value=st.sampled_from(["JSON", "application/json", "", " ", "bogus", "atom "])
    | st.text(string.printable, max_size=8),
)
def test_format_option(target: Target, path: str, value: str) -> None:
    """Any ``$format`` on any resource: 406 or an answer, never a 5xx."""
    url = f"/api/v1/{path}?$format={quote(value, safe='')}"
    target.send("GET", url, headers={**target.authorized, "Accept": "application/json"})


# --- headers and cookies -------------------------------------------------------------------

ascii_value = st.text(string.printable.strip(" \t\n\r\x0b\x0c") + " ", max_size=40).map(str.strip)
media_type = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/atom+xml",
            "application/xml",
            "text/xml",
            "*/*",
            "application/json;odata=verbose",
            "application/json; charset=utf-16",
            "application/atom+xml;type=entry;charset=bogus",
            "multipart/mixed",
            "application/json;q=0",
            "text/html",
            "",
            ";",
            "application/",
            "/json",
            "application/json, application/xml;q=0.5",
            "application/json;q=abc",
        ]
    ),
    ascii_value,
)


@st.composite
def authorization(draw: st.DrawFn, target: Target) -> str | None:
    user, password = target.server.admin
    b64 = lambda s: base64.b64encode(s.encode("latin-1")).decode()  # noqa: E731
    return draw(
        st.sampled_from(
            [
                None,
                f"Basic {b64(user + ':' + password)}",
                f"Bearer {target.bearer}",
                f"bearer {target.bearer}",
                f"Basic {b64(user + ':wrong')}",
                f"Basic {b64('nobody:' + password)}",
                f"Basic {b64(user)}",
                "Basic",
                "Basic ",
                "Basic ===",
                "Basic !!!!",
                f"Basic {b64(':')}",
                "Bearer",
                "Bearer x.y.z",
                f"Bearer {target.bearer}x",
                "Digest username=admin",
                "Negotiate abc",
            ]
        )
        | ascii_value.map(lambda v: "Basic " + v)
        | ascii_value.map(lambda v: "Bearer " + v)
        | ascii_value
    )


FORGED_PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    + base64.encodebytes(b"\x30\x82\x01\x0a" + bytes(range(256))).decode()
    + "-----END CERTIFICATE-----\n"
)
cert_header = st.sampled_from(
    ["X-Forwarded-Client-Cert", "X-SSL-Client-Cert", "Client-Cert", "SSL_CLIENT_CERT"]
)
cert_value = st.one_of(
    st.just(quote(FORGED_PEM)),
    st.just('Hash=abc;Cert="' + quote(FORGED_PEM) + '";Subject="CN=admin"'),
    st.just(":" + base64.b64encode(b"\x30\x03\x02\x01\x00").decode() + ":"),
    ascii_value,
)
ENDPOINTS = (
    ("GET", "/api/v1/"),
    ("GET", "/api/v1/StringParameters?$top=2"),
    ("GET", "/api/v1/$metadata"),
    ("GET", "/api/v1/StringParameters(Pid='FZ_A',Id='ADDRESS')"),
    ("POST", "/api/v1/StringParameters"),
    ("DELETE", "/api/v1/StringParameters(Pid='FZ_B',Id='x')"),
    ("POST", "/api/v1/$batch"),
    ("POST", "/oauth/token"),
    ("GET", "/whoami"),
    ("GET", "/ui/"),
    ("GET", "/ui/partners"),
    ("GET", "/health"),
)


@st.composite
def header_set(draw: st.DrawFn, target: Target) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    auth = draw(authorization(target))
    if auth is not None:
        headers.append(("Authorization", auth))
    if draw(st.booleans()):
        headers.append(("Accept", draw(media_type)))
    if draw(st.booleans()):
        headers.append(("Content-Type", draw(media_type)))
    if draw(st.booleans()):
        headers.append(
            ("X-CSRF-Token", draw(st.sampled_from(["Fetch", "fetch", "", "x"]) | ascii_value))
        )
    for _ in range(draw(st.integers(0, 2))):
        headers.append((draw(cert_header), draw(cert_value)))
    if draw(st.booleans()):
        name = draw(st.sampled_from(["PG_SESSIONID", "PG_FLASH", "PG_CSRF", "x"]))
        value = draw(st.sampled_from(["", "a.b.c", "a.b.c.d", ".", "%%", '"q"']) | ascii_value)
        headers.append(("Cookie", f"{name}={value}"))
    if draw(st.booleans()):
        headers.append(
            draw(
                st.sampled_from(
                    [
                        ("X-HTTP-Method", "MERGE"),
                        ("X-HTTP-Method", "DELETE"),
                        ("Host", "evil.example"),
                        ("Expect", "100-continue"),
                        ("Content-Encoding", "gzip"),
                        ("Origin", "https://evil.example"),
                    ]
                )
            )
        )
    return headers


@examples(300)
@given(data=st.data())
def test_headers_and_cookies(target: Target, data: st.DataObject) -> None:
    """Any Accept, Content-Type, Authorization, CSRF token, forged certificate header and
    cookie, on the API, the token endpoint, /whoami and the UI: never a 5xx; and no
    forged header lets a caller in without a credential."""
    method, url = data.draw(st.sampled_from(ENDPOINTS))
    headers = data.draw(header_set(target))
    body = data.draw(
        st.sampled_from(
            [
                None,
                b"{}",
                b'{"Pid":"FZ_C","Id":"h","Value":"v"}',
                b"grant_type=client_credentials",
                b"\xff",
            ]
        )
    )
    r = target.send(method, url, headers=headers, content=body)
    names = {k.lower() for k, v in headers}
    credential = "authorization" in names or any(
        k.lower() == "cookie" and v.startswith("PG_SESSIONID") for k, v in headers
    )
    if not credential and url.startswith("/api/v1/") and "$metadata" not in url:
        assert r.status_code in (401, 403), f"no credential, yet {r.status_code}"


@given(data=st.data())
def test_header_bytes_outside_ascii(target: Target, data: st.DataObject) -> None:
    """Credentials and cookies that are not ASCII text: 4xx, never a 5xx."""
    method, url = data.draw(st.sampled_from(ENDPOINTS))
    raw = data.draw(st.binary(min_size=1, max_size=20).filter(lambda b: any(c > 127 for c in b)))
    raw = bytes(c for c in raw if c >= 0x20 and c != 0x7F) or b"\xe9"
    name, prefix = data.draw(
        st.sampled_from(
            [
                ("Authorization", b"Basic "),
                ("Authorization", b"Bearer "),
                ("Authorization", b""),
                ("Cookie", b"PG_SESSIONID=a.b.c."),
                ("Cookie", b"PG_SESSIONID="),
                ("X-CSRF-Token", b""),
                ("Accept", b"application/"),
                ("Content-Type", b"text/"),
                ("X-SSL-Client-Cert", b""),
            ]
        )
    )
    target.send(method, url, headers=[(name, prefix + raw)], content=None)


# --- JSON and Atom bodies ------------------------------------------------------------------

WRITABLE = tuple(s for s in ENTITY_SETS if not s.startswith("MessageProcessing"))


@st.composite
def write_request(draw: st.DrawFn) -> tuple[str, str]:
    entity_set = draw(st.sampled_from([*WRITABLE, "MessageProcessingLogs"]))
    method = draw(st.sampled_from(["POST", "POST", "PUT", "MERGE", "PATCH", "DELETE"]))
    if method == "POST":
        return method, entity_set
    return method, entity_set + draw(key_predicate(entity_set))


@given(where=write_request(), data=st.data())
def test_json_writes(target: Target, where: tuple[str, str], data: st.DataObject) -> None:
    """POST, PUT, MERGE, PATCH and DELETE on every entity set with any JSON body:
    never a 5xx, and a refused write changes nothing."""
    method, path = where
    entity_set = path.split("(")[0]
    kind = data.draw(st.sampled_from(["entity", "entity", "entity", "wrapped", "any", "bytes"]))
    if kind == "bytes":
        body = data.draw(st.binary(max_size=40))
    elif kind == "any":
        body = json.dumps(data.draw(json_value)).encode()
    else:
        entity = data.draw(entity_body(entity_set))
        body = json.dumps({"d": entity} if kind == "wrapped" else entity).encode()
    content_type = data.draw(
        st.sampled_from(["application/json", "application/json;charset=utf-8", "text/plain", ""])
    )
    headers = {**target.authorized, "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    target.send(method, "/api/v1/" + as_url(path), headers=headers, content=body)


ANY_UNICODE = st.text(st.characters(), min_size=1, max_size=12)
VALID = {
    "StringParameters": {"Pid": "FZ_U", "Id": "u", "Value": "v"},
    "BinaryParameters": {"Pid": "FZ_U", "Id": "u", "ContentType": "xml", "Value": "PGEvPg=="},
    "UserCredentialParameters": {"Pid": "FZ_U", "Id": "u", "User": "u", "Password": "p"},
    "AlternativePartners": {"Agency": "A", "Scheme": "S", "Id": "i", "Pid": "FZ_U"},
    "AuthorizedUsers": {"User": "fz_u", "Pid": "FZ_U"},
    "CertificateMappingRules": {
        "Id": "r",
        "Kind": "Thumbprint",
        "User": "u",
        "Thumbprint": "ab" * 32,
    },
}
"""One entity of each set that the API accepts; the unicode test changes one value."""


@example(entity_set="AuthorizedUsers", name="User", value="euro€user")
@example(entity_set="AuthorizedUsers", name="User", value="nl\nuser")
@example(entity_set="AuthorizedUsers", name="User", value="İ" * 150)
@example(entity_set="StringParameters", name="Value", value="a\x00b")
@given(
    entity_set=st.sampled_from(sorted(VALID)),
    name=st.sampled_from(["Pid", "Id", "User", "Value", "Agency", "Scheme"]),
    value=ANY_UNICODE | st.sampled_from(["\ud800", "\u2028", "ß" * 60, "ﬃ" * 60]),
)
def test_json_writes_any_unicode(target: Target, entity_set: str, name: str, value: str) -> None:
    """An accepted entity with one value holding any Unicode code point (NUL, line
    breaks, lone surrogates, characters that grow when case-folded): 201, or a 4xx that
    changes nothing, on both stores alike."""
    entity = dict(VALID[entity_set])
    if name not in entity:
        name = "Pid" if "Pid" in entity else "Id"
    entity[name] = value
    body = json.dumps(entity).encode()
    headers = {
        **target.authorized,
        "Accept": "application/json",
        "Content-Type": "application/json",
    }
    target.send("POST", "/api/v1/" + entity_set, headers=headers, content=body)


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def atom_entry(draw: st.DrawFn, entity_set: str) -> bytes:
    entity = draw(entity_body(entity_set))
    props = "".join(
        f"<d:{name}>{_xml_escape(str(value))}</d:{name}>"
        for name, value in entity.items()
        if name.isidentifier()
    )
    head = draw(
        st.sampled_from(
            [
                '<?xml version="1.0" encoding="utf-8"?>',
                "",
                '<?xml version="1.0" encoding="bogus"?>',
                '<?xml version="1.0" encoding="utf-16"?>',
                '<!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>',
                "<!DOCTYPE e>",
            ]
        )
    )
    text = (
        f'{head}<entry xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata" '
        'xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices">'
        f'<content type="application/xml"><m:properties>{props}</m:properties></content></entry>'
    )
    mutation = draw(st.integers(0, 5))
    if mutation == 1:
        text = text[: draw(st.integers(0, len(text)))]
    elif mutation == 2:
        text = text.replace("<m:properties>", "<m:properties><d:Pid>&b;</d:Pid>")
    elif mutation == 3:
        text = text.replace("d:", "x:")
    encoded = text.encode("utf-8", "surrogatepass")
    if mutation == 4:
        at = draw(st.integers(0, len(encoded)))
        encoded = encoded[:at] + draw(st.binary(max_size=8)) + encoded[at:]
    return encoded


@given(where=write_request(), data=st.data())
def test_atom_writes(target: Target, where: tuple[str, str], data: st.DataObject) -> None:
    """The same writes with Atom entries, broken ones and ones with a DOCTYPE included."""
    method, path = where
    entity_set = path.split("(")[0]
    body = data.draw(atom_entry(entity_set))
    headers = {
        **target.authorized,
        "Accept": data.draw(st.sampled_from(["application/atom+xml", "application/json"])),
        "Content-Type": data.draw(
            st.sampled_from(
                ["application/atom+xml", "application/atom+xml;type=entry", "application/xml"]
            )
        ),
    }
    target.send(method, "/api/v1/" + as_url(path), headers=headers, content=body)

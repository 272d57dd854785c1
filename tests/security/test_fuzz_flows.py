"""Fuzz the flow endpoints with XML, JSON and SOAP bodies, as an authorised sender.

The seed flows (``examples/partner-directory``: the sender flow and the two SOAP receiver
flows it calls) and small flows of ``fuzz_flows/`` with a JSONPath, an XSLT, a script and
a template step. A sender's mistake is a 4xx; a 5xx is for a broken flow, and these are
not broken. External entities are left to the XML door's own tests (findings 1, 2): an
``http:`` one freezes today's server.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from .fuzz_support import ANY_TEXT_CHAR, Target, json_value, start_target, stop_target

REPO = Path(__file__).resolve().parents[2]
SEED_FLOWS = REPO / "examples" / "partner-directory"
FUZZ_FLOWS = Path(__file__).parent / "fuzz_flows"
SENDER = ("user_for_sender_basic", secrets.token_urlsafe(10))
RECEIVER = ("user_receiver_1", secrets.token_urlsafe(10))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, own_store: str) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("fuzz_flows")
    flows = tmp / "flows"
    shutil.copytree(FUZZ_FLOWS, flows)
    for seed in SEED_FLOWS.glob("*.yaml"):
        shutil.copy(seed, flows / seed.name)
    found = start_target(tmp, own_store, {"PARTNERGATE_FLOWS": str(flows)})
    try:
        server = found.server
        server.add_user(*SENDER)
        server.add_user(RECEIVER[0], RECEIVER[1], "receiver_1.send", "receiver_2.send")
        for n in (1, 2):
            for set_name, body in (
                ("StringParameters", {"Id": "ADDRESS", "Value": f"{server.url}/cxf/receiver_{n}"}),
                (
                    "UserCredentialParameters",
                    {"Id": "USER", "User": RECEIVER[0], "Password": RECEIVER[1]},
                ),
            ):
                r = found.admin.post(set_name, json={"Pid": f"Receiver_{n}", **body})
                assert r.status_code == 201, r.text
        r = found.admin.post("AuthorizedUsers", json={"User": SENDER[0], "Pid": "Sender_BASIC"})
        assert r.status_code == 201, r.text
        found.directory_untouched = True
        yield found
    finally:
        stop_target(found)


@pytest.fixture(autouse=True)
def directory_unchanged(target: Target) -> Iterator[None]:
    """No flow here writes the Partner Directory: after all of a test's messages it is
    what it was before them."""
    before = target.take_snapshot()
    yield
    changed = target.changes(before, target.take_snapshot())
    assert not changed, f"messages changed the Partner Directory: {changed}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


NAMES = st.sampled_from(["Message", "Receiver", "Sender", "a", "b", "x:y", "Item", "_", "Ä"])
TEXTS = st.one_of(
    st.sampled_from(["Receiver_1", "Receiver_2", "Sender_BASIC", "Sender_CERT", "Nope", ""]),
    st.text(ANY_TEXT_CHAR, max_size=20).map(_escape),
    st.sampled_from(
        [
            "&amp;",
            "&#x41;",
            "&#0;",
            "&#xD800;",
            "&lt;",
            "&e;",
            "<![CDATA[<x>]]>",
            "<!-- c -->",
            "<?pi x?>",
        ]
    ),
)


def element(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(NAMES, st.lists(inner, max_size=3)).map(
        lambda t: f"<{t[0]}>{''.join(t[1])}</{t[0]}>"
    )


xml_tree = st.recursive(TEXTS, element, max_leaves=10)


@st.composite
def xml_body(draw: st.DrawFn) -> str:
    receiver = draw(st.sampled_from(["Receiver_1", "Receiver_2", "Nope", ""]))
    sender = draw(st.sampled_from([None, "Sender_BASIC", "Sender_OAUTH", ""]))
    claim = "" if sender is None else f"<Sender>{sender}</Sender>"
    root = draw(
        st.one_of(
            st.just(f"<Message>{claim}<Receiver>{receiver}</Receiver>{draw(xml_tree)}</Message>"),
            element(xml_tree),
        )
    )
    depth = draw(st.sampled_from([0, 0, 0, 30, 80]))
    if depth:  # below 100 in all: deeper is finding 10, tried below
        root = "<a>" * depth + root + "</a>" * depth
    prolog = draw(
        st.sampled_from(
            [
                "",
                '<?xml version="1.0"?>',
                '<?xml version="1.0" encoding="UTF-8"?>',
                '<?xml version="1.1"?>',
                '<?xml version="2.0"?>',
                '<!DOCTYPE Message [<!ENTITY e "Receiver_1">]>',
                '<!DOCTYPE Message [<!ENTITY a "aaaaaaaa"><!ENTITY e "&a;&a;&a;&a;&a;&a;">]>',
                '<!DOCTYPE Message [<!ELEMENT Message ANY><!ATTLIST Message x CDATA "d">]>',
            ]
        )
    )
    return prolog + root


SOAP_NS = {
    "1.1": "http://schemas.xmlsoap.org/soap/envelope/",
    "1.2": "http://www.w3.org/2003/05/soap-envelope",
}


@st.composite
def soap_body(draw: st.DrawFn) -> str:
    ns = SOAP_NS[draw(st.sampled_from(sorted(SOAP_NS)))]
    inner = draw(st.lists(xml_body(), max_size=2)).__iter__()
    payload = "".join(s.split("?>", 1)[-1] if s.startswith("<?") else s for s in inner)
    payload = payload if "<!DOCTYPE" not in payload else ""
    header = draw(st.sampled_from(["", "<s:Header/>", "<s:Header><x>1</x></s:Header>"]))
    body = draw(
        st.sampled_from(
            [
                f"<s:Body>{payload}</s:Body>",
                "<s:Body/>",
                f"<s:Body><s:Fault><faultcode>s:Client</faultcode></s:Fault>{payload}</s:Body>",
                payload,
            ]
        )
    )
    return f'<s:Envelope xmlns:s="{ns}">{header}{body}</s:Envelope>'


@st.composite
def message(draw: st.DrawFn, charsets: st.SearchStrategy[str]) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["xml", "xml", "soap", "json", "bytes"]))
    if kind == "json":
        text = json.dumps(draw(st.one_of(json_value, json_value.map(lambda v: {"a": v, "b": [v]}))))
        media = draw(st.sampled_from(["application/json", "text/plain", "application/xml"]))
    elif kind == "bytes":
        text = None
        media = draw(st.sampled_from(["application/octet-stream", "text/xml", "application/json"]))
    else:
        text = draw(soap_body() if kind == "soap" else xml_body())
        media = draw(
            st.sampled_from(["text/xml", "application/xml", "application/soap+xml", "text/plain"])
        )
    charset = draw(charsets)
    if text is None:
        body = draw(st.binary(max_size=60))
    else:
        codec = charset.lower() if charset.lower() in ("utf-16", "iso-8859-1") else "utf-8"
        body = text.encode(codec, "replace")
        mutation = draw(st.integers(0, 5))
        if mutation == 1:
            body = body[: draw(st.integers(0, len(body)))]
        elif mutation == 2:
            at = draw(st.integers(0, len(body)))
            body = body[:at] + draw(st.binary(max_size=6)) + body[at:]
    content_type = media + (f"; charset={charset}" if charset else "")
    return content_type, body


ENDPOINTS = (
    "/http/partner_directory",
    "/cxf/receiver_1",
    "/http/fuzz/json",
    "/http/fuzz/xslt",
    "/http/fuzz/script",
    "/http/fuzz/template",
)
KNOWN_CHARSETS = st.sampled_from(["", "", "utf-8", "UTF-8", "iso-8859-1", "utf-16", "us-ascii"])


def post(target: Target, endpoint: str, content_type: str, body: bytes) -> None:
    auth = RECEIVER if endpoint.startswith("/cxf/") else SENDER
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": content_type}
    target.send("POST", endpoint, headers=headers, content=body, server_error_ok=sender_fault)


def sender_fault(response: httpx.Response) -> bool:
    """SOAP sends every fault with HTTP 500 (SOAP 1.1, section 6.2); one whose code blames
    the sender (``Client``, SOAP 1.2 ``Sender``) is the SOAP form of a 4xx."""
    return response.status_code == 500 and (
        b"<faultcode>soap:Client</faultcode>" in response.content
        or b"<soap:Value>soap:Sender</soap:Value>" in response.content
    )


@given(endpoint=st.sampled_from(ENDPOINTS), request=message(KNOWN_CHARSETS))
def test_flow_messages(target: Target, endpoint: str, request: tuple[str, bytes]) -> None:
    """XML, SOAP, JSON and raw bodies, in charsets that exist: a 2xx or a 4xx, never a 5xx,
    and the Partner Directory as it was."""
    post(target, endpoint, *request)


@example(endpoint="/http/fuzz/template", request=("text/plain; charset=bogus", b"<a/>"))
@example(endpoint="/http/fuzz/script", request=("text/plain; charset=bogus", b"<a/>"))
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    request=message(st.sampled_from(["bogus", "utf-7", "x-unknown", "utf-8\x22", "", "latin1"])),
)
def test_flow_messages_any_charset(
    target: Target, endpoint: str, request: tuple[str, bytes]
) -> None:
    """The same with charsets that do not exist: 415 or an answer, never a 5xx."""
    post(target, endpoint, *request)


@example(depth=101, endpoint="/http/fuzz/xslt")
@given(depth=st.integers(90, 400), endpoint=st.sampled_from(ENDPOINTS))
def test_deep_xml(target: Target, depth: int, endpoint: str) -> None:
    """XML nested deeper than a step can take: 400 naming the limit, never a 5xx."""
    body = "<a>" * depth + "<Message><Receiver>Receiver_1</Receiver></Message>" + "</a>" * depth
    post(target, endpoint, "application/xml", body.encode())

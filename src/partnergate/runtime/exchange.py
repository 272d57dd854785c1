"""The message exchange a flow works on, and the reply it ends with.

Lives here: body bytes, case-insensitive headers, properties, the identity the sender
adapter established, and the parsed forms of the body that steps share. Must not know:
HTTP frameworks (the web layer builds an :class:`Exchange` and sends a :class:`Reply`).

Headers travel with the message and may go out to a receiver; properties stay inside the
flow, as in SAP Cloud Integration.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ..security import xmldoor
from .errors import StepError
from .messagelog import Attachment, keep

AUTHENTICATED_USER = "SapAuthenticatedUserName"
MESSAGE_ID = "SAP_MessageProcessingLogID"
RESPONSE_CODE = "CamelHttpResponseCode"
CORRELATION_ID = "SAP_MplCorrelationId"
"""SAP's header that carries a message's correlation ID to the flow it calls."""
_CORRELATION_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
MAX_CUSTOM_PROPERTIES = 100
"""Custom header properties one message may record; more are dropped."""

INBOUND_HEADERS_DROPPED = frozenset(
    h.lower()
    for h in (
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Host",
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "TE",
        "Trailer",
        "Upgrade",
        "Content-Length",
        "Expect",
        AUTHENTICATED_USER,
        MESSAGE_ID,
    )
)
"""Sender headers that never enter a flow: credentials, hop-by-hop, and the adapter's own."""

_ALPHANUMERIC = str.maketrans("-_", "XY")
_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PAIRS = [high + low for high in _BASE36 for low in _BASE36]
"""Two base-36 digits by value (0 to 1295): a new millisecond is nearly every message's."""


_PREFIX = (0, "")
"""The last millisecond and its digits: messages of the same millisecond share them."""
_RANDOM = threading.local()
_RANDOM_BYTES = 14
_RANDOM_BATCH = 64


def _random_bytes() -> bytes:
    """14 bytes from ``os.urandom``, fetched 64 ids at a time per thread: one system call
    per message was a measurable part of a short flow."""
    pool: bytes = getattr(_RANDOM, "pool", b"")
    if not pool:
        pool = os.urandom(_RANDOM_BYTES * _RANDOM_BATCH)
    _RANDOM.pool = pool[_RANDOM_BYTES:]
    return pool[:_RANDOM_BYTES]


def new_message_id() -> str:
    """A 28-character MessageGuid, the length and alphabet SAP's look like, that sorts by
    time: the millisecond in 9 base-36 digits (until the year 5138), then 112 random bits
    in URL-safe base64 with its two symbols replaced by letters (still over 100 bits).

    Time order keeps each new key at the end of the log's primary-key index: with random
    keys every insert lands on a random page, and writing the log slows as it grows.
    Digits and capitals sort the same in every collation, PostgreSQL's too.
    """
    global _PREFIX
    ms = time.time_ns() // 1_000_000
    at, prefix = _PREFIX
    if at != ms:
        rest, d4 = divmod(ms, 1296)
        rest, d3 = divmod(rest, 1296)
        rest, d2 = divmod(rest, 1296)
        rest, d1 = divmod(rest, 1296)
        prefix = _BASE36[rest % 36] + _PAIRS[d1] + _PAIRS[d2] + _PAIRS[d3] + _PAIRS[d4]
        _PREFIX = (ms, prefix)
    suffix = base64.urlsafe_b64encode(_random_bytes()).decode("ascii").translate(_ALPHANUMERIC)
    return prefix + suffix[:19]


MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays and objects a JSON body may have, as XML's limit."""


def _json_depth_exceeds(data: Any, limit: int) -> bool:
    """Whether ``data`` nests arrays and objects deeper than ``limit``, without recursion."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return False


def unsupported_charset(charset: str) -> StepError:
    return StepError(415, f"the message's charset {charset[:60]!r} is not supported")


class Headers(MutableMapping[str, str]):
    """Header names compare case-insensitively and keep the spelling last set."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, tuple[str, str]] = {
            name.lower(): (name, str(value)) for name, value in pairs
        }

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        """Without the ``KeyError`` that ``Mapping.get`` raises and catches for a miss."""
        found = self._items.get(name.lower())
        return default if found is None else found[1]

    def __setitem__(self, name: str, value: str) -> None:
        self._items[name.lower()] = (name, str(value))

    def __delitem__(self, name: str) -> None:
        del self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass
class Reply:
    """What the sender gets back."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Exchange:
    """One message on its way through a flow.

    ``user`` is the authenticated user as the adapter saw it; ``sender_partner`` and
    ``receiver_partner`` are the Pids once known (the message processing log shows them).
    """

    body: bytes = b""
    headers: Headers = field(default_factory=Headers)
    properties: dict[str, Any] = field(default_factory=dict)
    message_id: str = field(default_factory=new_message_id)
    user: str | None = None
    sender_partner: str | None = None
    receiver_partner: str | None = None
    status: int = 200
    attachments: list[Attachment] = field(default_factory=list)
    """What ``log-attachment`` steps kept for the message processing log."""
    correlation_id: str = ""
    """The exchange this message belongs to; its own id unless a caller sent one."""
    custom_properties: list[tuple[str, str]] = field(default_factory=list)
    """Business keys recorded for the monitor (SAP's custom header properties)."""
    adapter_attributes: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the running step looked up or called, for its line in the processing log."""
    secrets: list[str] = field(default_factory=list)
    """Credential values the flow handled; a trace masks them."""
    _xml: tuple[bytes, etree._Element] | None = field(default=None, repr=False)
    _json: tuple[bytes, Any] | None = field(default=None, repr=False)

    @classmethod
    def inbound(
        cls,
        body: bytes,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        *,
        user: str | None,
        message_id: str | None = None,
        sender_partner: str | None = None,
    ) -> Exchange:
        """The exchange a sender adapter hands to a flow.

        Drops credentials and hop-by-hop headers and sets the headers SAP's adapters set,
        so a flow can never read a spoofed ``SapAuthenticatedUserName``.
        """
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        kept = Headers((n, v) for n, v in pairs if n.lower() not in INBOUND_HEADERS_DROPPED)
        exchange = cls(
            body=body,
            headers=kept,
            message_id=message_id or new_message_id(),
            user=user,
            sender_partner=sender_partner,
        )
        given = kept.get(CORRELATION_ID, "").strip()
        exchange.correlation_id = given if _CORRELATION_ID.fullmatch(given) else exchange.message_id
        if user is not None:
            exchange.headers[AUTHENTICATED_USER] = user
        exchange.headers[MESSAGE_ID] = exchange.message_id
        return exchange

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    def text(self) -> str:
        """The body as text: the charset of the Content-Type, else UTF-8.

        A charset Python does not know is the sender's mistake: :class:`StepError` 415.
        """
        charset = "utf-8"
        ctype = self.content_type or ""
        for part in ctype.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip().strip('"')
        try:  # also refuses codecs that are no text encoding, e.g. "base64" or "zlib"
            return self.body.decode(charset, errors="replace")
        except (LookupError, ValueError):  # ValueError: e.g. a NUL in the name
            raise unsupported_charset(charset) from None

    def xml(self) -> etree._Element:
        """The body parsed by the XML door, once per body; raises
        :class:`~partnergate.security.xmldoor.XmlRefused` (a ``ValueError``) otherwise."""
        if self._xml is not None and self._xml[0] is self.body:
            return self._xml[1]
        root = xmldoor.parse(self.body, what="the message")
        self._xml = (self.body, root)
        return root

    def json(self) -> Any:
        """The body parsed as JSON, once per body; raises ``ValueError`` if it is not JSON
        or nests deeper than :data:`MAX_JSON_DEPTH`."""
        if self._json is not None and self._json[0] is self.body:
            return self._json[1]
        too_deep = f"the message's JSON is nested deeper than {MAX_JSON_DEPTH} levels"
        try:
            data = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"the message is not JSON ({exc})") from None
        except RecursionError:
            raise ValueError(too_deep) from None
        body = self.body
        if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _json_depth_exceeds(
            data, MAX_JSON_DEPTH
        ):
            raise ValueError(too_deep)
        self._json = (self.body, data)
        return data

    def __post_init__(self) -> None:
        if not self.correlation_id:
            self.correlation_id = self.message_id

    def note(self, text: str) -> None:
        """Say what the running step did, in a few words (the log keeps the line)."""
        self.notes.append(text)

    def add_custom_property(self, name: str, value: object) -> None:
        """Record a business key (order number, GLN) the monitor can search by."""
        if len(self.custom_properties) >= MAX_CUSTOM_PROPERTIES:
            return
        name = "".join(c for c in str(name) if c >= " ").strip()[:200]
        if name:
            text = "".join(c for c in str(value) if c >= " ")[:2000]
            self.custom_properties.append((name, text))

    def reply(self) -> Reply:
        """The exchange as it stands, as the answer to the sender."""
        return Reply(
            status=self.status,
            body=self.body,
            content_type=self.content_type,
            headers={MESSAGE_ID: self.message_id},
        )

    # SAP's Message API (getBody/setBody/getHeader/...), for script steps.

    def get_body(self, as_type: type = bytes) -> Any:
        return self.text() if as_type is str else self.body

    def set_body(self, body: bytes | str) -> None:
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)

    def get_header(self, name: str) -> str | None:
        return self.headers.get(name)

    def set_header(self, name: str, value: object) -> None:
        self.headers[name] = str(value)

    def get_headers(self) -> Headers:
        return self.headers

    def get_property(self, name: str) -> Any:
        return self.properties.get(name)

    def set_property(self, name: str, value: Any) -> None:
        self.properties[name] = value

    def get_properties(self) -> dict[str, Any]:
        return self.properties

    @property
    def message_log(self) -> ScriptMessageLog:
        """SAP's ``messageLogFactory.getMessageLog(message)``, for scripts."""
        return ScriptMessageLog(self)


class ScriptMessageLog:
    """What a script may add to its message's processing log entry."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def add_attachment_as_string(
        self, name: str, text: str, media_type: str = "text/plain"
    ) -> None:
        """SAP's ``addAttachmentAsString``: kept as UTF-8, at most 1 MiB."""
        self._exchange.attachments.append(keep(str(name), media_type, str(text).encode()))

    def add_custom_header_property(self, name: str, value: object) -> None:
        """SAP's ``addCustomHeaderProperty``: a business key the monitor can search by."""
        self._exchange.add_custom_property(name, value)

    addCustomHeaderProperty = add_custom_header_property  # noqa: N815 - SAP's Groovy name

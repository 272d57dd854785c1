"""OData V2 ``$batch``: parse a ``multipart/mixed`` request body, serialise the answer.

Sans-I/O: bytes in, bytes out. The web layer executes the parts (a change set in one
transaction) and hands the responses back here.

Wire format, and where each rule comes from:

* The body is a MIME multipart message (RFC 2046 §5.1). Its parts are either single
  requests (``Content-Type: application/http``, ``Content-Transfer-Encoding: binary``)
  or change sets, themselves ``multipart/mixed`` with ``application/http`` parts
  ([MS-ODATA] §2.2.7.6, "Batch Request"; odata.org "OData Version 2.0 Batch Processing").
* Outside a change set only queries (``GET``) are allowed; inside one only
  ``POST``/``PUT``/``MERGE``/``PATCH``/``DELETE``; change sets do not nest (same sources).
* The response mirrors the request part for part; a change set that fails is answered by
  one response in place of the whole change set ([MS-ODATA] §2.2.7.6.6, "Batch Responses").
  pyodata relies on that: a single response where it sent a change set means "failed".
* SAP's Partner Directory example (SAP-doc "Mass Create/Change/Delete Operations in One
  Transaction for StringParameter, BinaryParameter, AlternativePartner, and AuthorizedUser",
  loio fe81049e51af492bbd30c4591e2aa6f8) shows the part layout we answer with.

Leniency, each for a client that really sends it:

* bare LF line endings: SAP's documented example, and requests typed by hand;
* no blank line between a change set's part headers and its first delimiter: SAP's
  documented example;
* ``Content-Transfer-Encoding:binary`` without a space: pyodata;
* an inner ``Content-Length`` is not trusted: the delimiter ends the body (RFC 2046
  §5.1.1). SAP's documented example declares 53 bytes for a 25-byte body;
* empty lines before a request line are skipped (RFC 7230 §3.5).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from .errors import BadRequest
from .headers import check_field
from .paths import request_target

__all__ = [
    "BatchPart",
    "BatchResponse",
    "ChangeSet",
    "Headers",
    "parse_batch",
    "serialize_batch",
    "serialize_item",
]

#: Requests a batch may hold in all, change set members included.
DEFAULT_MAX_PARTS = 5000
#: Size of one header section (MIME part headers, or request line and HTTP headers).
#: h11 uses the same 16 KiB ceiling for an HTTP head.
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
#: Header fields in one header section.
MAX_HEADER_FIELDS = 100

QUERY_METHODS = frozenset({"GET"})
CHANGE_METHODS = frozenset({"POST", "PUT", "MERGE", "PATCH", "DELETE"})

# RFC 7230 §3.2.6: token = 1*tchar
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# RFC 7230 §3.2: field-name ":" OWS field-value OWS, no whitespace before the colon.
_FIELD = re.compile(rb"(" + _TOKEN.encode() + rb"):(.*)")
# RFC 7230 §3.1.1: request-line = method SP request-target SP HTTP-version
_REQUEST_LINE = re.compile(rb"(" + _TOKEN.encode() + rb") (\S+) HTTP/1\.[01]")
# RFC 2046 §5.1.1: boundary := 0*69<bchars> bcharsnospace
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_MEDIA_TYPE = re.compile(rf"\s*({_TOKEN}/{_TOKEN})\s*")
_PARAMETER = re.compile(rf';\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*')
_IDENTITY_ENCODINGS = frozenset({"binary", "7bit", "8bit"})
_DSV_2 = ("DataServiceVersion", "2.0")


class Headers(Mapping[str, str]):
    """Header fields in the order received; lookup ignores case (RFC 7230 §3.2).

    A field that occurs more than once reads as its values joined by ``", "``
    (RFC 7230 §3.2.2); ``raw`` keeps every field as sent.
    """

    __slots__ = ("_index", "raw")

    def __init__(self, raw: Iterable[tuple[str, str]] = ()) -> None:
        self.raw: list[tuple[str, str]] = list(raw)
        self._index: dict[str, str] = {}
        for name, value in self.raw:
            key = name.lower()
            self._index[key] = f"{self._index[key]}, {value}" if key in self._index else value

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._index.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"Headers({self.raw!r})"


@dataclass(slots=True)
class BatchPart:
    """One request of a batch. ``url`` is the request target as written, usually
    relative to the service root (``StringParameters(Pid='a',Id='b')?user=x``)."""

    method: str
    url: str
    headers: Headers
    body: bytes = b""
    content_id: str | None = None


@dataclass(slots=True)
class ChangeSet:
    """Requests that succeed or fail together, in one transaction."""

    parts: list[BatchPart]


@dataclass(slots=True)
class BatchResponse:
    """The answer to one part. ``Content-Length`` and ``DataServiceVersion`` are added
    on serialisation; ``content_id`` echoes the request's Content-ID in the MIME part
    headers ([MS-ODATA] §2.2.7.6.6)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_id: str | None = None


# --------------------------------------------------------------------------- parsing


def parse_batch(
    content_type: str,
    body: bytes,
    *,
    max_parts: int = DEFAULT_MAX_PARTS,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> list[BatchPart | ChangeSet]:
    """Parse a ``$batch`` request body into queries and change sets, in order.

    ``content_type`` is the request's ``Content-Type`` header. Anything malformed
    raises :class:`BadRequest` naming the part, e.g. ``part 2.1`` for the first
    request of the change set in the second part.
    """
    boundary = _multipart_boundary(content_type, "$batch request")
    limits = _Limits(max_parts, max_header_bytes)
    items: list[BatchPart | ChangeSet] = []
    for number, raw in enumerate(_split_multipart(body, boundary, "$batch request", max_parts), 1):
        label = f"part {number}"
        mime_headers, content = _read_mime_part(raw, label, limits)
        media_type, _ = _content_type(mime_headers, label)
        if media_type == "multipart/mixed":
            items.append(_parse_change_set(mime_headers, content, label, limits))
        elif media_type == "application/http":
            _check_transfer_encoding(mime_headers, label)
            items.append(_parse_request(content, mime_headers, label, limits, in_change_set=False))
        else:
            raise BadRequest(
                f"Batch {label}: Content-Type must be application/http or multipart/mixed"
                f" (a change set), not {media_type}"
            )
    return items


@dataclass(slots=True)
class _Limits:
    max_parts: int
    max_header_bytes: int
    parts: int = 0

    def count_part(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise BadRequest(f"$batch holds more than {self.max_parts} requests")


def _parse_change_set(
    mime_headers: Headers, content: bytes, label: str, limits: _Limits
) -> ChangeSet:
    boundary = _multipart_boundary(mime_headers["Content-Type"], f"change set in {label}")
    parts: list[BatchPart] = []
    seen_ids: set[str] = set()
    raws = _split_multipart(content, boundary, f"change set in {label}", limits.max_parts)
    for number, raw in enumerate(raws, 1):
        inner = f"{label}.{number}"
        inner_headers, inner_content = _read_mime_part(raw, inner, limits)
        media_type, _ = _content_type(inner_headers, inner)
        if media_type == "multipart/mixed":
            raise BadRequest(f"Batch {inner}: change sets cannot be nested")
        if media_type != "application/http":
            raise BadRequest(
                f"Batch {inner}: Content-Type must be application/http, not {media_type}"
            )
        _check_transfer_encoding(inner_headers, inner)
        part = _parse_request(inner_content, inner_headers, inner, limits, in_change_set=True)
        if part.content_id is not None:
            if part.content_id in seen_ids:
                raise BadRequest(
                    f"Batch {inner}: Content-ID {part.content_id} occurs twice in one change set"
                )
            seen_ids.add(part.content_id)
        parts.append(part)
    return ChangeSet(parts)


def _parse_request(
    data: bytes, mime_headers: Headers, label: str, limits: _Limits, *, in_change_set: bool
) -> BatchPart:
    limits.count_part()
    pos = 0
    while data.startswith((b"\r\n", b"\n"), pos):  # RFC 7230 §3.5
        pos = data.index(b"\n", pos) + 1
    end = data.find(b"\n", pos)
    line = (data[pos:] if end < 0 else data[pos:end]).rstrip(b"\r")
    if len(line) > limits.max_header_bytes:
        raise BadRequest(f"Batch {label}: request line longer than {limits.max_header_bytes} bytes")
    if not line:
        raise BadRequest(f"Batch {label} holds no request")
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        shown = line[:200].decode("latin-1")
        raise BadRequest(
            f"Batch {label}: expected a request line like"
            f" 'POST StringParameters HTTP/1.1', got {shown!r}"
        )
    method = match[1].decode("ascii")
    url = request_target(match[2])
    if method not in QUERY_METHODS | CHANGE_METHODS:
        raise BadRequest(f"Batch {label}: method {method} is not allowed in a batch")
    if in_change_set and method in QUERY_METHODS:
        raise BadRequest(
            f"Batch {label}: {method} is not allowed inside a change set;"
            " send it as a part of the batch itself"
        )
    if not in_change_set and method in CHANGE_METHODS:
        raise BadRequest(f"Batch {label}: {method} must be sent inside a change set")
    body_start = len(data) if end < 0 else end + 1
    fields, body_start = _read_header_section(
        data, body_start, label, limits.max_header_bytes, start=pos, in_mime=False
    )
    headers = Headers(fields)
    content_id = mime_headers.get("Content-ID", headers.get("Content-ID"))
    return BatchPart(method, url, headers, data[body_start:], content_id)


# ------------------------------------------------------------- MIME building blocks


def _multipart_boundary(content_type: str | None, what: str) -> str:
    """The boundary of a ``multipart/mixed`` Content-Type, quoted or not (RFC 2045 §5.1)."""
    if not content_type or not content_type.strip():
        raise BadRequest(f"The {what} needs Content-Type multipart/mixed with a boundary")
    media_type, params = _parse_content_type(content_type, what)
    if media_type != "multipart/mixed":
        raise BadRequest(
            f"The {what} needs Content-Type multipart/mixed with a boundary, not {media_type}"
        )
    boundary = params.get("boundary")
    if boundary is None:
        raise BadRequest(f"The {what} has no boundary in its Content-Type")
    if _BOUNDARY.fullmatch(boundary) is None:
        raise BadRequest(
            f"The {what} has an invalid boundary {boundary[:80]!r}"
            " (1 to 70 characters from RFC 2046 §5.1.1)"
        )
    return boundary


def _parse_content_type(value: str, what: str) -> tuple[str, dict[str, str]]:
    match = _MEDIA_TYPE.match(value)
    if match is None:
        raise BadRequest(f"The {what} has a malformed Content-Type {value[:200]!r}")
    media_type = match[1].lower()
    params: dict[str, str] = {}
    pos = match.end()
    while value[pos:].strip(" \t;"):
        param = _PARAMETER.match(value, pos)
        if param is None:
            raise BadRequest(f"The {what} has a malformed Content-Type {value[:200]!r}")
        raw = param[2]
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[param[1].lower()] = raw
        pos = param.end()
    return media_type, params


def _content_type(headers: Headers, label: str) -> tuple[str, dict[str, str]]:
    value = headers.get("Content-Type")
    if value is None:
        raise BadRequest(
            f"Batch {label} has no Content-Type; expected application/http"
            " or multipart/mixed (a change set)"
        )
    return _parse_content_type(value, f"batch {label}")


def _check_transfer_encoding(headers: Headers, label: str) -> None:
    encoding = headers.get("Content-Transfer-Encoding", "binary").strip().lower()
    if encoding not in _IDENTITY_ENCODINGS:
        raise BadRequest(
            f"Batch {label}: Content-Transfer-Encoding {encoding} is not supported; use binary"
        )


def _split_multipart(body: bytes, boundary: str, what: str, max_parts: int) -> list[bytes]:
    """The body parts between the delimiters; preamble and epilogue are dropped.

    RFC 2046 §5.1.1: a delimiter is ``--boundary`` alone on a line (trailing blanks
    allowed), and the line break before it belongs to the delimiter, not the part.
    """
    delimiter = re.compile(
        rb"^--" + re.escape(boundary.encode("ascii")) + rb"(--)?[ \t]*\r?$", re.MULTILINE
    )
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            end = match.start() - 1  # the "\n" before the delimiter
            if end > start and body[end - 1 : end] == b"\r":
                end -= 1
            parts.append(body[start : max(start, end)])
            if len(parts) > max_parts:
                raise BadRequest(f"$batch holds more than {max_parts} requests")
        if match[1]:
            if not parts:
                raise BadRequest(f"The {what} contains no parts")
            return parts
        start = match.end() + 1
    if start is None:
        raise BadRequest(f"The {what} contains no delimiter line --{boundary}")
    raise BadRequest(f"The {what} is missing its closing delimiter --{boundary}--")


def _read_mime_part(raw: bytes, label: str, limits: _Limits) -> tuple[Headers, bytes]:
    fields, body_start = _read_header_section(
        raw, 0, label, limits.max_header_bytes, start=0, in_mime=True
    )
    return Headers(fields), raw[body_start:]


def _read_header_section(
    data: bytes, pos: int, label: str, limit: int, *, start: int, in_mime: bool
) -> tuple[list[tuple[str, str]], int]:
    """Read header fields from ``pos``; return them and where the body starts.

    The section ends at an empty line or at the end of the data. In MIME part headers
    it also ends at a line that is not a header field (SAP's documented example goes
    straight from a change set's Content-Type to its first delimiter).
    """
    fields: list[tuple[str, str]] = []
    while pos < len(data):
        end = data.find(b"\n", pos)
        following = len(data) if end < 0 else end + 1
        if following - start > limit:
            raise BadRequest(f"Batch {label}: header section larger than {limit} bytes")
        line = data[pos:following].rstrip(b"\r\n")
        if not line:
            return fields, following
        if line[:1] in (b" ", b"\t") and fields:  # obsolete line folding, RFC 5322 §2.2.3
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip().decode('latin-1')}")
        else:
            match = None if in_mime and line.startswith(b"--") else _FIELD.fullmatch(line)
            if match is None:
                if in_mime:
                    return fields, pos
                shown = line[:200].decode("latin-1")
                raise BadRequest(f"Batch {label}: malformed header line {shown!r}")
            fields.append((match[1].decode("ascii"), match[2].strip(b" \t").decode("latin-1")))
            if len(fields) > MAX_HEADER_FIELDS:
                raise BadRequest(f"Batch {label}: more than {MAX_HEADER_FIELDS} header fields")
        pos = following
    return fields, len(data)


# ---------------------------------------------------------------------- serialising


def serialize_batch(
    items: Sequence[BatchResponse | Sequence[BatchResponse] | bytes],
) -> tuple[str, bytes]:
    """Serialise the answers, one item per request item; return (Content-Type, body).

    An item is a :class:`BatchResponse` for a query, or the list of responses to a
    change set. A change set that holds a response of 400 or more failed: it is written
    as that single response in place of the change set (OData V2 batch rule). Passing
    one ``BatchResponse`` where the request had a change set does the same. An item may
    also be the bytes :func:`serialize_item` made of it already.
    """
    chunks = [item if isinstance(item, bytes) else serialize_item(item) for item in items]
    boundary = _fresh_boundary("batch", chunks)
    body = _join_multipart(boundary, chunks) + b"\r\n"
    return f"multipart/mixed; boundary={boundary}", body


def serialize_item(item: BatchResponse | Sequence[BatchResponse]) -> bytes:
    """One item of the batch answer as bytes; :class:`UnsendableHeader` (a ``ValueError``)
    if a header cannot be written. A change set is serialised before it commits, so an
    answer that cannot be sent rolls it back instead of reporting a success never sent."""
    if isinstance(item, BatchResponse):
        return _serialize_response(item)
    if not item:
        raise ValueError("a change set answer needs at least one response")
    failed = next((response for response in item if response.status >= 400), None)
    if failed is not None:
        return _serialize_response(failed)
    chunks = [_serialize_response(response) for response in item]
    boundary = _fresh_boundary("changeset", chunks)
    head = f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode("ascii")
    return head + _join_multipart(boundary, chunks)


def _serialize_response(response: BatchResponse) -> bytes:
    """One ``application/http`` part laid out as in SAP's example: MIME headers, status
    line, ``DataServiceVersion``, the response's own headers, ``Content-Length``, blank
    line, body."""
    lines = [_PART_HEAD]
    if response.content_id is not None:
        lines.append(_field_line("Content-ID", response.content_id))
    lines.append("")
    lines.append(_status_line(response.status))
    own = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
    if not any(k.lower() == "dataserviceversion" for k, _ in own):
        lines.append(_DSV_2_LINE)
    lines += [_field_line(name, value) for name, value in own]
    # RFC 7230 §3.3.2: no Content-Length on 204 or 304, whose bodies are empty.
    if response.status in (204, 304):
        if response.body:
            raise ValueError(f"a {response.status} response has no body")
    else:
        lines.append(f"Content-Length: {len(response.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


_PART_HEAD = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary"
_DSV_2_LINE = f"{_DSV_2[0]}: {_DSV_2[1]}"


@functools.cache
def _status_line(status: int) -> str:
    return f"HTTP/1.1 {status} {_reason(status)}"


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _field_line(name: str, value: str) -> str:
    """``name: value``, refusing a CR or LF that would start a forged header or part, and
    any character the Latin-1 head of the part cannot carry."""
    check_field(name, value)
    return f"{name}: {value}"


def _fresh_boundary(prefix: str, chunks: Sequence[bytes]) -> str:
    """A boundary that occurs in none of the parts (RFC 2046 §5.1.1)."""
    while True:
        boundary = f"{prefix}_{uuid.uuid4()}"
        marker = f"--{boundary}".encode("ascii")
        if not any(marker in chunk for chunk in chunks):
            return boundary


def _join_multipart(boundary: str, chunks: Sequence[bytes]) -> bytes:
    """Delimited parts ending in the close delimiter; the CRLF before each delimiter
    belongs to the delimiter (RFC 2046 §5.1.1)."""
    out = bytearray()
    for chunk in chunks:
        out += f"--{boundary}\r\n".encode("ascii") + chunk + b"\r\n"
    out += f"--{boundary}--".encode("ascii")
    return bytes(out)

"""OData V2 JSON ("verbose") bodies, and the choice between JSON and Atom.

Lives here: entries and feeds as ``{"d": ...}``, request bodies read into entity values,
``$count`` text, content negotiation. Must not know: HTTP frameworks, the store.

Sources: the OData V2 JSON Format and [MS-ODATA] §2.2.6.3 (entries with ``__metadata``, feeds with
``results``, ``__count`` and ``__next``); SAP's live responses (``__metadata.type`` is
``com.sap.hci.api.<Type>``, ``id`` and ``uri`` absolute, DateTime as ``/Date(ms)/``, Int64 as
a string); OData V2 URI Conventions (the ``$format`` option).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Literal

from ..model.entities import EdmType, EntityType, Property
from .errors import BadRequest, ODataError
from .values import (
    check_int,
    check_string,
    decode_binary,
    encode_binary,
    format_datetime_json,
    parse_datetime,
    parse_int_text,
    path_writer,
    quote_name,
    selected_properties,
)

CONTENT_TYPE = "application/json;charset=utf-8"

Format = Literal["json", "atom"]


# -- writing ----------------------------------------------------------------------------


def _json_value(prop: Property, value: object) -> object:
    if value is None:
        return None
    edm = prop.edm_type
    if edm is EdmType.DATETIME:
        if not isinstance(value, datetime):
            raise TypeError(f"{prop.name}: expected a datetime, got {type(value).__name__}")
        return format_datetime_json(value)
    if edm is EdmType.BINARY:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"{prop.name}: expected bytes, got {type(value).__name__}")
        return encode_binary(bytes(value))
    if edm is EdmType.INT64:
        # A JSON number loses precision beyond 2**53 in JavaScript, hence the string.
        return str(value)
    return value


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _dump(document: object) -> bytes:
    return _dumps(document).encode("utf-8")


# An entry is written as text by a function made once per entity type and ``$select``
# (as ``dataclasses`` makes ``__init__``): the same characters ``_dump`` gives for the
# document, without building it and without a call per property. ``_text`` is the
# string encoder that ``json.dumps`` itself uses here.
_text: Callable[[str], str] = encode_basestring

_DATES: dict[datetime, str] = {}
"""Edm.DateTime texts recently written: rows written together share their times."""


def _date(value: object) -> str:
    if value is None:
        return "null"
    text = _DATES.get(value)  # type: ignore[call-overload]
    if text is None:
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        text = '"' + format_datetime_json(value) + '"'
        if len(_DATES) >= 4096:
            _DATES.clear()
        _DATES[value] = text
    return text


Entry = Callable[[dict[str, object], str], str]
"""Writes one entity; takes the service root as :func:`_open_text` gives it."""


def _open_text(base_url: str) -> str:
    """The service root as the start of a JSON string: an entity's path after it needs
    no escaping, being percent-encoded ASCII without quotes or backslashes."""
    return _text(base_url)[:-1]


def _entry_writer(entity_type: EntityType, select: tuple[str, ...] | None) -> Entry:
    names: dict[str, object] = {
        "_text": _text,
        "_dumps": _dumps,
        "_date": _date,
        "_path": path_writer(entity_type),
    }
    pieces = [
        repr('{"__metadata":{"id":'),
        "uri",
        repr('","uri":'),
        "uri",
        repr('","type":' + _text(entity_type.qualified_name) + "}"),
    ]
    reads = []
    for i, prop in enumerate(selected_properties(entity_type, select)):
        reads.append(f"    v{i} = get({prop.name!r})\n")
        pieces.append(repr("," + _text(prop.name) + ":"))
        if prop.edm_type is EdmType.STRING:
            pieces.append(f"(_text(v{i}) if v{i}.__class__ is str else _dumps(v{i}))")
        elif prop.edm_type is EdmType.DATETIME:
            pieces.append(f"_date(v{i})")
        else:
            names[f"_prop{i}"] = prop
            pieces.append(f"_dumps(_json_value(_prop{i}, v{i}))")
            names["_json_value"] = _json_value
    pieces.append(repr("}"))
    source = (
        "def entry(values, base_text):\n"
        "    get = values.get\n"
        "    uri = base_text + _path(values)\n"
        + "".join(reads)
        + "    return ''.join(("
        + ", ".join(pieces)
        + "))\n"
    )
    exec(compile(source, f"<JSON entry of {entity_type.name}>", "exec"), names)
    return names["entry"]  # type: ignore[return-value]


_ENTRY_WRITERS: dict[tuple[int, tuple[str, ...] | None], tuple[EntityType, Entry]] = {}


def entry_writer(entity_type: EntityType, select: Collection[str] | None = None) -> Entry:
    """The writer of one entity as JSON text, made once per type and ``$select``."""
    chosen = None if select is None else tuple(select)
    key = (id(entity_type), chosen)
    found = _ENTRY_WRITERS.get(key)
    if found is not None:
        return found[1]
    writer = _entry_writer(entity_type, chosen)
    if len(_ENTRY_WRITERS) > 1000:
        _ENTRY_WRITERS.clear()
    _ENTRY_WRITERS[key] = (entity_type, writer)  # the type keeps its id taken
    return writer


def entry_json(
    entity_type: EntityType,
    values: dict[str, object],
    base_url: str,
    select: Collection[str] | None = None,
) -> bytes:
    """One entity: ``{"d": {"__metadata": {...}, <properties>}}``.

    ``values`` must hold the key properties (they form the URI) even when ``select``
    leaves them out of the body.
    """
    entry = entry_writer(entity_type, select)(values, _open_text(base_url))
    return ('{"d":' + entry + "}").encode("utf-8")


def feed_json(
    entity_type: EntityType,
    rows: Iterable[dict[str, object]],
    base_url: str,
    select: Collection[str] | None = None,
    count: int | None = None,
    next_url: str | None = None,
) -> bytes:
    """A collection: ``{"d": {"results": [...], "__count": "<n>", "__next": "<url>"}}``.

    ``__count`` (for ``$inlinecount=allpages``) is a string, as in the OData V2 JSON
    Format's examples; ``next_url`` is the absolute URL of the next page of server paging.
    """
    entry = entry_writer(entity_type, select)
    base_text = _open_text(base_url)
    parts = ['{"d":{"results":[', ",".join([entry(row, base_text) for row in rows]), "]"]
    if count is not None:
        parts.append(',"__count":' + _text(str(count)))
    if next_url is not None:
        parts.append(',"__next":' + _text(next_url))
    parts.append("}}")
    return "".join(parts).encode("utf-8")


def count_text(n: int) -> bytes:
    """The body of ``/$count``: the bare number as ``text/plain``."""
    return str(n).encode("ascii")


# -- reading ----------------------------------------------------------------------------


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong_type(prop: Property, expected: str, value: object) -> BadRequest:
    return BadRequest(
        f"Invalid value for property '{prop.name}': expected {prop.edm_type.value} "
        f"as {expected}, got {_json_kind(value)}"
    )


def _from_json(prop: Property, value: object) -> object:
    """One property's JSON value as its Python value; ``null`` passes (rules check it)."""
    if value is None:
        return None
    edm = prop.edm_type
    if edm is EdmType.STRING:
        if not isinstance(value, str):
            raise _wrong_type(prop, "a JSON string", value)
        return check_string(prop.name, value)
    if edm is EdmType.BINARY:
        if not isinstance(value, str):
            raise _wrong_type(prop, "a base64 string", value)
        return decode_binary(prop.name, value)
    if edm is EdmType.DATETIME:
        if not isinstance(value, str):
            raise _wrong_type(prop, "a string '/Date(<ms>)/' or ISO 8601", value)
        return parse_datetime(prop.name, value)
    if edm in (EdmType.INT64, EdmType.INT32):
        if isinstance(value, str):
            return parse_int_text(prop, value)
        if isinstance(value, int) and not isinstance(value, bool):
            return check_int(prop, value)
        raise _wrong_type(prop, "an integer or a string of digits", value)
    if edm is EdmType.BOOLEAN:
        if not isinstance(value, bool):
            raise _wrong_type(prop, "true or false", value)
        return value
    raise AssertionError(f"no JSON rule for {edm}")


def _unique_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``object_pairs_hook``: RFC 8259 §4 leaves duplicate names undefined; we refuse them."""
    result: dict[str, object] = {}
    for name, value in pairs:
        if name in result:
            raise BadRequest(f"Invalid JSON: the name {quote_name(name)} appears twice")
        result[name] = value
    return result


def _refuse_constant(name: str) -> object:
    raise BadRequest(f"Invalid JSON: {name} is not a JSON value")


def parse_entity_json(entity_type: EntityType, body: bytes) -> dict[str, object]:
    """Read a POST/PUT/MERGE body into ``{property: Python value}``.

    Accepts the bare object SAP documents (``{"Pid": ...}``) and the ``{"d": {...}}`` form
    that verbose-JSON clients echo back; ``__metadata`` is ignored. Only the properties
    present are returned: which are required is for ``model/rules.py`` to say.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("Invalid JSON: the body is not UTF-8") from None
    try:
        document = json.loads(
            text, object_pairs_hook=_unique_object, parse_constant=_refuse_constant
        )
    except ODataError:
        raise
    except RecursionError:
        raise BadRequest("Invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"Invalid JSON: {exc}") from None
    if isinstance(document, dict) and list(document) == ["d"] and not entity_type.has_property("d"):
        document = document["d"]
    if not isinstance(document, dict):
        raise BadRequest(
            f"Invalid JSON: expected an object with the properties of "
            f"{entity_type.qualified_name}, got {_json_kind(document)}"
        )
    values: dict[str, object] = {}
    for name, value in document.items():
        if name == "__metadata":
            continue
        if not entity_type.has_property(name):
            raise BadRequest(
                f"Property {quote_name(name)} does not exist in type {entity_type.qualified_name}"
            )
        values[name] = _from_json(entity_type.prop(name), value)
    return values


# -- content negotiation ----------------------------------------------------------------

_JSON_TYPES = frozenset({"application/json"})
_ATOM_TYPES = frozenset(
    {"application/atom+xml", "application/xml", "text/xml", "*/*", "application/*", "text/*"}
)
"""Atom is SAP's default, so wildcards choose it."""

_FORMATS: dict[str, Format] = {
    "json": "json",
    "application/json": "json",
    "atom": "atom",
    "xml": "atom",
    "application/atom+xml": "atom",
    "application/xml": "atom",
}


def _accept_ranges(header: str) -> list[tuple[float, str]]:
    ranges: list[tuple[float, str]] = []
    for item in header.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            key, _, val = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(val.strip())
                except ValueError:
                    q = 0.0
        if q > 0:
            ranges.append((q, media.lower()))
    return ranges


def negotiate(accept_header: str | None, format_option: str | None) -> Format:
    """Choose the body format: ``$format`` wins over ``Accept``; Atom when nothing asks for JSON.

    SAP answers Atom unless the client asks for JSON (its documented examples show Atom for
    plain requests; real clients send ``Accept: application/json`` or ``$format=json``).
    Among ``Accept`` ranges the highest ``q`` wins and, at equal ``q``, the first listed,
    as in Apache Olingo V2's content negotiation. An unknown ``$format`` gives 406.
    """
    if format_option is not None:
        key = format_option.split(";")[0].strip().lower()
        if key in _FORMATS:
            return _FORMATS[key]
        raise ODataError(
            406,
            "Not Acceptable",
            f"Unsupported $format {quote_name(format_option)}; use json, atom or xml",
        )
    if accept_header:
        if len(accept_header) <= 256:
            return _remembered(accept_header)
        return _accepted(accept_header)
    return "atom"


def _accepted(accept_header: str) -> Format:
    ranges = _accept_ranges(accept_header)
    ranges.sort(key=lambda r: r[0], reverse=True)  # stable: ties keep header order
    for _, media in ranges:
        if media in _JSON_TYPES:
            return "json"
        if media in _ATOM_TYPES:
            return "atom"
    return "atom"


_remembered = functools.lru_cache(maxsize=256)(_accepted)
"""Clients send the same ``Accept`` header each time."""

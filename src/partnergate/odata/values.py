"""Edm primitive values: the one place where Python values meet their wire forms.

Lives here: the text forms of Edm.DateTime, Edm.Binary and the integer types that both
JSON and Atom share, the checks a client's value must pass to become a Python value, entity
URIs, and ``$select`` projection. Must not know: HTTP, the store, which format a response
uses.

Python side (see ``model/entities.py``): ``str``, ``bytes``, ``int``, ``bool``, naive UTC
``datetime`` with millisecond precision, ``None``.

Sources: the OData V2 JSON Format's table of primitive types (``\\/Date(<ticks>["+" | "-"
<offset>])\\/``, Int64 as a string, Binary as base64); OData V2 Atom Format and [MS-ODATA]
§2.2.2 (Edm literal forms ``yyyy-mm-ddThh:mm[:ss[.fffffff]]``); RFC 4648 §4 and §5 (base64
and base64url).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from ..model.entities import EdmType, EntityType, Property
from .errors import BadRequest
from .keys import format_key

EPOCH = datetime(1970, 1, 1)
_MILLISECOND = timedelta(milliseconds=1)

INT_RANGES: dict[EdmType, tuple[int, int]] = {
    EdmType.INT32: (-(2**31), 2**31 - 1),
    EdmType.INT64: (-(2**63), 2**63 - 1),
}

_PATH_SAFE = "!$&'()*+,;=:@"
"""RFC 3986 ``pchar`` minus the unreserved set (which ``quote`` never escapes)."""


# -- entity addresses and projection ----------------------------------------------------


_PATH_PLAIN = re.compile(r"[A-Za-z0-9_.~!$&'()*+,;=:@-]*")
"""Text that :data:`_PATH_SAFE` quoting leaves as it is (``quote`` never escapes
``A-Za-z0-9_.-~``): most keys, which then skip the encoder."""


def path_segment(text: str) -> str:
    """``text`` percent-encoded as one path segment (RFC 3986 §3.3)."""
    if _PATH_PLAIN.fullmatch(text):
        return text
    return quote(text, safe=_PATH_SAFE)


def entity_path(entity_type: EntityType, values: dict[str, object]) -> str:
    """The entity's address relative to the service root: ``StringParameters(Pid='P',Id='X')``.

    The key predicate is percent-encoded as one path segment (RFC 3986 §3.3), so a key that
    holds ``/``, ``?``, ``#``, ``%``, a space or non-ASCII text still yields one valid URI;
    the router decodes the segment before ``keys.parse_key`` reads it.
    ``values`` must hold every key property, also when ``$select`` leaves keys out.
    """
    return path_writer(entity_type)(values)


PathWriter = Callable[[dict[str, object]], str]

_PATH_WRITERS: dict[int, tuple[EntityType, PathWriter]] = {}


def path_writer(entity_type: EntityType) -> PathWriter:
    """:func:`entity_path` for one entity type, its key's text form worked out once."""
    found = _PATH_WRITERS.get(id(entity_type))
    if found is not None:
        return found[1]
    writer = _path_writer(entity_type)
    _PATH_WRITERS[id(entity_type)] = (entity_type, writer)  # the type keeps its id taken
    return writer


def _path_writer(entity_type: EntityType) -> PathWriter:
    entity_set = entity_type.entity_set
    props = entity_type.key_properties
    keys = entity_type.keys
    if all(p.edm_type is EdmType.STRING for p in props):
        if len(keys) == 1:
            (only,) = keys

            def single(values: dict[str, object]) -> str:
                text = str(values[only]).replace("'", "''")
                return entity_set + path_segment("('" + text + "')")

            return single
        template = "(" + ",".join(f"{name}='%s'" for name in keys) + ")"
        if len(keys) == 2:
            first, second = keys

            def pair(values: dict[str, object]) -> str:
                a = str(values[first]).replace("'", "''")
                b = str(values[second]).replace("'", "''")
                return entity_set + path_segment(template % (a, b))

            return pair

        def compound(values: dict[str, object]) -> str:
            texts = tuple([str(values[name]).replace("'", "''") for name in keys])
            return entity_set + path_segment(template % texts)

        return compound

    def general(values: dict[str, object]) -> str:
        predicate = format_key(entity_type, {k: values[k] for k in keys})
        return entity_set + path_segment(predicate)

    return general


_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"
"""RFC 3986 ``reserved`` characters and ``%``: what may stand in a URI as it is."""


def uri_text(text: str) -> str:
    """``text`` as a URI: every other character percent-encoded as UTF-8, escapes kept.

    For the service root, which may come from a ``Host`` header: what we build on it
    (``Location``, ``__metadata.uri``) is then plain ASCII, fit for any header."""
    return quote(text, safe=_URI_SAFE)


def entity_uri(entity_type: EntityType, values: dict[str, object], base_url: str) -> str:
    """Absolute entity URI as SAP puts it in ``__metadata.uri`` and ``<id>``."""
    return base_url + entity_path(entity_type, values)


def selected_properties(
    entity_type: EntityType, select: Collection[str] | None
) -> Iterator[Property]:
    """The properties to write, in ``$metadata`` order.

    ``select`` holds property names already checked against the type; ``None`` or ``*``
    means all. Keys are not added: SAP answers ``$select=Value`` with ``Value`` alone.
    """
    if select is None or "*" in select:
        yield from entity_type.properties
        return
    for prop in entity_type.properties:
        if prop.name in select:
            yield prop


# -- Edm.DateTime -----------------------------------------------------------------------


def to_naive_utc(value: datetime) -> datetime:
    """The store may hand back aware datetimes; the wire always means UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def datetime_to_ms(value: datetime) -> int:
    """Milliseconds since 1970-01-01T00:00 UTC, sub-millisecond digits dropped."""
    return (to_naive_utc(value) - EPOCH) // _MILLISECOND


def ms_to_datetime(ms: int) -> datetime:
    """Inverse of ``datetime_to_ms``; ``OverflowError`` outside years 1–9999."""
    return EPOCH + timedelta(milliseconds=ms)


def format_datetime_json(value: datetime) -> str:
    """``/Date(1516202308053)/`` — OData V2 JSON's Edm.DateTime, as SAP writes it."""
    return f"/Date({datetime_to_ms(value)})/"


def format_datetime_text(value: datetime) -> str:
    """``2021-03-16T11:25:07.916`` — the Atom form SAP writes.

    Like Apache Olingo V2's ``EdmDateTime`` (which SAP's service runs on), the fraction
    carries at most milliseconds and loses trailing zeros: ``.5`` for 500 ms, none for 0.
    """
    v = to_naive_utc(value)
    text = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    ms = v.microsecond // 1000
    if ms:
        text += "." + f"{ms:03d}".rstrip("0")
    return text


_JSON_DATE = re.compile(r"/Date\((-?[0-9]+)(?:([+-])([0-9]{4}))?\)/")
_ISO_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-][0-9]{2}:[0-9]{2})?"
)


def parse_datetime(name: str, text: str) -> datetime:
    """Read ``/Date(ms[±offset])/`` or ISO 8601 into a naive UTC datetime, to the millisecond.

    The ``/Date()/`` offset is a count of minutes added to the ticks, per the OData V2 JSON
    Format's table of primitive types (pyodata reads it the same way). An ISO offset or
    ``Z`` is converted to UTC; a value without one is taken as UTC.
    """
    try:
        if match := _JSON_DATE.fullmatch(text):
            ms, sign, offset = match.groups()
            result = ms_to_datetime(int(ms))
            if sign:
                minutes = int(offset)
                result += timedelta(minutes=minutes if sign == "+" else -minutes)
            return result
        if match := _ISO_DATETIME.fullmatch(text):
            year, month, day, hour, minute, second, fraction, zone = match.groups()
            micro = int((fraction or "0")[:3].ljust(3, "0")) * 1000
            result = datetime(
                int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro
            )
            if zone and zone != "Z":
                sign = 1 if zone[0] == "+" else -1
                result -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
            return result
    except (ValueError, OverflowError):
        raise BadRequest(
            f"Invalid value for property '{name}': '{text}' is not a date and time "
            "between years 1 and 9999"
        ) from None
    raise BadRequest(
        f"Invalid value for property '{name}': expected Edm.DateTime as '/Date(<ms>)/' "
        "or 'yyyy-mm-ddThh:mm[:ss[.fff]]'"
    )


# -- Edm.Binary -------------------------------------------------------------------------


def encode_binary(value: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4), as SAP returns ``Value``."""
    return base64.b64encode(value).decode("ascii")


_STANDARD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_SAFE = re.compile(r"[A-Za-z0-9\-_]*={0,2}")


def decode_binary(name: str, text: str) -> bytes:
    """Strict base64: RFC 4648 §4 with its padding, or §5's URL-safe alphabet, unpadded or not.

    SAP's API Hub spec declares ``Value`` as ``format: base64url`` while SAP's examples
    and clients send standard base64, so both alphabets are read (never mixed in one value).
    Whitespace, wrong padding and non-zero padding bits are refused, so every accepted text
    is the one encoding of its bytes.
    """
    error = BadRequest(
        f"Invalid value for property '{name}': expected Edm.Binary as base64 text "
        "(RFC 4648, standard or URL-safe alphabet)"
    )
    if _URL_SAFE.fullmatch(text):
        # Texts without + / - _ land here too: as base64url they may omit the padding.
        if len(text) % 4 == 1 or ("=" in text and len(text) % 4):
            raise error
        canonical = text.replace("-", "+").replace("_", "/")
        canonical += "=" * (-len(canonical) % 4)
    elif _STANDARD.fullmatch(text) and not len(text) % 4:
        canonical = text
    else:
        raise error
    try:
        data = base64.b64decode(canonical, validate=True)
    except (binascii.Error, ValueError):
        raise error from None
    if base64.b64encode(data).decode("ascii") != canonical:
        raise error
    return data


# -- integers ---------------------------------------------------------------------------

_INTEGER = re.compile(r"-?[0-9]{1,20}")


def check_int(prop: Property, value: int) -> int:
    low, high = INT_RANGES[prop.edm_type]
    if not low <= value <= high:
        raise BadRequest(
            f"Invalid value for property '{prop.name}': {value} is outside the range of "
            f"{prop.edm_type.value}"
        )
    return value


def parse_int_text(prop: Property, text: str) -> int:
    """Decimal digits with an optional minus, as Int64 travels in JSON and both travel in Atom."""
    if not _INTEGER.fullmatch(text):
        raise BadRequest(
            f"Invalid value for property '{prop.name}': expected {prop.edm_type.value} "
            "as decimal digits"
        )
    return check_int(prop, int(text))


# -- Edm.String -------------------------------------------------------------------------


def check_string(name: str, text: str) -> str:
    """Refuse lone surrogates (JSON's ``"\\ud800"``): they have no UTF-8 form to store or send."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            f"Invalid value for property '{name}': the text contains an unpaired UTF-16 surrogate"
        ) from None
    return text


def quote_name(name: str) -> str:
    """A client-supplied name, safe to echo in an error message whatever it contains."""
    return "'" + name.encode("utf-8", "backslashreplace").decode("utf-8") + "'"

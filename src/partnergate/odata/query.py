"""Query options of a request: ``$filter``, ``$select``, ``$orderby``, paging, format.

Lives here: which system query options exist (OData V2 URI conventions §4 "Query String
Options"), their value syntax, and which of them a single entity accepts. Custom options
(§5, e.g. SAP's ``user``, ``exclude``, ``returnHashedPassword``) pass through by name.
Must not know: HTTP, SQL. The parameters arrive percent-decoded, in request order; a
name or value with a character no stored text can hold (NUL, most C0 controls) is refused
here, so no store ever compares against one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from typing import Literal as TypingLiteral

from ..model.entities import EntityType
from ..model.rules import check_text
from .errors import BadRequest
from .filter import Expr, OrderBy, clip, parse_filter, parse_orderby

Format = TypingLiteral["json", "atom", "xml"]

MAX_PAGING_VALUE = 2**31 - 1
"""Largest ``$top``/``$skip``/``$skiptoken`` accepted (Edm.Int32, as SAP's Java stack)."""


@dataclass(frozen=True)
class QueryOptions:
    """The options of one request, parsed and checked against the entity type."""

    filter: Expr | None = None
    select: tuple[str, ...] | None = None
    """Property names in request order without repeats; ``None`` for all (absent or ``*``)."""
    orderby: tuple[OrderBy, ...] = ()
    top: int | None = None
    skip: int | None = None
    skiptoken: int | None = None
    """The offset a server-driven ``__next`` link carries (SAP: ``$skiptoken=1000``)."""
    inlinecount: bool = False
    """``$inlinecount=allpages``: the response carries ``__count``."""
    format: Format | None = None
    custom: dict[str, str] = field(default_factory=dict)


COLLECTION_OPTIONS = (
    "$filter",
    "$select",
    "$orderby",
    "$top",
    "$skip",
    "$skiptoken",
    "$inlinecount",
    "$format",
    "$expand",
)
"""The system query options understood, all of which a collection accepts."""

SINGLE_ENTITY_OPTIONS = ("$select", "$format", "$expand")
"""The options that apply to a single entity (§4.1); ``$expand`` is then refused by its own
rule, with the reason."""

_FORMATS: dict[str, Format] = {
    "json": "json",
    "atom": "atom",
    "xml": "xml",
    "application/json": "json",
    "application/atom+xml": "atom",
    "application/xml": "xml",
}
"""``$format`` values (§4.7): the three keywords, or the IANA media type they stand for."""

_DIGITS = re.compile(r"[0-9]+")


def parse_query(
    params: Iterable[tuple[str, str]], entity_type: EntityType, *, collection: bool
) -> QueryOptions:
    """Parse the query string's ``(name, value)`` pairs for a request on ``entity_type``.

    ``collection`` is false when the resource path addresses a single entity. Unknown
    system options, repeated options and options the resource does not take are a 400,
    so a client never believes an option was honoured when it was not.
    """
    seen: set[str] = set()
    values: dict[str, Any] = {}
    custom: dict[str, str] = {}
    for name, value in params:
        check_text(clip(name), name, multiline=True, what="Query option")
        check_text(clip(name), value, multiline=True, what="The value of query option")
        if name in seen:
            raise BadRequest(f"Query option '{clip(name)}' is given more than once")
        seen.add(name)
        if not name.startswith("$"):
            custom[name] = value
            continue
        if name not in _PARSERS:
            raise BadRequest(
                f"Unknown system query option '{clip(name)}' "
                f"(supported: {', '.join(COLLECTION_OPTIONS)})"
            )
        if not collection and name not in SINGLE_ENTITY_OPTIONS:
            raise BadRequest(f"System query option '{name}' does not apply to a single entity")
        values[name[1:]] = _PARSERS[name](value, entity_type)
    return QueryOptions(custom=custom, **values)


def _select(value: str, entity_type: EntityType) -> tuple[str, ...] | None:
    """§4.8: a comma-separated list of properties, or ``*`` for all of them."""
    names: list[str] = []
    for item in value.split(","):
        name = item.strip()
        if not name:
            raise BadRequest("Invalid $select: empty item; name properties separated by ','")
        if name != "*" and not entity_type.has_property(name):
            raise BadRequest(
                f"Invalid $select: property '{clip(name)}' does not exist in {entity_type.name}"
            )
        if name not in names:
            names.append(name)
    return None if "*" in names else tuple(names)


def _count(option: str) -> Callable[[str, EntityType], int]:
    """A parser for an option whose value is a non-negative integer (§4.3, §4.4)."""

    def parse(value: str, entity_type: EntityType) -> int:
        text = value.strip()
        if not _DIGITS.fullmatch(text):
            raise BadRequest(f"Invalid {option}: '{clip(value)}' is not a non-negative integer")
        digits = text.lstrip("0") or "0"
        if len(digits) > len(str(MAX_PAGING_VALUE)) or int(digits) > MAX_PAGING_VALUE:
            raise BadRequest(f"Invalid {option}: {clip(text)} is larger than {MAX_PAGING_VALUE}")
        return int(digits)

    return parse


def _inlinecount(value: str, entity_type: EntityType) -> bool:
    """§4.9: ``allpages`` asks for the count of the whole (filtered) collection."""
    if value not in ("allpages", "none"):
        raise BadRequest(f"Invalid $inlinecount: '{clip(value)}'; use allpages or none")
    return value == "allpages"


def _format(value: str, entity_type: EntityType) -> Format:
    media_type = value.split(";", 1)[0].strip().lower()
    if media_type not in _FORMATS:
        raise BadRequest(f"Invalid $format: '{clip(value)}'; use json, atom or xml")
    return _FORMATS[media_type]


def _expand(value: str, entity_type: EntityType) -> None:
    """§4.6 expands navigation properties; no Partner Directory type has any."""
    raise BadRequest(f"$expand is not supported: {entity_type.name} has no navigation properties")


_PARSERS: dict[str, Callable[[str, EntityType], object]] = {
    "$filter": parse_filter,
    "$select": _select,
    "$orderby": parse_orderby,
    "$top": _count("$top"),
    "$skip": _count("$skip"),
    "$skiptoken": _count("$skiptoken"),
    "$inlinecount": _inlinecount,
    "$format": _format,
    "$expand": _expand,
}

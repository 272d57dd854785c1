"""Resource paths below the service root: ``EntitySet(key)/$count`` and friends.

The path arrives percent-encoded. It is split at ``/`` first and each segment is decoded
exactly once, here (RFC 3986 §2.1, §2.4: decoding before splitting would turn an encoded
``%2F`` in a key into a separator, decoding twice would read ``%2550`` as ``P``). Every
rule that reads the path (roles, the change-set rules, routing) reads what this module
returns, so an encoded name such as ``UserCredential%50arameters`` is the entity set it
names for all of them. Percent-encoded octets must form UTF-8 (RFC 3987 §3.2).

A request target arrives as bytes (the HTTP request line, or a ``$batch`` part's request
line). :func:`request_target` is the one rule that makes it text, for both: every octet
outside printable ASCII is percent-encoded as it stands, so a raw UTF-8 octet and its
``%XX`` form mean the same, and octets that do not form UTF-8 are refused by the one
decoder above, whichever way they came.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from ..model.entities import EntityType
from . import mpl
from .errors import BadRequest, NotFoundError
from .keys import parse_key

_PRINTABLE = re.compile(rb"[\x21-\x7e]*")


def request_target(raw: bytes) -> str:
    """The request target's octets as text, each octet outside printable ASCII
    percent-encoded (RFC 3986 §2.1); decoded later, once, by :func:`decode_segment`."""
    if _PRINTABLE.fullmatch(raw):
        return raw.decode("ascii")
    return "".join(chr(b) if 0x20 < b < 0x7F else f"%{b:02X}" for b in raw)


NAVIGATION: dict[tuple[str, tuple[str, ...]], str] = {
    ("MessageProcessingLogs", ("ErrorInformation",)): "error_information",
    ("MessageProcessingLogs", ("ErrorInformation", "$value")): "error_information",
    ("MessageProcessingLogs", ("Attachments",)): "attachments",
    ("MessageProcessingLogAttachments", ("$value",)): "attachment_value",
}
"""Segments below one entity, ``(entity set, segments)`` to the resource kind they
address; the service answers each kind with the handler of the same name."""


@dataclass(frozen=True)
class Resource:
    kind: str
    """``service``, ``metadata``, ``batch``, ``collection``, ``count``, ``entity``,
    ``error_information``, ``attachments``, ``attachment_value`` or
    ``navigation:<name>`` (below a message processing log, :mod:`.mpl`)."""
    entity_type: EntityType | None = None
    key: dict[str, object] | None = None
    segments: tuple[str, ...] = ()
    """The decoded segments below the entity, for navigation resources."""


def decode_segment(segment: str) -> str:
    """One path segment, percent-decoded; octets that are not UTF-8 are a 400."""
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(
            "The resource path holds percent-encoded bytes that are not UTF-8"
        ) from None


def split_path(path: str) -> list[str]:
    """The non-empty segments of a resource path, each decoded once."""
    if "%" not in path:  # nothing to decode
        return [s for s in path.split("/") if s]
    return [decode_segment(s) for s in path.split("/") if s]


def entity_set_name(path: str) -> str | None:
    """The name the first segment addresses (``StringParameters`` for
    ``StringParameters(Pid='a',Id='b')``), decoded; ``None`` if there is none or it
    cannot be decoded. For rules that must not fail, such as choosing the roles."""
    try:
        segments = split_path(path)
    except BadRequest:
        return None
    if not segments:
        return None
    return segments[0].split("(", 1)[0]


def parse_resource(path: str, served: Mapping[str, EntityType]) -> Resource:
    """Split ``EntitySet(key)/$count`` and friends into what they address."""
    segments = split_path(path)
    if not segments:
        return Resource("service")
    head, rest = segments[0], segments[1:]
    if head == "$metadata" and not rest:
        return Resource("metadata")
    if head == "$batch" and not rest:
        return Resource("batch")
    name, paren, predicate = head.partition("(")
    entity_type = served.get(name)
    if entity_type is None:
        raise NotFoundError(
            f"Resource '{name[:200]}' not found; entity sets are {', '.join(sorted(served))}"
        )
    if paren:
        if not predicate.endswith(")"):
            raise BadRequest(f"Invalid key predicate in '{head[:200]}'")
        key = parse_key(entity_type, predicate[:-1])
        below = mpl.resource_below(entity_type, rest)
        if below is not None:
            return Resource(below, entity_type, key, tuple(rest))
        kind = NAVIGATION.get((name, tuple(rest))) if rest else None
        if kind is not None:
            return Resource(kind, entity_type, key, tuple(rest))
        if rest:
            raise NotFoundError(f"Resource '{'/'.join(rest)[:200]}' below {name} not found")
        return Resource("entity", entity_type, key)
    if rest == ["$count"]:
        return Resource("count", entity_type)
    if rest:
        raise NotFoundError(f"Resource '{'/'.join(rest)[:200]}' below {name} not found")
    return Resource("collection", entity_type)

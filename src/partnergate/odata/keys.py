"""Key predicates: ``StringParameters(Pid='P',Id='X')`` and ``AuthorizedUsers('u')``.

OData V2 URI conventions §2.7 (Abstract Type System literal forms): string literals are
single-quoted with ``''`` for a quote inside. The predicate is parsed from the already
percent-decoded segment.
"""

from __future__ import annotations

import re

from ..model.entities import EdmType, EntityType
from .errors import BadRequest


def format_string_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def format_literal(edm_type: EdmType, value: object) -> str:
    if edm_type is EdmType.STRING:
        return format_string_literal(str(value))
    if edm_type is EdmType.INT64:
        return f"{value}L"
    return str(value)


def format_key(entity_type: EntityType, key: dict[str, object]) -> str:
    """The predicate including parentheses, e.g. ``(Pid='P',Id='X')`` or ``('u')``."""
    props = entity_type.key_properties
    if len(props) == 1:
        return "(" + format_literal(props[0].edm_type, key[props[0].name]) + ")"
    parts = (f"{p.name}={format_literal(p.edm_type, key[p.name])}" for p in props)
    return "(" + ",".join(parts) + ")"


def _read_string(text: str, pos: int) -> tuple[str, int]:
    """Read a quoted literal starting at ``text[pos] == "'"``; return value and next pos."""
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise BadRequest(f"Invalid key predicate: unterminated string in ({text})")


_INTEGER = re.compile(r"(-?\d{1,18})L?(?=\s*(?:,|$))")


def _integer_keys(entity_type: EntityType) -> set[str]:
    return {
        p.name for p in entity_type.key_properties if p.edm_type in (EdmType.INT32, EdmType.INT64)
    }


_PLAIN_KEYS: dict[int, tuple[EntityType, re.Pattern[str] | None]] = {}


def _plain_pattern(entity_type: EntityType) -> re.Pattern[str] | None:
    """``Name='value',…`` in the type's key order, without spaces: how clients write
    nearly every key of string properties. Anything else takes the general rule."""
    found = _PLAIN_KEYS.get(id(entity_type))
    if found is None:
        pattern = None
        if all(p.edm_type is EdmType.STRING for p in entity_type.key_properties):
            value = "'((?:[^']|'')*)'"
            if len(entity_type.keys) == 1:
                source = value
            else:
                source = ",".join(re.escape(k) + "=" + value for k in entity_type.keys)
            pattern = re.compile(source, re.DOTALL)
        found = _PLAIN_KEYS[id(entity_type)] = (entity_type, pattern)  # keeps the id taken
    return found[1]


def parse_key(entity_type: EntityType, predicate: str) -> dict[str, object]:
    """Parse the text between the parentheses into ``{key property: value}``."""
    pattern = _plain_pattern(entity_type)
    plain = pattern.fullmatch(predicate) if pattern is not None else None
    if plain is not None:
        return {
            name: value.replace("''", "'")
            for name, value in zip(entity_type.keys, plain.groups(), strict=True)
        }
    return _parse_key(entity_type, predicate)


def _parse_key(entity_type: EntityType, predicate: str) -> dict[str, object]:
    props = entity_type.key_properties
    values: dict[str, object] = {}
    pos = 0
    text = predicate
    while pos < len(text):
        name: str | None = None
        if text[pos] != "'":
            eq = text.find("=", pos)
            if eq < 0:
                raise BadRequest(f"Invalid key predicate: ({predicate})")
            name = text[pos:eq].strip()
            pos = eq + 1
            while pos < len(text) and text[pos] == " ":
                pos += 1
        number = _INTEGER.match(text, pos) if name in _integer_keys(entity_type) else None
        if number is not None:  # an Edm.Int32/Int64 key, e.g. ChildCount=5
            value: object = int(number.group(1))
            pos = number.end()
        elif pos >= len(text) or text[pos] != "'":
            raise BadRequest(f"Invalid key predicate: ({predicate}); key values are quoted strings")
        else:
            value, pos = _read_string(text, pos)
        if name is None:
            if len(props) != 1 or values:
                raise BadRequest(
                    f"Invalid key predicate: ({predicate}); name each of "
                    f"{', '.join(entity_type.keys)}"
                )
            name = props[0].name
        if name not in entity_type.keys:
            raise BadRequest(
                f"Invalid key predicate: '{name}' is not a key property of "
                f"{entity_type.name} (keys: {', '.join(entity_type.keys)})"
            )
        if name in values:
            raise BadRequest(f"Invalid key predicate: '{name}' given twice")
        values[name] = value
        while pos < len(text) and text[pos] == " ":
            pos += 1
        if pos < len(text):
            if text[pos] != ",":
                raise BadRequest(f"Invalid key predicate: ({predicate})")
            pos += 1
            while pos < len(text) and text[pos] == " ":
                pos += 1
    missing = [k for k in entity_type.keys if k not in values]
    if missing:
        raise BadRequest(f"Invalid key predicate: ({predicate}); missing {', '.join(missing)}")
    return values

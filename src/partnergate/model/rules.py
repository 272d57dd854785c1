"""The rules every write to the Partner Directory obeys, whoever makes it (API, $batch, UI).

Sources (see shared/reference/sap-partner-directory.md): Pid and parameter Id charset and
lengths from SAP's "Partner Directory" and "Partner Directory Entity Types" pages; MaxLength
facets from the live ``$metadata``; content types from "Partner Directory Entity Types";
alternative-partner hex keys as Java's ``printHexBinary`` (upper case) of the UTF-8 bytes;
authorised users stored lower-case.

Characters: SAP documents a character set only for ``Pid`` and parameter ``Id``. For every
other string the rule here is what both stores and both formats can carry unchanged: no
NUL (PostgreSQL's ``text`` cannot hold it), no other C0 control but TAB, LF and CR, no
U+FFFE/U+FFFF and no lone surrogate (XML 1.0 §2.2 ``Char``, so Atom can answer with the
value). One-line fields (keys, names, users) take no control character at all and no
U+2028/U+2029 line or paragraph separator: they travel in URIs, headers and log lines.
Lengths are counted on the value as stored, i.e. after case folding.
"""

from __future__ import annotations

import binascii
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .entities import (
    ALTERNATIVE_PARTNER,
    AUDIT_NAMES,
    AUTHORIZED_USER,
    BINARY_PARAMETER,
    CERTIFICATE_USER_MAPPING,
    ENTITY_TYPES,
    STRING_PARAMETER,
    USER_CREDENTIAL_PARAMETER,
    EdmType,
    EntityType,
    Property,
)
from .errors import InvalidKey, InvalidValue

IDENTIFIER_CHARS = re.compile(r"[A-Za-z0-9\-._~<>@]+")
"""Allowed in a ``Pid`` and in a parameter ``Id``."""

IDENTIFIER_RULE = "A-Z a-z 0-9 - . _ ~ < > @"

NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""Characters no string value may hold (see the module docstring)."""

NOT_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")
"""Characters a one-line value (a key, a name, a user) may not hold: every control
character (Unicode ``Cc``), the line and paragraph separators, and what ``NOT_TEXT`` refuses."""

AUDIT_USER_LENGTH = 150
"""MaxLength of ``CreatedBy``/``LastModifiedBy``."""

CONTENT_TYPES = ("xml", "xsl", "xsd", "json", "text", "zip", "gz", "zlib", "crt")
TEXT_CONTENT_TYPES = ("xml", "xsl", "xsd", "json", "text")
ENCODINGS = ("US-ASCII", "ISO-8859-1", "UTF-8", "UTF-16BE", "UTF-16LE", "UTF-16")

DEFAULT_MAX_BINARY_BYTES = 1_572_864

MAPPING_RULE_KINDS: dict[str, tuple[str, ...]] = {
    "SubjectIssuer": ("SubjectDN", "IssuerDN"),
    "IssuerSerial": ("IssuerDN", "SerialNumber"),
    "Thumbprint": ("Thumbprint",),
}
"""Certificate mapping rules: each kind and the properties it matches on."""

UPDATABLE: dict[str, tuple[str, ...]] = {
    STRING_PARAMETER.entity_set: ("Value",),
    BINARY_PARAMETER.entity_set: ("ContentType", "Value"),
    ALTERNATIVE_PARTNER.entity_set: ("Pid",),
    AUTHORIZED_USER.entity_set: ("Pid",),
    "CertificateMappingRules": (
        "Kind",
        "User",
        "SubjectDN",
        "IssuerDN",
        "SerialNumber",
        "Thumbprint",
    ),
}
"""What PUT/MERGE may change per entity set; sets not listed offer no PUT."""

COMPUTED: dict[str, tuple[str, ...]] = {
    ALTERNATIVE_PARTNER.entity_set: ("Hexagency", "Hexscheme", "Hexid"),
    CERTIFICATE_USER_MAPPING.entity_set: ("Id", "ValidUntil"),
}
"""Properties the server derives; a client's value for them is ignored."""


@dataclass(frozen=True)
class Limits:
    max_binary_bytes: int = DEFAULT_MAX_BINARY_BYTES


DEFAULT_LIMITS = Limits()


def hex_key(text: str) -> str:
    """Upper-case hex of the UTF-8 bytes, as SAP forms alternative-partner keys."""
    return text.encode("utf-8").hex().upper()


def unhex_key(field: str, value: str) -> str:
    """Decode a hex key given in either case; the text it names must be UTF-8."""
    try:
        return binascii.unhexlify(value).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidValue(
            f"{field} must be the hexadecimal form of UTF-8 text, got '{value}'", field=field
        ) from None


def normalize_user(name: str) -> str:
    """Authorised users are stored and compared lower-case (Java ``Locale.ENGLISH``)."""
    return name.lower()


def check_text(field: str, value: str, *, multiline: bool = False, what: str = "Property") -> None:
    """Refuse characters a stored string may not hold; one-line text refuses more."""
    bad = (NOT_TEXT if multiline else NOT_ONE_LINE).search(value)
    if bad is None:
        return
    char = bad.group()
    kind = "a line break" if char in "\n\r\u2028\u2029" else "a control character"
    if "\ud800" <= char <= "\udfff":
        kind = "an unpaired UTF-16 surrogate"
    elif char in "\ufffe\uffff":
        kind = "a non-character"
    where = "" if multiline else " in a one-line value"
    raise InvalidValue(
        f"{what} '{field}' contains U+{ord(char):04X} ({kind}), which is not allowed{where}",
        field=field,
    )


def storable(*texts: str) -> bool:
    """Whether every text could be a stored value. A look-up with one that is not has no
    match; asking the store would fail on PostgreSQL (NUL) and not on SQLite."""
    return not any(NOT_TEXT.search(text) for text in texts)


@functools.lru_cache(maxsize=256)
def audit_user(name: str) -> str:
    """The user a write is recorded under (``CreatedBy``/``LastModifiedBy``): one line,
    cut to the fields' MaxLength, as SAP keeps what fits."""
    check_text("user", name, what="The user")
    return name[:AUDIT_USER_LENGTH]


def check_value(prop: Property, value: object, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise :class:`InvalidValue` if ``value`` does not fit the property's type and facets."""
    name = prop.name
    if value is None:
        if not prop.nullable:
            raise InvalidValue(f"Property '{name}' must not be null", field=name)
        return
    kind = prop.edm_type
    if kind is EdmType.STRING:
        if not isinstance(value, str):
            raise InvalidValue(f"Property '{name}' must be a string", field=name)
        check_text(name, value, multiline=prop.multiline)
        if prop.max_length is not None and len(value) > prop.max_length:
            raise InvalidValue(
                f"Property '{name}' is {len(value)} characters long; at most "
                f"{prop.max_length} are allowed",
                field=name,
            )
    elif kind is EdmType.BINARY:
        if not isinstance(value, bytes | bytearray):
            raise InvalidValue(f"Property '{name}' must be binary (base64 in JSON)", field=name)
        if len(value) > limits.max_binary_bytes:
            raise InvalidValue(
                f"Property '{name}' is {len(value)} bytes; at most {limits.max_binary_bytes} "
                "are allowed",
                field=name,
            )
    elif kind in (EdmType.INT64, EdmType.INT32):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidValue(f"Property '{name}' must be an integer", field=name)
    elif kind is EdmType.BOOLEAN:
        if not isinstance(value, bool):
            raise InvalidValue(f"Property '{name}' must be a boolean", field=name)
    elif kind is EdmType.DATETIME:
        if not isinstance(value, datetime):
            raise InvalidValue(f"Property '{name}' must be a date and time", field=name)


def check_identifier(field: str, value: str) -> None:
    """Pid and parameter Id may hold only ``A-Z a-z 0-9 - . _ ~ < > @``."""
    if not value:
        raise InvalidValue(f"Property '{field}' must not be empty", field=field)
    if not IDENTIFIER_CHARS.fullmatch(value):
        bad = sorted({c for c in value if not IDENTIFIER_CHARS.fullmatch(c)})
        shown = " ".join(repr(c) for c in bad)
        raise InvalidValue(
            f"Property '{field}' contains characters that are not allowed ({shown}); "
            f"allowed are {IDENTIFIER_RULE}",
            field=field,
        )


def check_content_type(value: str) -> str:
    """Accept ``xml`` … ``crt``, text types optionally with ``;encoding=<charset>``."""
    base, sep, params = value.partition(";")
    base = base.strip()
    if base not in CONTENT_TYPES:
        raise InvalidValue(
            f"ContentType '{value}' is not supported; use one of {', '.join(CONTENT_TYPES)}",
            field="ContentType",
        )
    if not sep:
        return base
    key, eq, encoding = params.partition("=")
    if base not in TEXT_CONTENT_TYPES or key.strip().lower() != "encoding" or not eq:
        raise InvalidValue(
            f"ContentType '{value}': only {', '.join(TEXT_CONTENT_TYPES)} take a parameter, "
            "and only 'encoding=<charset>'",
            field="ContentType",
        )
    encoding = encoding.strip()
    if encoding.upper() not in ENCODINGS:
        raise InvalidValue(
            f"ContentType '{value}': encoding must be one of {', '.join(ENCODINGS)}",
            field="ContentType",
        )
    return f"{base};encoding={encoding}"


def check_certificate_bytes(value: bytes) -> None:
    """A ``crt`` binary parameter must hold one X.509 certificate (DER, or PEM text)."""
    from cryptography import x509

    try:
        if value.lstrip().startswith(b"-----BEGIN"):
            x509.load_pem_x509_certificate(value)
        else:
            x509.load_der_x509_certificate(value)
    except ValueError as exc:
        raise InvalidValue(
            f"Value of a 'crt' binary parameter must be an X.509 certificate: {exc}",
            field="Value",
        ) from None


@functools.cache
def _skipped(entity_set: str) -> frozenset[str]:
    """Properties a write never sets: the audit fields and what the store computes."""
    return frozenset(AUDIT_NAMES) | frozenset(COMPUTED.get(entity_set, ()))


@functools.cache
def _checked(entity_set: str) -> tuple[Property, ...]:
    skip = _skipped(entity_set)
    return tuple(p for p in ENTITY_TYPES[entity_set].properties if p.name not in skip)


@functools.cache
def _quick(entity_set: str) -> tuple[tuple[Property, Callable[[str], object] | None, int], ...]:
    """Per checked property: for a string one, the search :func:`check_text` runs and its
    MaxLength (``-1``: none), so that a value that passes is accepted in one step; any
    other value goes through :func:`check_value`, which also words every refusal."""
    out = []
    for prop in _checked(entity_set):
        if prop.edm_type is EdmType.STRING:
            search = (NOT_TEXT if prop.multiline else NOT_ONE_LINE).search
            limit = -1 if prop.max_length is None else prop.max_length
            out.append((prop, search, limit))
        else:
            out.append((prop, None, -1))
    return tuple(out)


def _check_all(
    entity_type: EntityType, values: dict[str, object], limits: Limits, *, required: bool
) -> None:
    for prop, search, limit in _quick(entity_type.entity_set):
        value = values.get(prop.name, _ABSENT)
        if value is _ABSENT:
            if required and not prop.nullable:
                raise InvalidValue(f"Property '{prop.name}' is missing", field=prop.name)
            continue
        if (
            search is not None
            and type(value) is str
            and search(value) is None
            and (limit < 0 or len(value) <= limit)
        ):
            continue  # what check_value accepts: a string of allowed characters that fits
        check_value(prop, value, limits)


_ABSENT = object()


def _check_specific(entity_set: str, values: dict[str, object]) -> dict[str, object]:
    out = dict(values)
    if "Pid" in out and isinstance(out["Pid"], str):
        check_identifier("Pid", out["Pid"])
    if entity_set in ("StringParameters", "BinaryParameters", "UserCredentialParameters"):
        if "Id" in out and isinstance(out["Id"], str):
            check_identifier("Id", out["Id"])
    if entity_set == "BinaryParameters" and "ContentType" in out:
        out["ContentType"] = check_content_type(str(out["ContentType"]))
        if out["ContentType"] == "crt" and isinstance(out.get("Value"), bytes | bytearray):
            check_certificate_bytes(bytes(out["Value"]))
    if entity_set == "AuthorizedUsers" and isinstance(out.get("User"), str):
        if not out["User"].strip():
            raise InvalidValue("Property 'User' must not be empty", field="User")
        out["User"] = normalize_user(out["User"])
    if entity_set == "AlternativePartners":
        for name in ("Agency", "Scheme", "Id"):
            if isinstance(out.get(name), str) and not out[name]:
                raise InvalidValue(f"Property '{name}' must not be empty", field=name)
    if entity_set == "CertificateMappingRules":
        if isinstance(out.get("Id"), str):
            check_identifier("Id", out["Id"])
        out = _check_mapping_rule_fields(out)
    if entity_set == "UserCredentialParameters" and isinstance(out.get("User"), str):
        if not out["User"]:
            raise InvalidValue("Property 'User' must not be empty", field="User")
    return out


def _check_mapping_rule_fields(values: dict[str, object]) -> dict[str, object]:
    out = dict(values)
    if "Kind" in out and out["Kind"] not in MAPPING_RULE_KINDS:
        raise InvalidValue(
            f"Kind must be one of {', '.join(MAPPING_RULE_KINDS)}, got '{out['Kind']}'",
            field="Kind",
        )
    if isinstance(out.get("User"), str) and not out["User"].strip():
        raise InvalidValue("Property 'User' must not be empty", field="User")
    for name in ("SerialNumber", "Thumbprint"):
        value = out.get(name)
        if isinstance(value, str):
            digits = value.replace(":", "").replace(" ", "").lower()
            if not digits or any(c not in "0123456789abcdef" for c in digits):
                raise InvalidValue(f"{name} must be hexadecimal", field=name)
            if name == "Thumbprint" and len(digits) != 64:
                raise InvalidValue(
                    "Thumbprint must be the SHA-256 of the DER (64 hex digits)", field=name
                )
            if name == "SerialNumber":
                digits = digits.lstrip("0") or "0"
            out[name] = digits
    return out


def check_mapping_rule(values: dict[str, object]) -> None:
    """A rule must carry every property its kind matches on."""
    for name in MAPPING_RULE_KINDS[str(values["Kind"])]:
        if not values.get(name):
            raise InvalidValue(f"A {values['Kind']} rule needs {name}", field=name)


def prepare_create(
    entity_type: EntityType, values: dict[str, object], limits: Limits = DEFAULT_LIMITS
) -> dict[str, object]:
    """Check a new entity and return it normalised, without audit or computed fields."""
    if entity_type is USER_CREDENTIAL_PARAMETER and values.get("Password") is None:
        raise InvalidValue(
            "The value of the property 'Password' is missing for the entity "
            "'UserCredentialParameter'",
            field="Password",
        )
    values = _fold(entity_type, values)
    _check_all(entity_type, values, limits, required=True)
    out = _check_specific(entity_type.entity_set, values)
    skip = _skipped(entity_type.entity_set)
    if not skip.isdisjoint(out):
        out = {k: v for k, v in out.items() if k not in skip}
    if entity_type is ALTERNATIVE_PARTNER:
        out["Hexagency"] = hex_key(str(out["Agency"]))
        out["Hexscheme"] = hex_key(str(out["Scheme"]))
        out["Hexid"] = hex_key(str(out["Id"]))
    return out


def _fold(entity_type: EntityType, values: dict[str, object]) -> dict[str, object]:
    """Case-fold what is stored folded, so that lengths are checked on the stored form
    (``"İ"`` lower-cases to two characters)."""
    if entity_type is AUTHORIZED_USER and isinstance(values.get("User"), str):
        return {**values, "User": normalize_user(str(values["User"]))}
    return values


def prepare_key(entity_type: EntityType, key: dict[str, object]) -> dict[str, object]:
    """A key from a request, in the form it is stored under, checked like a stored value.

    Users are folded to lower case and hex keys to upper case first; a key with a
    character no stored value can hold, or longer than its property allows, is refused
    rather than looked up.
    """
    out = dict(key)
    if entity_type is AUTHORIZED_USER and isinstance(out.get("User"), str):
        out["User"] = normalize_user(str(out["User"]))
    try:
        for prop in entity_type.key_properties:
            value = out.get(prop.name)
            if isinstance(value, str):
                check_value(prop, value)
        if entity_type is ALTERNATIVE_PARTNER:
            for name in entity_type.keys:
                # Accept either case; decoding proves it is hex of UTF-8 text.
                check_text(name, unhex_key(name, str(out[name])))
                out[name] = str(out[name]).upper()
    except InvalidValue as exc:
        raise InvalidKey(f"Invalid key: {exc.message}", field=exc.field) from None
    return out


def prepare_update(
    entity_type: EntityType,
    key: dict[str, object],
    values: dict[str, object],
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, object]:
    """Check the body of a PUT/MERGE and return only what may change.

    Key properties may be repeated in the body if they equal the addressed key; audit and
    computed properties are ignored; anything else that is not updatable is refused.
    """
    updatable = UPDATABLE[entity_type.entity_set]
    ignored = set(AUDIT_NAMES) | set(COMPUTED.get(entity_type.entity_set, ()))
    changes: dict[str, object] = {}
    for name, value in values.items():
        if name in updatable:
            changes[name] = value
        elif name in key:
            if _same_key_value(entity_type, name, value, key[name]):
                continue
            raise InvalidValue(
                f"Property '{name}' is part of the key and cannot be changed", field=name
            )
        elif name in ignored:
            continue
        else:
            raise InvalidValue(
                f"Property '{name}' cannot be changed; an update may change only "
                f"{', '.join(updatable)}",
                field=name,
            )
    if not changes:
        raise InvalidValue(f"Nothing to update: give {', '.join(updatable)}")
    for name, value in changes.items():
        check_value(entity_type.prop(name), value, limits)
    return _check_specific(entity_type.entity_set, changes)


def _same_key_value(entity_type: EntityType, name: str, given: object, addressed: object) -> bool:
    if entity_type is AUTHORIZED_USER and isinstance(given, str):
        return normalize_user(given) == addressed
    if entity_type is ALTERNATIVE_PARTNER and isinstance(given, str):
        return given.upper() == str(addressed).upper()
    return given == addressed

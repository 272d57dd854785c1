"""Header fields of the answers we send: the one check that a value can go on the wire.

RFC 9110 §5.5 (formerly RFC 7230 §3.2): ``field-value = *field-content``, made of visible
ASCII, ``obs-text`` (bytes 0x80–0xFF, i.e. Latin-1) and SP/HTAB between them. A CR or LF
would start a forged header (response splitting), a character beyond Latin-1 has no byte
to be sent as. Values we build from client data (``Location``) are percent-encoded so they
always pass; this check is the guard that a response never leaves half-sendable.
"""

from __future__ import annotations

import re

_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""RFC 9110 §5.1: ``field-name = token``."""

_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


class UnsendableHeader(ValueError):
    """A header field that cannot be written to an HTTP/1.1 message as it is."""


def check_field(name: str, value: str) -> None:
    """Raise :class:`UnsendableHeader` unless ``name: value`` is a valid header field."""
    if _FIELD_NAME.fullmatch(name) is None:
        raise UnsendableHeader(f"invalid header field name {name!r}")
    if _FIELD_VALUE.fullmatch(value) is None:
        raise UnsendableHeader(f"invalid value of header field {name}: {value!r}")


def check_fields(headers: dict[str, str]) -> None:
    for name, value in headers.items():
        check_field(name, value)

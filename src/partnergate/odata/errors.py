"""OData V2 errors and their bodies, in JSON (``{"error": ...}``) and XML.

Shape per the Partner Directory API spec's ``odata.error`` definition:
``{"error": {"code": ..., "message": {"lang": "en", "value": ...}}}``.
"""

from __future__ import annotations

import json
import re
from xml.sax.saxutils import escape

METADATA_NS = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"


class ODataError(Exception):
    """A client's request the service refuses; ``status`` is the HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class BadRequest(ODataError):
    def __init__(self, message: str, code: str = "Bad Request") -> None:
        super().__init__(400, code, message)


class NotFoundError(ODataError):
    def __init__(self, message: str) -> None:
        super().__init__(404, "Not Found", message)


class MethodNotAllowed(ODataError):
    def __init__(self, message: str) -> None:
        super().__init__(405, "Method Not Allowed", message)


def error_json(code: str, message: str) -> bytes:
    body = {"error": {"code": code, "message": {"lang": "en", "value": message}}}
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "backslashreplace")


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""What XML 1.0 §2.2 ``Char`` excludes; a message may quote a client's bytes."""


def _xml_text(text: str) -> str:
    """Escaped for XML, characters XML cannot hold shown as ``U+XXXX``."""
    return escape(_NOT_XML.sub(lambda m: f"U+{ord(m.group()):04X}", text))


def error_xml(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<error xmlns="{METADATA_NS}">'
        f"<code>{_xml_text(code)}</code>"
        f'<message xml:lang="en">{_xml_text(message)}</message>'
        "</error>"
    ).encode()

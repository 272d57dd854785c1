"""Errors that the rules of the directory raise, independent of any protocol.

The web layer turns each into an HTTP status and an OData error body; the UI shows the
same message next to the field. Each carries a stable ``code`` for the OData body.
"""

from __future__ import annotations


class DirectoryError(Exception):
    """Base of every error a caller can cause; never a server fault."""

    status = 400
    code = "Bad Request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidValue(DirectoryError):
    """A value breaks a rule of its property (length, charset, type, enumeration)."""

    code = "Invalid Value"


class NotFound(DirectoryError):
    status = 404
    code = "Not Found"


class InvalidKey(NotFound):
    """A key no entity can have (a control character, too long): nothing is found, and
    the request is malformed, so the API answers 400; pages show it as not found."""

    status = 400
    code = "Invalid Key"


class AlreadyExists(DirectoryError):
    """The key is taken. SAP's current clients read 400 on POST as "exists" (DECISIONS D2)."""

    code = "Entity Already Exists"


class Conflict(DirectoryError):
    """A uniqueness rule other than the key, e.g. (Agency, Scheme, Pid)."""

    code = "Unique Constraint Violated"


class NotSupported(DirectoryError):
    """A method or option the entity set does not offer."""

    status = 405
    code = "Method Not Allowed"

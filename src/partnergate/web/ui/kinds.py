"""The five kinds of entity a partner is made of, as the UI lists, links and edits them.

One :class:`Kind` per Partner Directory entity set: its URL segment, the names people
read, which query parameters name one entity in a link, and which fields its create and
change forms show. The rules themselves stay in :mod:`partnergate.model.rules`; this
module only says which form field feeds which property.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from ...model.entities import ENTITY_TYPES
from ...model.rules import hex_key


@dataclass(frozen=True)
class Field:
    """One input of a form; ``name`` is the entity property it sets (and errors name)."""

    name: str
    label: str
    widget: str = "text"
    """``text``, ``textarea``, ``password``, ``partner`` or ``binary`` (type + file/text)."""
    help: str = ""
    max_length: int | None = None
    required: bool = True
    mono: bool = False
    picker: str = ""
    """``users`` or ``partners``: offer the store's names as the field is typed."""


@dataclass(frozen=True)
class Kind:
    slug: str
    entity_set: str
    title: str
    titles: str
    key_params: tuple[tuple[str, str], ...]
    """(query parameter, property) pairs that name one entity of this kind in a URL."""
    create: tuple[Field, ...]
    change: tuple[Field, ...] = ()
    change_label: str = "Edit"
    change_link: str = "Edit"
    """The word of the table's link to the change form."""
    upsert: bool = False
    """Changes are made by creating again (SAP: POST on an existing key updates it)."""
    intro: str = ""

    @property
    def keyed_by_pid(self) -> bool:
        return "Pid" in ENTITY_TYPES[self.entity_set].keys

    def label_of(self, row: Mapping[str, object]) -> str:
        """How one entity is named in headings and messages."""
        if self.slug == "alternative-partners":
            return f"{row['Agency']} / {row['Scheme']} / {row['Id']}"
        return str(row[self.key_params[0][1]])

    def query_of(self, row: Mapping[str, object]) -> str:
        return urlencode([(param, str(row[prop])) for param, prop in self.key_params])

    def key_of(self, row: Mapping[str, object]) -> dict[str, object]:
        """The store key of an entity as the store returned it."""
        return {k: row[k] for k in ENTITY_TYPES[self.entity_set].keys}

    def key_from(self, pid: str, params: Mapping[str, str]) -> dict[str, object] | None:
        """The store key named by a link's query parameters, or None if one is missing."""
        values = {prop: params.get(param) for param, prop in self.key_params}
        if any(v is None for v in values.values()):
            return None
        if self.slug == "alternative-partners":
            return {
                "Hexagency": hex_key(str(values["Agency"])),
                "Hexscheme": hex_key(str(values["Scheme"])),
                "Hexid": hex_key(str(values["Id"])),
            }
        key: dict[str, object] = dict(values)
        if self.keyed_by_pid:
            key["Pid"] = pid
        return key


def _max(entity_set: str, name: str) -> int | None:
    return ENTITY_TYPES[entity_set].prop(name).max_length


_ID_HELP = "Letters, digits and - . _ ~ < > @"
_MOVE = Field(
    "Pid",
    "Partner",
    widget="partner",
    help="The partner it belongs to; give another partner's ID to move it there.",
    max_length=60,
    mono=True,
    picker="partners",
)

STRING = Kind(
    slug="string-parameters",
    entity_set="StringParameters",
    title="String parameter",
    titles="String parameters",
    key_params=(("id", "Id"),),
    create=(
        Field("Id", "ID", help=_ID_HELP, max_length=_max("StringParameters", "Id"), mono=True),
        Field(
            "Value",
            "Value",
            widget="textarea",
            max_length=_max("StringParameters", "Value"),
            required=False,
            mono=True,
        ),
    ),
    change=(
        Field(
            "Value",
            "Value",
            widget="textarea",
            max_length=_max("StringParameters", "Value"),
            required=False,
            mono=True,
        ),
    ),
    intro="Text values a flow reads, such as an ADDRESS or a receiver's name.",
)

BINARY = Kind(
    slug="binary-parameters",
    entity_set="BinaryParameters",
    title="Binary parameter",
    titles="Binary parameters",
    key_params=(("id", "Id"),),
    create=(
        Field("Id", "ID", help=_ID_HELP, max_length=_max("BinaryParameters", "Id"), mono=True),
        Field("Value", "Content", widget="binary"),
    ),
    change=(Field("Value", "Content", widget="binary", required=False),),
    change_label="Replace content",
    change_link="View",
    intro="Files a flow reads: XSLT mappings, schemas, JSON, certificates, archives.",
)

CREDENTIAL = Kind(
    slug="credentials",
    entity_set="UserCredentialParameters",
    title="User credential",
    titles="User credentials",
    key_params=(("id", "Id"),),
    create=(
        Field(
            "Id",
            "ID",
            help=_ID_HELP,
            max_length=_max("UserCredentialParameters", "Id"),
            mono=True,
        ),
        Field("User", "User", max_length=_max("UserCredentialParameters", "User")),
        Field(
            "Password",
            "Password",
            widget="password",
            help="Stored encrypted; never shown again.",
            max_length=_max("UserCredentialParameters", "Password"),
        ),
    ),
    change=(
        Field("User", "User", max_length=_max("UserCredentialParameters", "User")),
        Field(
            "Password",
            "New password",
            widget="password",
            help="Stored encrypted; never shown again.",
            max_length=_max("UserCredentialParameters", "Password"),
        ),
    ),
    change_label="Set user and password",
    change_link="Change",
    upsert=True,
    intro="User and password a flow sends to a receiver (pd:<Pid>:<Id>:UserCredential).",
)

ALTERNATIVE = Kind(
    slug="alternative-partners",
    entity_set="AlternativePartners",
    title="Alternative partner",
    titles="Alternative partners",
    key_params=(("agency", "Agency"), ("scheme", "Scheme"), ("id", "Id")),
    create=(
        Field("Agency", "Agency", max_length=_max("AlternativePartners", "Agency")),
        Field("Scheme", "Scheme", max_length=_max("AlternativePartners", "Scheme")),
        Field("Id", "ID", max_length=_max("AlternativePartners", "Id"), mono=True),
    ),
    change=(_MOVE,),
    change_label="Move to another partner",
    change_link="Move",
    intro="Other names of this partner, such as a GLN or a DUNS number, by agency and scheme.",
)

PID_FIELD = Field(
    "Pid",
    "Partner ID",
    help="Letters, digits and - . _ ~ < > @, at most 60.",
    max_length=60,
    mono=True,
)
"""A partner ID typed on a form (as the new-partner, grid and document pages ask for it)."""

AUTHORIZED_USER = Kind(
    slug="authorized-users",
    entity_set="AuthorizedUsers",
    title="Authorized user",
    titles="Authorized users",
    key_params=(("user", "User"),),
    create=(
        Field(
            "User",
            "User",
            help="Stored in lower case. Messages sent by this user are this partner's.",
            max_length=_max("AuthorizedUsers", "User"),
            picker="users",
        ),
    ),
    change=(_MOVE,),
    change_label="Move to another partner",
    change_link="Move",
    intro="Users whose messages come from this partner.",
)

KINDS: dict[str, Kind] = {
    k.slug: k for k in (STRING, BINARY, CREDENTIAL, ALTERNATIVE, AUTHORIZED_USER)
}

CONTENT_TYPE_NAMES: dict[str, str] = {
    "xml": "XML",
    "xsl": "XSLT stylesheet",
    "xsd": "XML schema",
    "json": "JSON",
    "text": "Text",
    "zip": "ZIP archive",
    "gz": "gzip",
    "zlib": "zlib",
    "crt": "X.509 certificate",
}

_EXTENSIONS = {
    "xml": "xml",
    "xsl": "xsl",
    "xslt": "xsl",
    "xsd": "xsd",
    "json": "json",
    "txt": "text",
    "text": "text",
    "csv": "text",
    "zip": "zip",
    "gz": "gz",
    "tgz": "gz",
    "zlib": "zlib",
    "crt": "crt",
    "cer": "crt",
    "pem": "crt",
    "der": "crt",
}

DOWNLOAD: dict[str, tuple[str, str]] = {
    "xml": ("application/xml", "xml"),
    "xsl": ("application/xslt+xml", "xsl"),
    "xsd": ("application/xml", "xsd"),
    "json": ("application/json", "json"),
    "text": ("text/plain", "txt"),
    "zip": ("application/zip", "zip"),
    "gz": ("application/gzip", "gz"),
    "zlib": ("application/octet-stream", "zlib"),
    "crt": ("application/pkix-cert", "crt"),
}
"""Content type of a binary parameter → media type and file extension of its download."""


def content_type_for(filename: str) -> str | None:
    """Guess a binary parameter's content type from an uploaded file's name."""
    _, dot, ext = filename.rpartition(".")
    return _EXTENSIONS.get(ext.lower()) if dot else None

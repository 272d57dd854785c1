"""``pd:`` URIs and the unpacking of binary parameters, as SAP Cloud Integration reads them.

Syntax (SAP, "Partner Directory" and "Dynamically Reading XSLT Mappings from the Partner
Directory"): ``pd:<Partner ID>:<Parameter ID>:Binary`` names a binary parameter,
``pd:<Partner ID>:<Parameter ID>:UserCredential`` a user credential parameter. Neither a
Pid nor a parameter Id may contain ``:``, so the split is unambiguous.
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
import zlib
from dataclasses import dataclass

KINDS = ("Binary", "UserCredential")

PD_URI = re.compile(r"pd:([^:\s'\"]+):([^:\s'\"]+):(Binary|UserCredential)")
"""A ``pd:`` URI inside free text, such as a Saxon error message."""

MAX_UNPACKED_BYTES = 64 * 1024 * 1024
"""A compressed binary parameter may not unpack to more than this (zip bombs)."""

STYLESHEET_SUFFIXES = (".xsl", ".xslt")


@dataclass(frozen=True)
class PdUri:
    pid: str
    id: str
    kind: str

    def __str__(self) -> str:
        return f"pd:{self.pid}:{self.id}:{self.kind}"


def parse_pd_uri(text: str, kind: str | None = None) -> PdUri:
    """Split ``pd:<Pid>:<Id>:<Kind>``; ``ValueError`` says what is wrong."""
    parts = text.split(":")
    if len(parts) != 4 or parts[0] != "pd" or not parts[1] or not parts[2]:
        expected = f"pd:<Pid>:<Id>:{kind or 'Binary'}"
        raise ValueError(f"{text!r} is not a pd: URI of the form {expected}")
    if parts[3] not in KINDS or (kind is not None and parts[3] != kind):
        wanted = kind or " or ".join(KINDS)
        raise ValueError(f"{text!r} must end in :{wanted}")
    return PdUri(parts[1], parts[2], parts[3])


def unpack(data: bytes, content_type: str) -> bytes:
    """The content a consumer of a binary parameter reads: compressed types unpacked.

    A ``zip`` parameter must hold one file, or exactly one stylesheet among several
    (SAP's examples ship one XSLT per zip; which entry wins otherwise is not documented).
    """
    kind = content_type.lower()
    if kind == "gz":
        return _bounded(gzip.GzipFile(fileobj=io.BytesIO(data)))
    if kind == "zlib":
        inflater = zlib.decompressobj()
        out = inflater.decompress(data, MAX_UNPACKED_BYTES + 1)
        if len(out) > MAX_UNPACKED_BYTES:
            raise ValueError("the zlib parameter unpacks to more than 64 MiB")
        return out
    if kind == "zip":
        return _zip_entry(data)
    return data


def _zip_entry(data: bytes) -> bytes:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValueError("the zip parameter is not a zip archive") from None
    files = [i for i in archive.infolist() if not i.is_dir()]
    if len(files) != 1:
        files = [i for i in files if i.filename.lower().endswith(STYLESHEET_SUFFIXES)]
    if len(files) != 1:
        raise ValueError("the zip parameter must hold one file, or exactly one .xsl file")
    with archive.open(files[0]) as entry:
        return _bounded(entry)


def _bounded(stream: io.BufferedIOBase | gzip.GzipFile | zipfile.ZipExtFile) -> bytes:
    try:
        out = stream.read(MAX_UNPACKED_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"the parameter cannot be unpacked ({exc})") from None
    if len(out) > MAX_UNPACKED_BYTES:
        raise ValueError("the parameter unpacks to more than 64 MiB")
    return out

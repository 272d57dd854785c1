"""A Partner Directory folder as one zip file, for a browser to download and upload.

Zips are deterministic (names sorted, one fixed timestamp), so two exports of the same
content are the same bytes. Unpacking trusts nothing: names that climb out of the folder,
links, too many files or too many bytes are refused before anything is written.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

from .files import CERT_DIR, CERT_FILE, LayoutError, is_partner_dir

FIXED_TIME = (2000, 1, 1, 0, 0, 0)
MAX_FILES = 200_000


def pack(root: Path, top: str = "partner-directory") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = f"{top}/{path.relative_to(root).as_posix()}"
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def unpack(data: bytes, into: Path, max_bytes: int) -> Path:
    """Write the zip's files under ``into``; the folder that holds the partners."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise LayoutError("the upload is not a zip file") from None
    with archive:
        entries = [i for i in archive.infolist() if not i.is_dir()]
        if len(entries) > MAX_FILES:
            raise LayoutError(f"the zip holds more than {MAX_FILES} files")
        if sum(i.file_size for i in entries) > max_bytes:
            raise LayoutError(f"the zip unpacks to more than {max_bytes} bytes")
        for info in entries:
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
                raise LayoutError(f"the zip holds a file outside its folder: {info.filename!r}")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise LayoutError(f"the zip holds a link: {info.filename!r}")
            target = into.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source:
                content = source.read(max_bytes + 1)
            if len(content) > info.file_size:
                raise LayoutError(f"{info.filename!r} is larger than the zip says")
            target.write_bytes(content)
    return _content_root(into)


def _content_root(folder: Path) -> Path:
    """The zip may hold the partner folders themselves or one folder around them."""
    children = [p for p in folder.iterdir()]
    holds = any(is_partner_dir(p) or p.name in (CERT_DIR, CERT_FILE) for p in children)
    if not holds and len(children) == 1 and children[0].is_dir():
        return children[0]
    return folder

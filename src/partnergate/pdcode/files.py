"""The directory layout: one folder per Pid, FlashPipe's files plus ours.

```
<dir>/<Pid>/String.properties         FlashPipe: Id=Value, escapes \\n \\r \\\\
<dir>/<Pid>/Binary/<Id>.<ext>         FlashPipe: the bytes; ext from the ContentType
<dir>/<Pid>/Binary/_metadata.json     FlashPipe: {"<Id>.<ext>": "<ContentType>"}
<dir>/<Pid>/AlternativePartners.yaml  [{Agency, Scheme, Id}]
<dir>/<Pid>/AuthorizedUsers.yaml      [user]
<dir>/<Pid>/UserCredentials.yaml      [{Id, User, Password: env:NAME | file:PATH}]
<dir>/_certificates/<Id>.pem          CertificateUserMappings, one PEM each
<dir>/_certificates.yaml              {mappings: [{certificate, User}], rules: [{Id, ...}]}
```

Output is deterministic: keys sorted, LF line endings, UTF-8, a final newline. The rules
and where they follow or leave FlashPipe are in ``docs/pd-as-code.md``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..model.rules import CONTENT_TYPES, TEXT_CONTENT_TYPES
from ..security import certificates as certs
from .plan import Binary, Certificates, Credential, Mapping, Partner

STRINGS = "String.properties"
BINARY = "Binary"
METADATA = "_metadata.json"
ALTERNATIVES = "AlternativePartners.yaml"
USERS = "AuthorizedUsers.yaml"
CREDENTIALS = "UserCredentials.yaml"
CERT_DIR = "_certificates"
CERT_FILE = "_certificates.yaml"
PARTNER_FILES = (STRINGS, BINARY, ALTERNATIVES, USERS, CREDENTIALS)
RULE_FIELDS = ("Kind", "User", "SubjectDN", "IssuerDN", "SerialNumber", "Thumbprint")

# FlashPipe lists "txt"; SAP and partnergate call that content type "text".
_EXTENSION_TYPES = {"txt": "text"}
_MIME_TYPES = {
    "application/xml": "xml",
    "text/xml": "xml",
    "application/xslt+xml": "xsl",
    "application/json": "json",
    "text/plain": "text",
    "application/zip": "zip",
    "application/gzip": "gz",
    "application/x-gzip": "gz",
    "application/zlib": "zlib",
    "application/x-x509-ca-cert": "crt",
    "application/x-x509-user-cert": "crt",
    "application/pkix-cert": "crt",
}


class LayoutError(ValueError):
    """A file of the directory cannot be read as the layout says."""


# -- String.properties ----------------------------------------------------------------


def escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "f": "\f"}


def unescape_value(text: str) -> str:
    """FlashPipe's escapes, read left to right, and Java's ``\\t``, ``\\uXXXX``."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u" and i + 6 <= len(text):
            try:
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            except ValueError:
                pass
        out.append(_UNESCAPE.get(nxt, nxt))
        i += 2
    return "".join(out)


def write_properties(values: dict[str, str]) -> bytes:
    return "".join(f"{k}={escape_value(v)}\n" for k, v in sorted(values.items())).encode()


def read_properties(data: bytes, where: str) -> dict[str, str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{where}: not UTF-8 ({exc})") from None
    out: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        stripped = line.lstrip()
        if not stripped or stripped[0] in "#!":
            continue
        key, eq, value = stripped.partition("=")
        if not eq:
            raise LayoutError(f"{where}:{number}: expected Id=Value")
        out[key.strip()] = unescape_value(value)
    return out


# -- binary parameters ------------------------------------------------------------------


def extension(content_type: str) -> str:
    """FlashPipe's rule: the content type without its parameters is the extension."""
    base = content_type.split(";", 1)[0].strip()
    if "/" in base:
        base = _MIME_TYPES.get(base.lower(), base.rsplit("/", 1)[1])
    return base if base.isalnum() and base else "bin"


def content_type_of(filename: str, metadata: dict[str, str]) -> str:
    """SAP's ContentType for a file: its metadata entry, else its extension."""
    ext = filename.rsplit(".", 1)[1] if "." in filename else "bin"
    ext = _EXTENSION_TYPES.get(ext.lower(), ext.lower())
    given = metadata.get(filename)
    if given is None:
        return ext
    base, semi, params = given.partition(";")
    base = base.strip()
    if "/" in base:  # a MIME type, as FlashPipe's docs show: the extension says more
        short = ext if ext in CONTENT_TYPES else _MIME_TYPES.get(base.lower(), ext)
        if semi and short in TEXT_CONTENT_TYPES:
            return f"{short};{params}"
        return short
    if base.lower() in _EXTENSION_TYPES:
        return _EXTENSION_TYPES[base.lower()] + (f";{params}" if semi else "")
    return given


def binary_filename(id_: str, content_type: str) -> str:
    # Always append the extension (FlashPipe skips it when the Id already ends with it,
    # and then reads the Id back without it): the Id is the name less its last extension.
    return f"{id_}.{extension(content_type)}"


# -- YAML -------------------------------------------------------------------------------


def _dump_yaml(data: Any) -> bytes:
    text = yaml.safe_dump(
        data, sort_keys=True, allow_unicode=True, default_flow_style=False, width=4096
    )
    return text.encode()


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise LayoutError(f"{path}: not YAML: {exc}") from None


def _list_of(path: Path, kind: type) -> list[Any]:
    data = _load_yaml(path)
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(x, kind) for x in data):
        raise LayoutError(f"{path}: expected a list of {'names' if kind is str else 'mappings'}")
    return data


def _text(path: Path, item: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = item.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise LayoutError(f"{path}: each entry needs {name} (text)")
    return str(value)


# -- reading ----------------------------------------------------------------------------


def is_partner_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in PARTNER_FILES)


def list_pids(root: Path, pids: Iterable[str] | None = None) -> list[str]:
    """The Pids the directory holds: folders with at least one of the partner files."""
    if not root.is_dir():
        raise LayoutError(f"{root}: no such directory")
    wanted = set(pids) if pids is not None else None
    found = sorted(p.name for p in root.iterdir() if p.name != CERT_DIR and is_partner_dir(p))
    return [pid for pid in found if wanted is None or pid in wanted]


def read_partner(root: Path, pid: str) -> Partner:
    folder = root / pid
    partner = Partner(pid)
    strings = folder / STRINGS
    if strings.is_file():
        partner.strings = read_properties(strings.read_bytes(), str(strings))
    binary = folder / BINARY
    if binary.is_dir():
        metadata: dict[str, str] = {}
        meta_path = binary / METADATA
        if meta_path.is_file():
            try:
                metadata = json.loads(meta_path.read_text("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise LayoutError(f"{meta_path}: not JSON: {exc}") from None
            if not isinstance(metadata, dict):
                raise LayoutError(f"{meta_path}: expected an object of file name to type")
        for file in sorted(binary.iterdir()):
            if file.name == METADATA or not file.is_file():
                continue
            id_ = file.name.rsplit(".", 1)[0] if "." in file.name else file.name
            if id_ in partner.binaries:
                raise LayoutError(f"{file}: a second file for binary parameter {id_!r}")
            partner.binaries[id_] = Binary(content_type_of(file.name, metadata), file.read_bytes())
    alternatives = folder / ALTERNATIVES
    if alternatives.is_file():
        for item in _list_of(alternatives, dict):
            agency = _text(alternatives, item, "Agency")
            scheme = _text(alternatives, item, "Scheme")
            ident = _text(alternatives, item, "Id")
            partner.alternatives.add((str(agency), str(scheme), str(ident)))
    users = folder / USERS
    if users.is_file():
        partner.users = {u.lower() for u in _list_of(users, str)}
    credentials = folder / CREDENTIALS
    if credentials.is_file():
        for item in _list_of(credentials, dict):
            id_ = str(_text(credentials, item, "Id"))
            user = str(_text(credentials, item, "User"))
            ref = _text(credentials, item, "Password", required=False)
            partner.credentials[id_] = Credential(user, ref)
    return partner


def read_partners(root: Path, pids: Iterable[str] | None = None) -> Iterator[Partner]:
    for pid in list_pids(root, pids):
        yield read_partner(root, pid)


def read_certificates(root: Path) -> Certificates | None:
    """None when the directory has no ``_certificates.yaml``: then none are managed."""
    path = root / CERT_FILE
    if not path.is_file():
        return None
    data = _load_yaml(path) or {}
    if not isinstance(data, dict):
        raise LayoutError(f"{path}: expected mappings: and rules:")
    out = Certificates()
    for item in data.get("mappings") or []:
        if not isinstance(item, dict):
            raise LayoutError(f"{path}: each mapping needs certificate and User")
        name = str(_text(path, item, "certificate"))
        user = str(_text(path, item, "User"))
        pem_path = root / CERT_DIR / name
        if not pem_path.is_file() or Path(name).name != name:
            raise LayoutError(f"{path}: certificate {name!r} is not a file in {CERT_DIR}/")
        try:
            cert = certs.load_certificate(pem_path.read_text("ascii"))
        except Exception as exc:  # what the certificate parser refuses, in its words
            raise LayoutError(f"{pem_path}: not a PEM certificate: {exc}") from None
        out.mappings[certs.mapping_id(cert)] = Mapping(user, pem_text(cert))
    for item in data.get("rules") or []:
        if not isinstance(item, dict):
            raise LayoutError(f"{path}: each rule needs Id, Kind and User")
        id_ = str(_text(path, item, "Id"))
        out.rules[id_] = {k: str(item[k]) for k in RULE_FIELDS if item.get(k) not in (None, "")}
    return out


def pem_text(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


# -- resolving password references ------------------------------------------------------


def resolve_passwords(partner: Partner, base: Path) -> None:
    """Turn each credential's ``env:``/``file:`` reference into the password it names."""
    for id_, cred in partner.credentials.items():
        ref = cred.password
        if ref is None:
            continue
        where = f"{partner.pid}/{CREDENTIALS} {id_}"
        if ref.startswith("env:"):
            value = os.environ.get(ref[4:])
            if value is None:
                raise LayoutError(f"{where}: environment variable {ref[4:]} is not set")
        elif ref.startswith("file:"):
            file = Path(ref[5:])
            file = file if file.is_absolute() else base / file
            try:
                value = file.read_text("utf-8").rstrip("\r\n")
            except OSError as exc:
                raise LayoutError(f"{where}: cannot read {ref}: {exc.strerror}") from None
        else:
            raise LayoutError(
                f"{where}: Password must be a reference, env:NAME or file:PATH "
                "(a password itself never belongs in these files)"
            )
        cred.secret = value


# -- writing ----------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def clear_partner(folder: Path) -> None:
    for name in PARTNER_FILES:
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def write_partner(root: Path, partner: Partner) -> None:
    if partner.pid in (CERT_DIR, CERT_FILE):
        raise LayoutError(f"Pid {partner.pid!r} is reserved for certificate files")
    folder = root / partner.pid
    kept = _password_references(folder / CREDENTIALS)
    clear_partner(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if partner.strings:
        _write(folder / STRINGS, write_properties(partner.strings))
    if partner.binaries:
        metadata: dict[str, str] = {}
        for id_, binary in sorted(partner.binaries.items()):
            name = binary_filename(id_, binary.content_type)
            _write(folder / BINARY / name, binary.value)
            if binary.content_type != extension(binary.content_type):
                metadata[name] = binary.content_type
        if metadata:
            text = json.dumps(metadata, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            _write(folder / BINARY / METADATA, text.encode())
    if partner.alternatives:
        rows = [{"Agency": a, "Scheme": s, "Id": i} for a, s, i in sorted(partner.alternatives)]
        _write(folder / ALTERNATIVES, _dump_yaml(rows))
    if partner.users:
        _write(folder / USERS, _dump_yaml(sorted(partner.users)))
    if partner.credentials:
        rows = []
        for id_, cred in sorted(partner.credentials.items()):
            row = {"Id": id_, "User": cred.user}
            ref = kept.get(id_)
            if ref is not None:
                row["Password"] = ref
            rows.append(row)
        _write(folder / CREDENTIALS, _dump_yaml(rows))


def _password_references(path: Path) -> dict[str, str]:
    """References a previous export was given by hand: a new export keeps them."""
    if not path.is_file():
        return {}
    try:
        items = _list_of(path, dict)
    except LayoutError:
        return {}
    out = {}
    for item in items:
        ref = item.get("Password")
        if isinstance(ref, str) and ref.startswith(("env:", "file:")) and "Id" in item:
            out[str(item["Id"])] = ref
    return out


def write_certificates(root: Path, certificates: Certificates) -> None:
    folder = root / CERT_DIR
    if folder.is_dir():
        shutil.rmtree(folder)
    (root / CERT_FILE).unlink(missing_ok=True)
    if not certificates.mappings and not certificates.rules:
        return
    mappings = []
    for id_, mapping in sorted(certificates.mappings.items()):
        name = f"{id_}.pem"
        _write(folder / name, mapping.certificate.encode("ascii"))
        mappings.append({"certificate": name, "User": mapping.user})
    rules = [{"Id": id_, **fields} for id_, fields in sorted(certificates.rules.items())]
    data: dict[str, Any] = {}
    if mappings:
        data["mappings"] = mappings
    if rules:
        data["rules"] = rules
    _write(root / CERT_FILE, _dump_yaml(data))


def remove_stale(root: Path, keep: set[str]) -> None:
    """After a full export: partner folders of Pids the source no longer has go."""
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.name != CERT_DIR and path.name not in keep and is_partner_dir(path):
            clear_partner(path)
            if not any(path.iterdir()):
                path.rmdir()

"""What a Partner Directory holds, as files see it, and the plan that makes a target match.

A :class:`Partner` is everything that belongs to one Pid; :class:`Certificates` is what
belongs to no partner. :func:`diff_partner` compares what the files say with what a target
holds and yields :class:`Op` values in the order they can be applied: deletes first (so a
replaced alternative partner frees its (Agency, Scheme, Pid) slot), then creates and
updates, entity set by entity set.

Modes follow FlashPipe's ``pd-deploy``: ``add`` creates only, ``replace`` creates and
updates, ``sync`` also deletes what the files do not have — only for the Pids the files
contain (its ``--full-sync`` rule).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..model.rules import hex_key

MODES = ("add", "replace", "sync")

SHORTEN_AT = 60


@dataclass
class Binary:
    content_type: str
    value: bytes


@dataclass
class Credential:
    user: str
    password: str | None = None
    """In files: a reference (``env:NAME``, ``file:PATH``). From a target: ``SHA256.<hex>``
    when it was read, else None. Resolved: see :attr:`secret`."""
    secret: str | None = field(default=None, repr=False)
    """The password a reference resolved to; never printed, never written."""


@dataclass
class Partner:
    pid: str
    strings: dict[str, str] = field(default_factory=dict)
    binaries: dict[str, Binary] = field(default_factory=dict)
    alternatives: set[tuple[str, str, str]] = field(default_factory=set)
    """(Agency, Scheme, Id)."""
    users: set[str] = field(default_factory=set)
    credentials: dict[str, Credential] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (
            self.strings or self.binaries or self.alternatives or self.users or self.credentials
        )


@dataclass
class Mapping:
    user: str
    certificate: str
    """PEM text."""


@dataclass
class Certificates:
    mappings: dict[str, Mapping] = field(default_factory=dict)
    """Mapping Id (MD5 of the DER, as SAP computes it) → user and certificate."""
    rules: dict[str, dict[str, str]] = field(default_factory=dict)
    """Rule Id → its fields (Kind, User, SubjectDN, IssuerDN, SerialNumber, Thumbprint)."""


@dataclass(frozen=True)
class Op:
    """One write: ``create``, ``update`` or ``delete`` of one entity."""

    action: str
    entity_set: str
    key: dict[str, object]
    values: dict[str, object] = field(default_factory=dict, repr=False)
    pid: str | None = None
    detail: str = ""
    """What changes, values shortened, secrets masked: safe to print."""

    def describe(self) -> str:
        key = ",".join(f"{k}={v}" for k, v in self.shown_key().items())
        text = f"{self.action:<6} {self.entity_set}({key})"
        return f"{text} {self.detail}" if self.detail else text

    def shown_key(self) -> dict[str, object]:
        if self.entity_set == "AlternativePartners":
            return {
                "Agency": self.values.get("Agency") or _unhex(self.key["Hexagency"]),
                "Scheme": self.values.get("Scheme") or _unhex(self.key["Hexscheme"]),
                "Id": self.values.get("Id") or _unhex(self.key["Hexid"]),
            }
        return dict(self.key)

    def as_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "entitySet": self.entity_set,
            "key": {k: str(v) for k, v in self.shown_key().items()},
            "pid": self.pid,
            "detail": self.detail,
        }


def _unhex(value: object) -> str:
    return bytes.fromhex(str(value)).decode("utf-8", "replace")


def shorten(value: str) -> str:
    """One line, at most ``SHORTEN_AT`` characters: enough to recognise a value in a plan."""
    text = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    if len(text) > SHORTEN_AT:
        text = text[: SHORTEN_AT - 3] + "..."
    return text


def password_hash(password: str) -> str:
    """What SAP answers for ``returnHashedPassword=SHA256``: compare without reading it."""
    return "SHA256." + hashlib.sha256(password.encode()).hexdigest()


def alternative_key(agency: str, scheme: str, id_: str) -> dict[str, object]:
    return {"Hexagency": hex_key(agency), "Hexscheme": hex_key(scheme), "Hexid": hex_key(id_)}


def diff_partner(
    desired: Partner,
    current: Partner,
    mode: str,
    *,
    alternative_owner: dict[tuple[str, str, str], str] | None = None,
    user_owner: dict[str, str] | None = None,
) -> Iterator[Op]:
    """The writes that make ``current`` (the target's partner) what ``desired`` says.

    ``alternative_owner`` and ``user_owner`` tell which other Pid holds an alternative
    partner or authorised user the files give this partner: their keys are global, so
    moving one to this partner is an update of its ``Pid``.
    """
    alternative_owner = alternative_owner or {}
    user_owner = user_owner or {}
    pid = desired.pid
    creating = mode != "add"  # updates allowed

    if mode == "sync":
        for id_ in sorted(current.strings.keys() - desired.strings.keys()):
            yield Op("delete", "StringParameters", {"Pid": pid, "Id": id_}, pid=pid)
        for id_ in sorted(current.binaries.keys() - desired.binaries.keys()):
            yield Op("delete", "BinaryParameters", {"Pid": pid, "Id": id_}, pid=pid)
        for alt in sorted(current.alternatives - desired.alternatives):
            yield Op(
                "delete",
                "AlternativePartners",
                alternative_key(*alt),
                {"Agency": alt[0], "Scheme": alt[1], "Id": alt[2]},
                pid=pid,
            )
        for user in sorted(current.users - desired.users):
            yield Op("delete", "AuthorizedUsers", {"User": user}, pid=pid)
        for id_ in sorted(current.credentials.keys() - desired.credentials.keys()):
            yield Op("delete", "UserCredentialParameters", {"Pid": pid, "Id": id_}, pid=pid)

    for id_, value in sorted(desired.strings.items()):
        key = {"Pid": pid, "Id": id_}
        if id_ not in current.strings:
            yield Op("create", "StringParameters", key, {**key, "Value": value}, pid,
                     f"Value={shorten(value)}")  # fmt: skip
        elif creating and current.strings[id_] != value:
            detail = f"Value={shorten(current.strings[id_])} -> {shorten(value)}"
            yield Op("update", "StringParameters", key, {"Value": value}, pid, detail)

    for id_, binary in sorted(desired.binaries.items()):
        key = {"Pid": pid, "Id": id_}
        values = {"ContentType": binary.content_type, "Value": binary.value}
        detail = f"ContentType={binary.content_type} {len(binary.value)} bytes"
        old = current.binaries.get(id_)
        if old is None:
            yield Op("create", "BinaryParameters", key, {**key, **values}, pid, detail)
        elif creating and (old.content_type, old.value) != (binary.content_type, binary.value):
            yield Op("update", "BinaryParameters", key, values, pid, detail)

    for alt in sorted(desired.alternatives):
        if alt in current.alternatives:
            continue
        names = {"Agency": alt[0], "Scheme": alt[1], "Id": alt[2]}
        owner = alternative_owner.get(alt)
        if owner is None:
            yield Op("create", "AlternativePartners", alternative_key(*alt),
                     {**names, "Pid": pid}, pid, f"Pid={pid}")  # fmt: skip
        elif creating:
            yield Op("update", "AlternativePartners", alternative_key(*alt),
                     {**names, "Pid": pid}, pid, f"Pid={owner} -> {pid}")  # fmt: skip

    for user in sorted(desired.users):
        if user in current.users:
            continue
        owner = user_owner.get(user)
        if owner is None:
            yield Op("create", "AuthorizedUsers", {"User": user}, {"User": user, "Pid": pid}, pid,
                     f"Pid={pid}")  # fmt: skip
        elif creating:
            yield Op("update", "AuthorizedUsers", {"User": user}, {"Pid": pid}, pid,
                     f"Pid={owner} -> {pid}")  # fmt: skip

    for id_, cred in sorted(desired.credentials.items()):
        yield from _credential_op(pid, id_, cred, current.credentials.get(id_), creating)


class MissingPassword(ValueError):
    """A credential the target must create or change has no password to give it."""


def _credential_op(
    pid: str, id_: str, cred: Credential, old: Credential | None, creating: bool
) -> Iterator[Op]:
    key = {"Pid": pid, "Id": id_}
    if old is not None and not creating:
        return
    if old is not None and cred.user == old.user:
        if cred.secret is None or old.password == password_hash(cred.secret):
            return  # the target keeps its password
    if cred.secret is None:
        why = "does not exist there" if old is None else f"has user {old.user!r} there"
        raise MissingPassword(
            f"user credential {pid}/{id_} {why} and UserCredentials.yaml gives no password "
            "reference (Password: env:NAME or file:PATH)"
        )
    source = cred.password or "?"
    values = {**key, "User": cred.user, "Password": cred.secret}
    detail = f"User={cred.user} Password=*** (from {source})"
    yield Op("create" if old is None else "update", "UserCredentialParameters", key, values, pid,
             detail)  # fmt: skip


def diff_certificates(desired: Certificates, current: Certificates, mode: str) -> Iterator[Op]:
    creating = mode != "add"
    if mode == "sync":
        for id_ in sorted(current.mappings.keys() - desired.mappings.keys()):
            yield Op("delete", "CertificateUserMappings", {"Id": id_})
        for id_ in sorted(current.rules.keys() - desired.rules.keys()):
            yield Op("delete", "CertificateMappingRules", {"Id": id_})
    for id_, mapping in sorted(desired.mappings.items()):
        old = current.mappings.get(id_)
        values = {"User": mapping.user, "Certificate": mapping.certificate}
        if old is None:
            yield Op("create", "CertificateUserMappings", {"Id": id_}, values, None,
                     f"User={mapping.user}")  # fmt: skip
        elif creating and old.user != mapping.user:
            yield Op("update", "CertificateUserMappings", {"Id": id_}, values, None,
                     f"User={old.user} -> {mapping.user}")  # fmt: skip
    for id_, fields in sorted(desired.rules.items()):
        old_fields = current.rules.get(id_)
        if old_fields is None:
            yield Op("create", "CertificateMappingRules", {"Id": id_}, {"Id": id_, **fields},
                     None, f"Kind={fields.get('Kind')} User={fields.get('User')}")  # fmt: skip
        elif creating and old_fields != fields:
            changed = sorted(k for k in fields.keys() | old_fields.keys()
                             if fields.get(k) != old_fields.get(k))  # fmt: skip
            yield Op("update", "CertificateMappingRules", {"Id": id_}, dict(fields), None,
                     "changes " + ",".join(changed))  # fmt: skip

"""Restoring an entity to what it was before a change of the history.

A restore is an ordinary write through :class:`Directory` (same rules, same history: it is
recorded with operation ``Restore``). Its target is the entry's ``Before``: the entity is
changed back, created again, or (for an entry that created it) deleted. What the history
does not keep cannot be restored: a user credential's password (a restored credential
keeps its current password; a deleted one must be added again) and binary values larger
than :data:`audit.FULL_VALUE_BYTES`.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from ..model import rules
from ..model.entities import ENTITY_TYPES
from ..model.errors import Conflict, NotFound
from ..odata.filter import Compare, CompareOp, Literal, PropertyRef, ValueType
from . import audit
from .directory import Directory, ListRequest, _key_where
from .tables import ENTITY_TABLES

UPSERTED = frozenset({"UserCredentialParameters", "CertificateUserMappings"})


async def restore(directory: Directory, entry_id: str, actor: str) -> str:
    """Undo the change of entry ``entry_id``; returns what was done, for people."""
    entry = await directory.get("AuditEntries", {"Id": entry_id})
    entity_set = str(entry["EntitySet"])
    if entry["Operation"] == audit.RENAME:
        raise Conflict(
            "A rename is undone by renaming the partner back, not by restoring one entry"
        )
    before = audit.parse(entry["Before"])
    key = json.loads(str(entry["EntityKey"]))
    label = str(entry["Label"])
    directory.audit.operation = audit.RESTORE
    try:
        current = await directory.get(entity_set, key)
    except NotFound:
        current = None
    if before is None:
        if current is None:
            raise Conflict(f"'{label}' is already gone; there is nothing to undo")
        await directory.delete(entity_set, key)
        return f"'{label}' deleted, as it was before it was created"
    values = _values(entity_set, before)
    if entity_set == "UserCredentialParameters":
        if current is None:
            raise Conflict(
                "Passwords are not kept in the history: add the user credential "
                f"'{label}' again with its password"
            )
        values["Password"] = await _current_password(directory, key)
    if current is not None and entity_set not in UPSERTED:
        updatable = rules.UPDATABLE.get(entity_set, ())
        changes = {name: values[name] for name in updatable if name in values}
        await directory.update(entity_set, key, changes, actor)
        return f"'{label}' changed back"
    await directory.create(entity_set, values, actor)
    return f"'{label}' restored" if current is not None else f"'{label}' created again"


async def restore_change(directory: Directory, change_id: str, actor: str) -> int:
    """Undo every entry of one change (a change set, a partner deletion, a copy), in one
    transaction: all of them or, if one cannot be undone, none. Returns how many."""
    entries = await directory.list("AuditEntries", ListRequest(filter=_is("ChangeId", change_id)))
    if not entries.rows:
        raise NotFound(f"There is no change '{change_id}' in the history")
    for entry in reversed(entries.rows):
        await restore(directory, str(entry["Id"]), actor)
    return len(entries.rows)


def _is(prop: str, value: str) -> Compare:
    return Compare(
        CompareOp.EQ, PropertyRef(prop, ValueType.STRING), Literal(value, ValueType.STRING)
    )


def _values(entity_set: str, state: audit.Snapshot) -> dict[str, object]:
    """The properties of a snapshot as a write takes them."""
    entity_type = ENTITY_TYPES[entity_set]
    skip = set(rules.COMPUTED.get(entity_set, ())) | {"Password"}
    values: dict[str, object] = {}
    for name, value in state.items():
        if name in skip or not entity_type.has_property(name):
            continue
        if name == "Value" and entity_set == "BinaryParameters":
            content = audit.binary_value(value)
            if content is None:
                raise Conflict(
                    f"This content ({_size(value)}) was larger than the history keeps "
                    f"({audit.FULL_VALUE_BYTES // 1024} KB): only its SHA-256 is known, so "
                    "it cannot be restored"
                )
            values[name] = content
        else:
            values[name] = value
    return values


def _size(kept: object) -> str:
    size = kept.get("size") if isinstance(kept, dict) else None
    return f"{size} bytes" if isinstance(size, int) else "unknown size"


async def _current_password(directory: Directory, key: dict[str, object]) -> str:
    table = ENTITY_TABLES["UserCredentialParameters"]
    entity_type = ENTITY_TYPES["UserCredentialParameters"]
    row = (
        await directory.conn.execute(
            select(table.c.password_enc).where(_key_where(table, entity_type, key))
        )
    ).first()
    if row is None:
        raise NotFound("The user credential is gone")
    return directory.secretbox.decrypt(row.password_enc)

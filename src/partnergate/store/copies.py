"""Copying entries or a whole partner to another Pid, and renaming a partner.

SAP's Partner Directory has neither a rename nor a partner copy: renaming a Pid there
means deleting and re-creating every entry. Here a rename moves every entity of the
partner in one transaction, and the history records it as one change (one ``ChangeId``,
operation ``Rename`` on each moved entity). Copies go through
:meth:`Directory.create`, so they obey every rule a new entity does.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from ..model import rules
from ..model.entities import ENTITY_TYPES, PARTNER, USER_CREDENTIAL_PARAMETER
from ..model.errors import AlreadyExists, InvalidValue, NotFound
from . import audit
from .directory import Directory, _key_where, now
from .tables import ENTITY_TABLES, PARTNER_TABLES

COPIED_WITH_PARTNER = ("StringParameters", "BinaryParameters", "UserCredentialParameters")
"""Alternative partners and authorised users name one partner each (their IDs and users
are unique across partners), so a partner copy takes the parameters only."""

RENAMED_KEY = frozenset({"StringParameters", "BinaryParameters", "UserCredentialParameters"})
"""Sets whose key holds the Pid: a rename changes their key."""


@dataclass(frozen=True)
class Moved:
    """What a rename or a copy did: entities per entity set, and what it left behind."""

    counts: dict[str, int]
    skipped: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _check_pid(pid: str) -> None:
    """A Pid to copy or rename to obeys the rules of a new entity's Pid."""
    rules.check_value(PARTNER.prop("Pid"), pid)
    rules.check_identifier("Pid", pid)


async def rename_partner(directory: Directory, old: str, new: str, actor: str) -> Moved:
    """Move every entity of ``old`` to ``new``, a Pid that has none yet."""
    _check_pid(new)
    if old == new:
        raise InvalidValue("The new partner ID is the same as the old one", field="Pid")
    if not await directory.partner_exists(old):
        raise NotFound(f"Partner '{old}' does not exist")
    if await directory.partner_exists(new):
        raise AlreadyExists(
            f"Partner '{new}' already exists; rename to an ID that no partner has", field="Pid"
        )
    actor = rules.audit_user(actor)
    stamp = now()
    directory.audit.operation = audit.RENAME
    counts: dict[str, int] = {}
    for name, table in PARTNER_TABLES.items():
        entity_type = ENTITY_TYPES[name]
        rows = [
            directory._row_to_entity(entity_type, row)
            for row in await directory._execute(select(table).where(table.c.pid == old))
        ]
        if not rows:
            continue
        await directory._execute(
            update(table)
            .where(table.c.pid == old)
            .values(pid=new, last_modified_by=actor, last_modified_time=stamp)
        )
        for entity in rows:
            key = {k: entity[k] for k in entity_type.keys}
            moved = {**entity, "Pid": new}
            new_key = {k: moved[k] for k in entity_type.keys}
            before, after = audit.snapshot(name, entity), audit.snapshot(name, moved)
            directory._audit(name, new_key, before, after, actor)
            directory._record(name, key, old)
            directory._record(name, new_key, new)
        counts[name] = len(rows)
    return Moved(counts, {})


async def _source_values(
    directory: Directory, entity_set: str, key: dict[str, object]
) -> dict[str, object]:
    """An entity as a create would take it, its password decrypted for the copy."""
    entity_type = ENTITY_TYPES[entity_set]
    key = rules.prepare_key(entity_type, key)
    table = ENTITY_TABLES[entity_set]
    row = (
        await directory._execute(select(table).where(_key_where(table, entity_type, key)))
    ).first()
    if row is None:
        raise NotFound(f"{entity_type.name} {audit.key_text(key)} does not exist")
    values = directory._row_to_entity(entity_type, row)
    for name in (*rules.AUDIT_NAMES, *rules.COMPUTED.get(entity_set, ())):
        values.pop(name, None)
    if entity_type is USER_CREDENTIAL_PARAMETER:
        values["Password"] = directory.secretbox.decrypt(row._mapping["password_enc"])
    return values


async def copy_entry(
    directory: Directory,
    entity_set: str,
    key: dict[str, object],
    target: str,
    actor: str,
    changes: dict[str, object] | None = None,
) -> dict[str, object]:
    """Copy one entity to partner ``target``; ``changes`` sets other values of the copy
    (an alternative partner's ID or an authorised user's name, which are unique)."""
    _check_pid(target)
    values = await _source_values(directory, entity_set, key)
    values.update(changes or {})
    values["Pid"] = target
    directory.audit.operation = audit.COPY
    created = await directory.create(entity_set, values, actor)
    if entity_set == "UserCredentialParameters":
        created["Password"] = None
    return created


async def copy_partner(directory: Directory, source: str, target: str, actor: str) -> Moved:
    """Copy every parameter of ``source`` to ``target`` (new or existing; an ID that
    ``target`` already has refuses the whole copy)."""
    _check_pid(target)
    if source == target:
        raise InvalidValue("Copy to another partner ID", field="Pid")
    if not await directory.partner_exists(source):
        raise NotFound(f"Partner '{source}' does not exist")
    directory.audit.operation = audit.COPY
    counts: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for name, table in PARTNER_TABLES.items():
        rows = (await directory._execute(select(table).where(table.c.pid == source))).all()
        if not rows:
            continue
        if name not in COPIED_WITH_PARTNER:
            skipped[name] = len(rows)
            continue
        ids = [row.id for row in rows]
        for entity_id in ids:
            await copy_entry(directory, name, {"Pid": source, "Id": entity_id}, target, actor)
        counts[name] = len(ids)
    return Moved(counts, skipped)

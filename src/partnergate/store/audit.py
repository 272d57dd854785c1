"""The change history: who changed which entity when, from what to what.

Every write of :class:`~partnergate.store.directory.Directory` tells the transaction's
:class:`Recorder` the entity's state before and after; when the transaction is about to
commit, the recorder writes one ``audit_entries`` row per entity it changed, inside that
transaction. So a write that fails or is rolled back leaves no entry, and every path that
writes through the store (API, ``$batch``, UI, CLI, import) is recorded alike. The rows of
one transaction share a ``change_id``: a partner's rename is one change of many entities.

What is kept of a value (docs/history.md): properties as JSON, without the audit fields;
passwords of user credentials never (only whether one was set or changed); binary values
up to :data:`FULL_VALUE_BYTES` in full (base64), larger ones as SHA-256 and size.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..model.entities import AUDIT_NAMES, ENTITY_TYPES
from .database import begin
from .tables import audit_entries

FULL_VALUE_BYTES = 64 * 1024
"""Binary values up to this size are kept whole (restorable); larger ones by hash and size."""

PASSWORD_KEPT = "(hidden)"
PASSWORD_CHANGED = "(hidden, changed)"
"""What the history shows in place of a password: that one is set, and whether it changed."""

CREATE, UPDATE, DELETE = "Create", "Update", "Delete"
RENAME, COPY, RESTORE = "Rename", "Copy", "Restore"
OPERATIONS = (CREATE, UPDATE, DELETE, RENAME, COPY, RESTORE)

Snapshot = dict[str, object]


def binary_snapshot(value: bytes) -> dict[str, object]:
    kept: dict[str, object] = {"size": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    if len(value) <= FULL_VALUE_BYTES:
        kept["base64"] = base64.b64encode(value).decode("ascii")
    return kept


def snapshot(
    entity_set: str, entity: Mapping[str, object], *, password: str | None = None
) -> Snapshot:
    """What the history keeps of one entity's state; ``password`` replaces a password."""
    entity_type = ENTITY_TYPES[entity_set]
    out: Snapshot = {}
    for name in entity_type.property_names:
        if name in AUDIT_NAMES or name not in entity:
            continue
        value = entity[name]
        if isinstance(value, bytes | bytearray):
            out[name] = binary_snapshot(bytes(value))
        elif isinstance(value, datetime):
            out[name] = value.isoformat()
        else:
            out[name] = value
    if entity_set == "UserCredentialParameters":
        out["Password"] = password or PASSWORD_KEPT
    return out


def binary_value(kept: object) -> bytes | None:
    """The bytes a snapshot kept of a binary value, or None if only its hash was kept."""
    if isinstance(kept, dict) and isinstance(kept.get("base64"), str):
        return base64.b64decode(kept["base64"])
    return None


def label_of(entity_set: str, entity: Mapping[str, object]) -> str:
    """How an entity is named in the history: its ID, user or agency/scheme/ID."""
    if entity_set == "AlternativePartners":
        return f"{entity.get('Agency')} / {entity.get('Scheme')} / {entity.get('Id')}"
    if entity_set == "AuthorizedUsers":
        return str(entity.get("User"))
    if entity_set == "CertificateUserMappings":
        return f"{entity.get('User')} ({entity.get('Id')})"
    return str(entity.get("Id", ""))


def key_text(key: Mapping[str, object]) -> str:
    return json.dumps({k: str(v) for k, v in key.items()}, sort_keys=True, ensure_ascii=False)


@dataclass
class Record:
    entity_set: str
    key: dict[str, object]
    before: Snapshot | None
    after: Snapshot | None
    user: str | None
    operation: str | None


@dataclass
class Recorder:
    """The changes of one transaction, one record per entity (later writes merge in)."""

    operation: str | None = None
    """Set for a whole transaction (a rename, a copy, a restore); else from the change."""
    records: dict[tuple[str, str], Record] = field(default_factory=dict)

    def record(
        self,
        entity_set: str,
        key: Mapping[str, object],
        before: Snapshot | None,
        after: Snapshot | None,
        user: str | None,
        operation: str | None = None,
    ) -> None:
        ident = (entity_set, key_text(key))
        earlier = self.records.get(ident)
        if earlier is not None:
            before = earlier.before
            operation = operation or earlier.operation
            user = user or earlier.user
        self.records[ident] = Record(entity_set, dict(key), before, after, user, operation)

    def rows(self, stamp: datetime) -> list[dict[str, object]]:
        change_id = secrets.token_hex(16)
        rows: list[dict[str, object]] = []
        for record in self.records.values():
            if record.before is None and record.after is None:
                continue  # created and deleted in one transaction: nothing changed
            operation = self.operation or record.operation
            if operation is None:
                operation = (
                    CREATE if record.before is None else DELETE if record.after is None else UPDATE
                )
            state = record.after if record.after is not None else record.before
            assert state is not None
            pid = state.get("Pid")
            previous = record.before.get("Pid") if record.before is not None else None
            rows.append(
                {
                    "id": f"{stamp:%Y%m%d%H%M%S%f}-{change_id[:8]}-{len(rows):05d}",
                    "change_id": change_id,
                    "time": stamp,
                    "user": record.user,
                    "operation": operation,
                    "entity_set": record.entity_set,
                    "pid": pid,
                    "previous_pid": previous if previous != pid else None,
                    "entity_key": key_text(record.key),
                    "label": label_of(record.entity_set, state)[:600],
                    "before": _json(record.before),
                    "after": _json(record.after),
                }
            )
        return rows

    async def write(self, conn: AsyncConnection, stamp: datetime) -> None:
        """Inside the writing transaction, just before it commits."""
        rows = self.rows(stamp)
        if len(rows) == 1:
            await conn.execute(insert(audit_entries), rows[0])
        elif rows:
            await conn.execute(insert(audit_entries), rows)


async def record_one(
    conn: AsyncConnection,
    entity_set: str,
    key: Mapping[str, object],
    label: str,
    before: Snapshot | None,
    after: Snapshot | None,
    user: str | None,
    stamp: datetime,
) -> None:
    """One entry for a write outside the Partner Directory (a local user, an OAuth client),
    inside that write's transaction."""
    recorder = Recorder()
    recorder.record(entity_set, key, before, after, user)
    (row,) = recorder.rows(stamp)
    row["label"] = label[:600]
    await conn.execute(insert(audit_entries), row)


def _json(state: Snapshot | None) -> str | None:
    if state is None:
        return None
    return json.dumps(state, ensure_ascii=False, separators=(",", ":"))


def parse(text: object) -> Snapshot | None:
    """A stored ``before``/``after`` back as a dict."""
    if not isinstance(text, str) or not text:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


async def prune(
    engine: AsyncEngine, now: datetime, days: int | None, max_entries: int | None
) -> int:
    """Drop entries older than ``days`` and beyond the newest ``max_entries``.

    Both are index range deletes (by time, and by Id, which sorts as time does), so a
    pass costs about what it removes.
    """
    removed = 0
    async with begin(engine) as conn:
        if days:
            cutoff = now - timedelta(days=days)
            result = await conn.execute(delete(audit_entries).where(audit_entries.c.time < cutoff))
            removed += result.rowcount or 0
        if max_entries:
            oldest_kept = (
                await conn.execute(
                    select(audit_entries.c.id)
                    .order_by(audit_entries.c.id.desc())
                    .offset(max_entries - 1)
                    .limit(1)
                )
            ).scalar()
            if oldest_kept is not None:
                result = await conn.execute(
                    delete(audit_entries).where(audit_entries.c.id < oldest_kept)
                )
                removed += result.rowcount or 0
    return removed

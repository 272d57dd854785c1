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
import functools
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from json.encoder import c_make_encoder, encode_basestring
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from ..model.entities import AUDIT_NAMES, ENTITY_TYPES
from ..odata.filter import (
    And,
    Compare,
    CompareOp,
    Expr,
    Literal,
    OrderBy,
    PropertyRef,
    ValueType,
)
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


@functools.cache
def _kept_names(entity_set: str) -> tuple[str, ...]:
    names = ENTITY_TYPES[entity_set].property_names
    return tuple(name for name in names if name not in AUDIT_NAMES)


_BINARY = (bytes, bytearray)
"""A tuple, not ``bytes | bytearray``: that makes a union object on every call, and a
snapshot is taken of every row an import writes."""


def snapshot(
    entity_set: str, entity: Mapping[str, object], *, password: str | None = None
) -> Snapshot:
    """What the history keeps of one entity's state; ``password`` replaces a password."""
    out: Snapshot = {}
    for name in _kept_names(entity_set):
        if name not in entity:
            continue
        value = entity[name]
        if isinstance(value, _BINARY):
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


_STATE_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""Made once: ``json.dumps`` with options makes an encoder per call."""
_STATE_CHUNKS: Callable[[object, int], list[str]] | None = (
    c_make_encoder(None, _STATE_JSON.default, encode_basestring, None, ":", ",", False, False, True)
    if c_make_encoder is not None
    else None
)
"""What ``_STATE_JSON.encode`` runs, called directly: an import encodes millions of states."""
_text = encode_basestring
"""A string as JSON, as ``json.dumps(..., ensure_ascii=False)`` writes it."""


@functools.cache
def _key_prefixes(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Each key name, sorted, with the JSON that comes before its value."""
    return tuple(
        (name, ("{" if i == 0 else ", ") + _text(name) + ": ")
        for i, name in enumerate(sorted(names))
    )


def key_text(key: Mapping[str, object]) -> str:
    """The key as JSON, keys sorted: ``json.dumps`` of the key with its values as text."""
    out = ""
    for name, prefix in _key_prefixes(tuple(key)):
        value = key[name]
        out += prefix + _text(value if type(value) is str else str(value))
    return out + "}" if out else "{}"


@dataclass(slots=True)
class Record:
    entity_set: str
    key: dict[str, object]
    before: Snapshot | None
    after: Snapshot | None
    user: str | None
    operation: str | None
    entity_key: str = ""
    """:func:`key_text` of the key."""
    resumed: bool = False
    """An entry for this entity may have been written already in this transaction."""


def time_prefix(moment: datetime) -> str:
    """How an entry's ``Id`` begins: its time as 20 digits, so that Ids sort as times do
    and a time range is a range of Ids (:func:`id_range`)."""
    return f"{moment.year:04d}{moment:%m%d%H%M%S%f}"


def id_range(expr: Expr, ids: ColumnElement[str]) -> list[ColumnElement[bool]]:
    """Beside each ``Time`` comparison that ``expr`` requires, the range of ``ids`` that
    holds the same entries.

    On SQLite the history keeps no index on ``Time`` (one index less to write for each of
    the millions of entries an import makes); the primary key's index finds a time range
    through the Ids instead. The comparison itself stays, so the entries found are exactly
    those it names; the range only narrows where the database looks. Its bounds are
    digits alone, which every collation orders as they are written, so they are compared
    in the column's own collation, the one its index is in.
    """
    terms = expr.operands if isinstance(expr, And) else (expr,)
    return [ids >= low if low else ids < high for term in terms for low, high in _bounds(term)]


def time_as_id(orderby: Sequence[OrderBy]) -> tuple[OrderBy, ...]:
    """``$orderby`` with ``Time`` read as ``Id``, in the same direction: Ids sort as the
    times they begin with, and the primary key's index has them in that order. Entries of
    one moment then come in the order of their Ids."""
    return tuple(
        OrderBy(PropertyRef("Id", ValueType.STRING), o.descending)
        if isinstance(o.expr, PropertyRef) and o.expr.name == "Time"
        else o
        for o in orderby
    )


_FLIPPED = {
    CompareOp.LT: CompareOp.GT,
    CompareOp.LE: CompareOp.GE,
    CompareOp.GT: CompareOp.LT,
    CompareOp.GE: CompareOp.LE,
}


def _bounds(term: Expr) -> list[tuple[str, str]]:
    """For a ``Time <op> datetime'…'`` term, the Id bounds of its entries: ``(low, "")``
    for ``Id >= low``, ``("", high)`` for ``Id < high``."""
    if not isinstance(term, Compare):
        return []
    op, left, right = term.op, term.left, term.right
    if isinstance(right, PropertyRef) and op in _FLIPPED:
        op, left, right = _FLIPPED[op], right, left
    if not (
        isinstance(left, PropertyRef)
        and left.name == "Time"
        and isinstance(right, Literal)
        and isinstance(right.value, datetime)
    ):
        return []
    moment = right.value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    since = time_prefix(moment)
    try:
        after = time_prefix(moment + timedelta(microseconds=1))
    except OverflowError:  # the last moment there is: nothing comes after it
        after = ""
    if op is CompareOp.GE:
        return [(since, "")]
    if op is CompareOp.GT:
        return [(after, "")] if after else []
    if op is CompareOp.LT:
        return [("", since)]
    if op is CompareOp.LE:
        return [("", after)] if after else []
    if op is CompareOp.EQ:
        return [(since, ""), *([("", after)] if after else [])]
    return []


SEQUENCE_DIGITS = 7
"""Digits of an entry's number within its change: Ids sort as written up to 10,000,000."""


@dataclass
class Recorder:
    """The changes of one transaction, one record per entity (later writes merge in).

    A long transaction (an import of millions of rows) writes its records as it goes
    (:meth:`spill`) so its memory stays flat; an entity written again after that still
    ends as one entry.
    """

    operation: str | None = None
    """Set for a whole transaction (a rename, a copy, a restore); else from the change."""
    records: dict[tuple[str, str], Record] = field(default_factory=dict)
    change_id: str = field(default_factory=lambda: secrets.token_hex(16))
    stamp: datetime | None = None
    """The change's time: that of its first entries written, shared by all of them."""
    written: int = 0
    spilled_pids: set[str] = field(default_factory=set)
    """Pids of the entities whose entries :meth:`spill` wrote."""

    def record(
        self,
        entity_set: str,
        key: Mapping[str, object],
        before: Snapshot | None,
        after: Snapshot | None,
        user: str | None,
        operation: str | None = None,
    ) -> None:
        text = key_text(key)
        ident = (entity_set, text)
        earlier = self.records.get(ident)
        resumed = False
        if earlier is not None:
            before = earlier.before
            operation = operation or earlier.operation
            user = user or earlier.user
            resumed = earlier.resumed
        elif self.spilled_pids and "Pid" in key and str(key["Pid"]) in self.spilled_pids:
            resumed = True
        self.records[ident] = Record(
            entity_set, dict(key), before, after, user, operation, text, resumed
        )

    def rows(self, stamp: datetime) -> list[dict[str, object]]:
        records = list(self.records.values())
        return [dict(zip(COLUMNS, row, strict=True)) for row in self._rows(records, stamp)]

    def _rows(
        self, records: list[Record], stamp: datetime, time: object = None
    ) -> list[tuple[object, ...]]:
        """The entries as tuples of :data:`COLUMNS`; ``time`` as the driver takes the stamp."""
        stamp = self.stamp = self.stamp or stamp
        time = stamp if time is None else time
        prefix = f"{time_prefix(stamp)}-{self.change_id[:8]}-"
        change_id, operation_of_all = self.change_id, self.operation
        written = self.written
        rows: list[tuple[object, ...]] = []
        append = rows.append
        for record in records:
            before, after = record.before, record.after
            if before is None:
                if after is None:
                    continue  # created and deleted in one transaction: nothing changed
                operation = operation_of_all or record.operation or CREATE
                state, previous = after, None
            else:
                operation = operation_of_all or record.operation
                if operation is None:
                    operation = DELETE if after is None else UPDATE
                state = after if after is not None else before
                previous = before.get("Pid")
            pid = state.get("Pid")
            entity_set = record.entity_set
            if entity_set in _LABELLED_BY_ID:
                label = str(state.get("Id", ""))
            else:
                label = label_of(entity_set, state)
            append(
                (
                    f"{prefix}{written:0{SEQUENCE_DIGITS}d}",
                    change_id,
                    time,
                    record.user,
                    operation,
                    entity_set,
                    pid,
                    previous if previous != pid else None,
                    record.entity_key or key_text(record.key),
                    label[:600],
                    _json(before),
                    _json(after),
                )
            )
            written += 1
        self.written = written
        return rows

    async def spill(self, conn: AsyncConnection, stamp: datetime) -> None:
        """Write the entries of entities that belong to a partner by key (parameters) now,
        inside the transaction, and forget them; the rest waits for :meth:`write`."""
        await self.write_spilled(conn, self.take_spill(), stamp)

    def take_spill(self) -> list[Record]:
        """The records :meth:`spill` writes, forgotten here at once: an entity recorded
        again from now on merges with its written entry (:meth:`_resume`)."""
        out = [r for r in self.records.values() if "Pid" in r.key]
        for record in out:
            self.spilled_pids.add(str(record.key["Pid"]))
            del self.records[(record.entity_set, record.entity_key)]
        return out

    async def write_spilled(
        self, conn: AsyncConnection, records: list[Record], stamp: datetime
    ) -> None:
        """The entries of records :meth:`take_spill` took, in the order they were taken."""
        if records:
            await self._resume(conn, records)
            await self._insert(conn, records, stamp)

    async def write(self, conn: AsyncConnection, stamp: datetime) -> None:
        """Inside the writing transaction, just before it commits."""
        records = list(self.records.values())
        await self._resume(conn, records)
        await self._insert(conn, records, stamp)

    async def _insert(self, conn: AsyncConnection, records: list[Record], stamp: datetime) -> None:
        sql, time = _bulk_insert(conn.dialect)
        stamp = self.stamp or stamp
        rows = self._rows(records, stamp, time(stamp) if time is not None else stamp)
        if len(rows) >= COPY_AT and await _copy(conn, rows):
            return
        if len(rows) == 1:
            await conn.exec_driver_sql(_single_insert(conn.dialect), rows[0])
        elif rows and conn.dialect.name == "postgresql":
            columns = tuple(list(c) for c in zip(*rows, strict=True))
            await conn.exec_driver_sql(sql, columns)
        elif rows:
            await conn.exec_driver_sql(sql, rows)

    async def _resume(self, conn: AsyncConnection, records: list[Record]) -> None:
        """Merge into each record the entry :meth:`spill` wrote for its entity earlier."""
        for record in records:
            if not record.resumed:
                continue
            t = audit_entries
            query = select(t.c.id, t.c.before, t.c.user).where(
                t.c.pid == str(record.key["Pid"]),
                t.c.change_id == self.change_id,
                t.c.entity_set == record.entity_set,
                t.c.entity_key == record.entity_key,
            )
            found = (await conn.execute(query)).first()
            record.resumed = False
            if found is not None:
                record.before = parse(found.before)
                record.user = record.user or found.user
                await conn.execute(delete(t).where(t.c.id == found.id))


COLUMNS = (
    "id",
    "change_id",
    "time",
    "user",
    "operation",
    "entity_set",
    "pid",
    "previous_pid",
    "entity_key",
    "label",
    "before",
    "after",
)


_LABELLED_BY_ID = frozenset(
    {"StringParameters", "BinaryParameters", "UserCredentialParameters", "CertificateMappingRules"}
)
"""Sets whose entities :func:`label_of` names by their ``Id``."""

COPY_AT = 1_000
"""Entries from which PostgreSQL gets them by ``COPY`` (an import's batches), not ``INSERT``."""


async def _copy(conn: AsyncConnection, rows: list[tuple[object, ...]]) -> bool:
    """PostgreSQL: the entries by ``COPY … FROM STDIN`` (binary), in the transaction: no
    statement to parse and plan, no arrays to unnest. False where it cannot (SQLite, or no
    transaction open on the driver's connection)."""
    if conn.dialect.name != "postgresql":
        return False
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None or not driver.is_in_transaction():
        return False
    await driver.copy_records_to_table("audit_entries", records=rows, columns=COLUMNS)
    return True


@functools.cache
def _single_insert(dialect: Dialect) -> str:
    compiled = insert(audit_entries).compile(dialect=dialect)
    assert tuple(compiled.positiontup or ()) == COLUMNS
    return str(compiled)


@functools.cache
def _bulk_insert(dialect: Dialect) -> tuple[str, Callable[[Any], Any] | None]:
    """The driver's own ``INSERT`` of :data:`COLUMNS` and how it takes a time: an import
    writes millions of entries, and per-row parameter processing would cost more than the
    database does. PostgreSQL takes one array per column (``unnest``), SQLite rows."""
    time = audit_entries.c.time.type.dialect_impl(dialect).bind_processor(dialect)
    if dialect.name != "postgresql":
        return _single_insert(dialect), time
    types = [
        re.sub(r"\(\d+\)", "", audit_entries.c[c].type.compile(dialect=dialect)) for c in COLUMNS
    ]
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, 1))
    quoted = ", ".join(f'"{c}"' for c in COLUMNS)
    return f"INSERT INTO audit_entries ({quoted}) SELECT * FROM unnest({arrays})", time


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
    if _STATE_CHUNKS is not None:
        return "".join(_STATE_CHUNKS(state, 0))
    return _STATE_JSON.encode(state)


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

    Both are range deletes on the Id's index (an Id begins with its entry's time), so a
    pass costs about what it removes.
    """
    removed = 0
    async with begin(engine) as conn:
        if days:
            cutoff = time_prefix(now - timedelta(days=days))
            result = await conn.execute(delete(audit_entries).where(audit_entries.c.id < cutoff))
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

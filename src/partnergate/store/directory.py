"""The Partner Directory's repository: every read and write of its entity sets.

One transaction per call, or several calls in one transaction through :meth:`begin`
(``$batch`` change sets). Each write goes through :mod:`partnergate.model.rules` first, so
the API, ``$batch`` and the UI obey the same rules. After a transaction commits, the
listeners hear which entities changed, so runtime caches drop them before the caller's
response is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import operator
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, bindparam, delete, func, insert, literal, select, union, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from ..model import rules
from ..model.entities import (
    ALTERNATIVE_PARTNER,
    CERTIFICATE_MAPPING_RULE,
    CERTIFICATE_USER_MAPPING,
    ENTITY_TYPES,
    PARTNER,
    PARTNER_ENTITY_SETS,
    USER_CREDENTIAL_PARAMETER,
    EntityType,
)
from ..model.errors import AlreadyExists, Conflict, InvalidValue, NotFound, NotSupported
from ..security import certificates
from ..security.secretbox import SecretBox
from . import audit, database
from .changes import Change, publish
from .filtering import compile_filter, compile_orderby, pinned, with_stand_ins
from .reads import Reads, open_reads
from .tables import ENTITY_TABLES, PARTNER_TABLES, column_name, columns_of

log = logging.getLogger("partnergate.store")

HONOURS_USER_OPTION = frozenset(
    {"StringParameters", "BinaryParameters", "AlternativePartners", "AuthorizedUsers"}
)
"""Sets whose audit fields take SAP's ``user`` query option (SAP-doc 47b6999, 79c06dd)."""

UPSERT_ON_POST = frozenset({"UserCredentialParameters", "CertificateUserMappings"})
"""POST of an existing key updates it (SAP-doc 79c06dd; Security Content API). A user
credential's audit pairs then both show the last POST; a mapping keeps its creation."""


NEAR_ROWS = 2_000
"""Most rows a page may take from one range of the primary key's index and still be
read on the event loop's thread (:meth:`.reads.Reads.shaped`)."""


UNFILTERED_KEYS = frozenset(
    {"StringParameters", "BinaryParameters", "UserCredentialParameters", "AuthorizedUsers"}
)
"""Sets whose key properties are their columns as stored (AlternativePartners filter on
what the hex keys encode, Partners are a union)."""


@functools.cache
def _primary_key(entity_set: str) -> tuple[str, ...]:
    """The properties of the table's primary key, in the index's column order."""
    entity_type = ENTITY_TYPES[entity_set]
    table = ENTITY_TABLES.get(entity_set)
    if table is None:
        return ()
    by_column = {column_name(p): p for p in entity_type.property_names}
    names = tuple(by_column.get(c.name) for c in table.primary_key.columns)
    return () if None in names else names  # type: ignore[return-value]


def _key_prefix(entity_set: str, shape: Any) -> bool:
    """Whether a filter is ``Prop eq '…'`` for the leading properties of the primary key
    (``Pid eq '…'``, joined by ``and``): every row of that index range then matches, so a
    page of it reads no more rows than it returns."""
    named = pinned(shape) if entity_set in UNFILTERED_KEYS else None
    key = _primary_key(entity_set)
    return bool(named) and bool(key) and named == set(key[: len(named or ())])


_STAND_IN = secrets.token_hex(8)


def _stand_in(index: int) -> str:
    """What stands for a filter's string literal in the statement built for its shape;
    a client cannot guess its random part."""
    return f"\x00{_STAND_IN}.{index}\x00"


SETTLE_AT = 5_000
"""Waiting inserts or history entries that :meth:`Directory.settle` writes out."""
YIELD_EVERY = 32
"""While a write runs behind, :meth:`Directory.settle` lets the event loop read its
answers and send its next statement every so many calls."""


@dataclass(frozen=True)
class ListRequest:
    """What to read from a collection; the filter is an ``odata.filter`` expression."""

    filter: Any = None
    orderby: Sequence[Any] = ()
    top: int | None = None
    skip: int = 0
    count: bool = False


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, object]]
    count: int | None = None


Listener = Callable[[list[Change]], Awaitable[None] | None]


def now() -> datetime:
    """Naive UTC at millisecond precision: what ``/Date(ms)/`` can carry back.

    Made once per millisecond: an import stamps millions of rows, most in the same one."""
    global _now
    ms = time.time_ns() // 1_000_000
    if _now[0] != ms:
        _now = (ms, _EPOCH + timedelta(milliseconds=ms))
    return _now[1]


_EPOCH = datetime(1970, 1, 1)
_now: tuple[int, datetime] = (-1, _EPOCH)


def _key_where(table: Table, entity_type: EntityType, key: dict[str, object]) -> ColumnElement:
    cols = columns_of(table, entity_type.keys)
    return and_(*(cols[name] == key[name] for name in entity_type.keys))


@functools.cache
def _by_key(entity_set: str) -> Select:
    """``SELECT * FROM <set> WHERE <key> = :<key>``, built once per entity set."""
    entity_type = ENTITY_TYPES[entity_set]
    table = ENTITY_TABLES[entity_set]
    cols = columns_of(table, entity_type.keys)
    where = and_(*(cols[name] == bindparam(name) for name in entity_type.keys))
    return select(table).where(where)


@functools.cache
def _columns(entity_set: str) -> tuple[tuple[str, str], ...]:
    """Each property of the set with its column."""
    return tuple((name, column_name(name)) for name in ENTITY_TYPES[entity_set].property_names)


@functools.cache
def _column_names(entity_set: str) -> dict[str, str]:
    """Each property of the set by name, with its column's name."""
    return dict(_columns(entity_set))


@functools.cache
def _counted_insert(
    entity_set: str, columns: tuple[str, ...], dialect: Dialect
) -> tuple[str, tuple[tuple[str, Callable[[Any], Any] | None], ...]]:
    """``INSERT … ON CONFLICT DO NOTHING`` of these columns as the driver takes it, and
    how each value is bound (SQLite keeps times as text)."""
    table = ENTITY_TABLES[entity_set]
    statement = sqlite_insert(table).on_conflict_do_nothing()
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    order = tuple(compiled.positiontup or ())
    assert sorted(order) == sorted(columns)
    processors = tuple(
        (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in order
    )
    return str(compiled), processors


@functools.cache
def _array_insert(entity_set: str, columns: tuple[str, ...]) -> str:
    """``INSERT … SELECT * FROM unnest($1::T[], …) ON CONFLICT DO NOTHING``: one statement
    and one array per column, however many rows; its count tells whether a key existed.
    The arrays' types carry no length, so that the columns' own limits still refuse what
    is too long."""
    table = ENTITY_TABLES[entity_set]
    dialect = postgresql.dialect()
    types = [_ARRAY_TYPE.sub("", table.c[c].type.compile(dialect=dialect)) for c in columns]
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, 1))
    quoted = ", ".join(f'"{c}"' for c in columns)
    return (
        f'INSERT INTO "{table.name}" ({quoted}) SELECT * FROM unnest({arrays}) '
        "ON CONFLICT DO NOTHING"
    )


_ARRAY_TYPE = re.compile(r"\(\d+\)")
"""A length in a type name: ``VARCHAR(60)`` → ``VARCHAR``."""


_ENTITY_PLANS: dict[tuple[int, tuple[str, ...]], tuple[EntityType, tuple[str, ...], Any]] = {}


def _entity_plan(
    entity_type: EntityType, names: tuple[str, ...]
) -> tuple[tuple[str, ...], Callable[[Any], Sequence[Any]]]:
    """The properties of the entity that rows of that shape hold, and what takes their
    values out of a row, in that order."""
    found = _ENTITY_PLANS.get((id(entity_type), names))
    if found is None:
        where = {name: i for i, name in enumerate(names)}
        plan = [
            (prop, where[column_name(prop)])
            for prop in entity_type.property_names
            if column_name(prop) in where
        ]
        props = tuple(prop for prop, _ in plan)
        indexes = [i for _, i in plan]
        take: Any = operator.itemgetter(*indexes) if len(indexes) > 1 else None
        if take is None:
            take = (lambda row, i=indexes[0]: (row[i],)) if indexes else (lambda row: ())
        found = _ENTITY_PLANS[(id(entity_type), names)] = (entity_type, props, take)
    return found[1], found[2]


@dataclass
class Directory:
    """Operations inside one unit of work: a transaction, or (:class:`Reading`) reads."""

    conn: AsyncConnection
    secretbox: SecretBox
    limits: rules.Limits
    changes: list[Change] = field(default_factory=list)
    actor: str | None = None
    """Who the transaction's history names (the signed-in principal), if the caller says."""
    audit: audit.Recorder = field(default_factory=audit.Recorder)
    _pending: dict[str, dict[tuple[object, ...], dict[str, object]]] = field(default_factory=dict)
    """Inserts that wait for :meth:`flush`, by entity set and key."""
    _waiting: int = 0
    """How many inserts wait."""
    _behind: asyncio.Future[None] | None = None
    """The write :meth:`settle` left running while the unit of work goes on."""
    failed_behind: bool = False
    """That write failed: the error its caller sees is not the caller's own."""
    _turns: int = 0
    """Calls of :meth:`settle` while a write ran behind: every :data:`YIELD_EVERY`th
    gives the event loop a turn."""

    # -- reading ---------------------------------------------------------------------

    async def _execute(self, statement: Any, params: Any = None) -> Any:
        """Run a statement in the transaction, after the inserts that wait."""
        if self._behind is not None:
            await self.drain()
        if self._pending:
            await self.flush()
        return await self.conn.execute(statement, params)

    async def flush(self) -> None:
        """Write the inserts that wait, one statement per entity set.

        Creating many entities in one change set is what ``$batch`` is for; each waits
        here until the unit of work reads or writes anything else, or ends, and then all
        go to the database at once. A key that exists already is refused as if it had
        been inserted alone (the whole unit of work then rolls back).
        """
        await self.drain()
        pending, self._pending = self._pending, {}
        self._waiting = 0
        await self._insert_pending(pending)

    async def _insert_pending(
        self, pending: dict[str, dict[tuple[object, ...], dict[str, object]]]
    ) -> None:
        for entity_set, rows in pending.items():
            if self.conn.dialect.name == "sqlite" and await self._insert_counted(entity_set, rows):
                continue
            if self.conn.dialect.name == "postgresql" and await self._insert_arrays(
                entity_set, rows
            ):
                continue
            entity_type = ENTITY_TYPES[entity_set]
            table = ENTITY_TABLES[entity_set]
            keys = list(columns_of(table, entity_type.keys).values())
            if self.conn.dialect.name == "postgresql":
                statement: Any = postgresql_insert(table)
            else:
                statement = sqlite_insert(table)
            statement = statement.on_conflict_do_nothing().returning(*keys)
            result = await self.conn.execute(statement, list(rows.values()))
            written = {tuple(r) for r in result}
            if len(written) != len(rows):
                for key in rows:
                    if key not in written:
                        described = dict(zip(entity_type.keys, key, strict=True))
                        raise AlreadyExists(
                            f"{entity_type.name} {_describe(described)} already exists"
                        )

    async def _insert_counted(
        self, entity_set: str, rows: dict[tuple[object, ...], dict[str, object]]
    ) -> bool:
        """SQLite: the rows through the driver's ``executemany``, which counts what it
        wrote: an import writes millions of rows this way, at what a plain bulk insert
        costs. False if the rows differ in shape (nothing written: the general statement
        must run); a key that existed is refused by name.
        """
        first = next(iter(rows.values()))
        sql, processors = _counted_insert(entity_set, tuple(first), self.conn.dialect)
        if any(len(row) != len(processors) for row in rows.values()):
            return False
        # Column by column: rows created in one millisecond share their times, and each
        # is made text once.
        try:
            values = [[row[c] for row in rows.values()] for c, _ in processors]
            for i, (_, p) in enumerate(processors):
                if p is not None:
                    values[i] = list(map(functools.lru_cache(256)(p), values[i]))
        except (KeyError, TypeError):  # a row of another shape, a value that is not hashable
            return False
        params = list(zip(*values, strict=True))
        result = await self.conn.exec_driver_sql(sql, params)
        if result.rowcount != len(params):
            await self._refuse_existing(entity_set, rows)
        return True

    async def _insert_arrays(
        self, entity_set: str, rows: dict[tuple[object, ...], dict[str, object]]
    ) -> bool:
        """PostgreSQL: the rows as one array per column, ``unnest`` into the table, what
        was written counted (a key that existed is refused by name); False if the rows
        differ in shape (nothing written)."""
        first = next(iter(rows.values()))
        columns = tuple(first)
        if any(len(row) != len(columns) for row in rows.values()):
            return False
        try:
            arrays = tuple([row[c] for row in rows.values()] for c in columns)
        except KeyError:
            return False
        result = await self.conn.exec_driver_sql(_array_insert(entity_set, columns), arrays)
        if result.rowcount != len(rows):
            await self._refuse_existing(entity_set, rows)
        return True

    async def _refuse_existing(
        self, entity_set: str, rows: dict[tuple[object, ...], dict[str, object]]
    ) -> None:
        """Some keys existed (``DO NOTHING`` kept those rows): name the first of them, the
        first row whose stored form is not the one written."""
        entity_type = ENTITY_TYPES[entity_set]
        keys = list(rows)
        for key, row in rows.items():
            described = dict(zip(entity_type.keys, key, strict=True))
            stored = (await self.conn.execute(_by_key(entity_set), described)).first()
            if stored is None or any(stored._mapping[c] != v for c, v in row.items()):
                break
        else:
            described = dict(zip(entity_type.keys, keys[0], strict=True))
        raise AlreadyExists(f"{entity_type.name} {_describe(described)} already exists")

    async def settle(self) -> None:
        """Write what waits once there is much of it, so that a long unit of work (an
        import of millions of rows) keeps its memory flat; it still commits or rolls back
        as one.

        On PostgreSQL the write runs behind: the caller goes on preparing the next rows
        while the database server takes these, one write at a time, in order. Whatever
        uses the connection next waits for it (:meth:`drain`), and its failure fails the
        unit of work.
        """
        if self._behind is not None:
            self._turns += 1
            if self._turns % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # the write behind goes on: its answer is read
        spill = len(self.audit.records) >= SETTLE_AT
        if self._waiting < SETTLE_AT and not spill:
            return
        await self.drain()
        pending, self._pending, self._waiting = self._pending, {}, 0
        records = self.audit.take_spill() if spill else []
        write = self._write_behind(pending, records, now())
        if self.conn.dialect.name == "sqlite":
            # SQLite works in this process, binding row by row on the GIL the caller
            # needs: there is nothing to overlap, and handing the GIL over costs.
            await write
            return
        self._behind = asyncio.ensure_future(write)
        await asyncio.sleep(0)  # the write starts before the caller's next rows

    async def _write_behind(
        self,
        pending: dict[str, dict[tuple[object, ...], dict[str, object]]],
        records: list[audit.Record],
        stamp: datetime,
    ) -> None:
        try:
            await self._insert_pending(pending)
            if records:
                await self.audit.write_spilled(self.conn, records, stamp)
        except BaseException:
            self.failed_behind = True
            raise

    async def drain(self) -> None:
        """Wait for the write :meth:`settle` left running; its failure is raised here."""
        behind, self._behind = self._behind, None
        if behind is not None:
            await behind

    async def abandon(self) -> None:
        """The unit of work failed: let a write behind end (its error is moot: all rolls
        back) before the connection is rolled back."""
        behind, self._behind = self._behind, None
        if behind is not None:
            with contextlib.suppress(Exception):
                await behind

    async def _rows(self, statement: Select) -> tuple[tuple[str, ...], list[Any]]:
        """The statement's column names and rows (tuples)."""
        result = await self._execute(statement)
        return tuple(result.keys()), list(result.all())

    async def _rows_by_key(
        self, entity_set: str, key: dict[str, object]
    ) -> tuple[tuple[str, ...], list[Any]]:
        result = await self._execute(_by_key(entity_set), key)
        return tuple(result.keys()), list(result.all())

    @asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        await self.drain()
        async with database.bounded_read(self.conn):
            yield

    def _entities(
        self,
        entity_type: EntityType,
        names: tuple[str, ...],
        rows: list[Any],
        *,
        hashed_password: bool = False,
    ) -> list[dict[str, object]]:
        props, take = _entity_plan(entity_type, names)
        out = [dict(zip(props, take(row), strict=True)) for row in rows]
        if entity_type is USER_CREDENTIAL_PARAMETER:
            secret = names.index("password_enc")
            for entity, row in zip(out, rows, strict=True):
                entity["Password"] = None
                if hashed_password:
                    plain = self.secretbox.decrypt(row[secret])
                    entity["Password"] = "SHA256." + hashlib.sha256(plain.encode()).hexdigest()
        return out

    def _row_to_entity(self, entity_type: EntityType, row: Any) -> dict[str, object]:
        """One SQLAlchemy row of ``select(table)`` as an entity (no password)."""
        return self._entities(entity_type, tuple(row._mapping.keys()), [row])[0]

    async def get(
        self, entity_set: str, key: dict[str, object], *, hashed_password: bool = False
    ) -> dict[str, object]:
        entity_type = ENTITY_TYPES[entity_set]
        key = self._normalize_key(entity_type, key)
        if entity_type is PARTNER:
            if not await self.partner_exists(str(key["Pid"])):
                raise NotFound(f"Partner '{key['Pid']}' does not exist")
            return {"Pid": key["Pid"]}
        names, rows = await self._rows_by_key(entity_set, key)
        if not rows:
            raise NotFound(f"{entity_type.name} {_describe(key)} does not exist")
        return self._entities(entity_type, names, rows[:1], hashed_password=hashed_password)[0]

    def _source(self, entity_set: str) -> tuple[Any, dict[str, ColumnElement | None]]:
        entity_type = ENTITY_TYPES[entity_set]
        if entity_type is PARTNER:
            pids = union(*(select(t.c.pid.label("pid")) for t in PARTNER_TABLES.values()))
            sub = pids.subquery("partners")
            return sub, {"Pid": sub.c.pid}
        table = ENTITY_TABLES[entity_set]
        cols: dict[str, ColumnElement | None] = dict(columns_of(table, entity_type.property_names))
        if entity_type is ALTERNATIVE_PARTNER:
            # SAP: filtering on the hex keys is not supported and yields an empty result.
            for name in entity_type.keys:
                cols[name] = None
        if entity_type is USER_CREDENTIAL_PARAMETER:
            cols["Password"] = None
        return table, cols

    @property
    def dialect(self) -> Dialect:
        """The database's dialect (a :class:`Reading` has no connection of its own)."""
        return self.conn.dialect

    async def list(self, entity_set: str, request: ListRequest) -> Page:
        async with self._bounded():
            return await self._list(entity_set, request)

    async def _list(self, entity_set: str, request: ListRequest) -> Page:
        entity_type = ENTITY_TYPES[entity_set]
        source, cols = self._source(entity_set)
        given = request.filter
        orderby = request.orderby
        by_id = entity_set == "AuditEntries" and self.dialect.name == "sqlite"
        if by_id:
            orderby = audit.time_as_id(orderby)
        shape, values = (None, []) if given is None else with_stand_ins(given, _stand_in)
        stand_ins = [_stand_in(i) for i in range(len(values))]

        def where(expr: Any) -> ColumnElement | None:
            if expr is None:
                return None
            if by_id:
                return and_(compile_filter(expr, cols), *audit.id_range(expr, source.c.id))
            return compile_filter(expr, cols)

        def rows_query(expr: Any) -> Select:
            query: Select = select(source)
            condition = where(expr)
            if condition is not None:
                query = query.where(condition)
            order = compile_orderby(orderby, cols) if orderby else []
            key_cols = [cols[k] for k in entity_type.keys if cols.get(k) is not None]
            if entity_type is ALTERNATIVE_PARTNER:
                key_cols = [source.c.hexagency, source.c.hexscheme, source.c.hexid]
            query = query.order_by(*order, *key_cols)
            if request.top is not None:
                query = query.limit(request.top)
            if request.skip:
                query = query.offset(request.skip)
            return query

        def count_query(expr: Any) -> Select:
            counter = select(func.count()).select_from(source)
            condition = where(expr)
            return counter if condition is None else counter.where(condition)

        rows: list[dict[str, object]] = []
        if request.top != 0:
            shape_key = (entity_set, shape, tuple(orderby), request.top, request.skip)
            near = (
                request.top is not None
                and request.top + request.skip <= NEAR_ROWS
                and not orderby
                and _key_prefix(entity_set, shape)
            )
            names, found = await self._rows_shaped(
                shape_key,
                lambda: rows_query(shape),
                stand_ins,
                values,
                lambda: rows_query(given),
                near=near,
            )
            if entity_type is PARTNER:
                rows = [{"Pid": r[0]} for r in found]
            else:
                rows = self._entities(entity_type, names, found)
        count = None
        if request.count:
            found = (
                await self._rows_shaped(
                    (entity_set, shape, "count"),
                    lambda: count_query(shape),
                    stand_ins,
                    values,
                    lambda: count_query(given),
                    near=False,
                )
            )[1]
            count = int(found[0][0])
        return Page(rows, count)

    async def _rows_shaped(
        self,
        name: Any,
        build: Callable[[], Select],
        stand_ins: list[str],
        values: list[str],
        statement: Callable[[], Select],
        *,
        near: bool,
    ) -> tuple[tuple[str, ...], list[Any]]:
        """The rows of ``statement()``; a :class:`Reading` builds the statement of the
        shape ``name`` stands for once (:meth:`.reads.Reads.shaped`)."""
        return await self._rows(statement())

    async def partner_exists(self, pid: str) -> bool:
        probes = [
            select(literal(1)).select_from(t).where(t.c.pid == pid).limit(1)
            for t in PARTNER_TABLES.values()
        ]
        for probe in probes:
            if (await self._rows(probe))[1]:
                return True
        return False

    # -- writing ---------------------------------------------------------------------

    def _normalize_key(self, entity_type: EntityType, key: dict[str, object]) -> dict[str, object]:
        """The key as stored; refused before any SQL if no stored value could match it."""
        return rules.prepare_key(entity_type, key)

    def _record(self, entity_set: str, key: dict[str, object], pid: object) -> None:
        self.changes.append(Change(entity_set, key, str(pid) if pid is not None else None))

    async def create(
        self, entity_set: str, values: dict[str, object], actor: str, *, new: bool = False
    ) -> dict[str, object]:
        """Create an entity (a POST); one of :data:`UPSERT_ON_POST` whose key exists is
        updated, unless ``new`` says the caller knows it is not there (an import planned
        it): then its insert waits for :meth:`flush` as the others' do, and an existing key
        is refused."""
        entity_type = ENTITY_TYPES[entity_set]
        if entity_type is PARTNER:
            raise NotSupported(
                "Partners cannot be created directly: a partner exists as soon as one of "
                "its entities (e.g. a string parameter or an authorized user) does"
            )
        entity = rules.prepare_create(entity_type, values, self.limits)
        if entity_type is CERTIFICATE_USER_MAPPING:
            entity = _certificate_mapping(entity)
        if entity_type is CERTIFICATE_MAPPING_RULE:
            entity = _mapping_rule(entity)
        actor = rules.audit_user(actor)
        table = ENTITY_TABLES[entity_set]
        key = {k: entity[k] for k in entity_type.keys}
        stamp = now()
        columns = _column_names(entity_set)
        row = {columns[k]: v for k, v in entity.items() if k != "Password"}
        row.update(
            created_by=actor, created_time=stamp, last_modified_by=actor, last_modified_time=stamp
        )
        self._record(entity_set, key, entity.get("Pid"))
        if entity_set not in UPSERT_ON_POST or new:
            if entity_type is USER_CREDENTIAL_PARAMETER:
                row["password_enc"] = self.secretbox.encrypt(str(entity["Password"]))
            if entity_type is ALTERNATIVE_PARTNER:
                await self._check_alternative_unique(entity)
                await self._insert(table, entity_type, key, row)
            else:
                self._defer_insert(entity_set, entity_type, key, row)
            created = {name: row.get(column) for name, column in _columns(entity_set)}
            self._audit(entity_set, key, None, audit.snapshot(entity_set, created), actor)
            return created
        if entity_type is USER_CREDENTIAL_PARAMETER:
            row["password_enc"] = self.secretbox.encrypt(str(entity["Password"]))
        where = _key_where(table, entity_type, key)
        existing = (await self._execute(select(table).where(where))).first()
        before = None
        if existing is None:
            await self._insert(table, entity_type, key, row)
        else:
            if entity_type is CERTIFICATE_USER_MAPPING:
                del row["created_by"], row["created_time"]
            await self._execute(update(table).where(where).values(**row))
            before = audit.snapshot(entity_set, self._row_to_entity(entity_type, existing))
        stored = await self.get(entity_set, key)
        after = audit.snapshot(entity_set, stored, password=self._password_change(entity, existing))
        self._audit(entity_set, key, before, after, actor)
        return stored

    def _audit(
        self,
        entity_set: str,
        key: dict[str, object],
        before: audit.Snapshot | None,
        after: audit.Snapshot | None,
        actor: str | None,
    ) -> None:
        self.audit.record(entity_set, key, before, after, self.actor or actor)

    def _password_change(self, entity: dict[str, object], existing: Any) -> str | None:
        """What the history says of a user credential's password set again by a POST."""
        if existing is None or "password_enc" not in existing._mapping:
            return None
        old = self.secretbox.decrypt(existing._mapping["password_enc"])
        return audit.PASSWORD_CHANGED if old != entity["Password"] else None

    def _defer_insert(
        self,
        entity_set: str,
        entity_type: EntityType,
        key: dict[str, object],
        row: dict[str, object],
    ) -> None:
        waiting = self._pending.setdefault(entity_set, {})
        stored = tuple([key[name] for name in entity_type.keys])
        if stored in waiting:
            raise AlreadyExists(f"{entity_type.name} {_describe(key)} already exists")
        waiting[stored] = row
        self._waiting += 1

    async def _insert(
        self, table: Table, entity_type: EntityType, key: dict[str, object], row: dict[str, object]
    ) -> None:
        try:
            await self._execute(insert(table).values(**row))
        except IntegrityError:
            raise AlreadyExists(f"{entity_type.name} {_describe(key)} already exists") from None

    async def _check_alternative_unique(
        self, entity: dict[str, object], exclude_key: Any = None
    ) -> None:
        t = ENTITY_TABLES["AlternativePartners"]
        query = select(t.c.id).where(
            t.c.agency == entity["Agency"], t.c.scheme == entity["Scheme"], t.c.pid == entity["Pid"]
        )
        if exclude_key is not None:
            query = query.where(t.c.hexid != exclude_key["Hexid"])
        other = (await self._execute(query)).first()
        if other is not None:
            raise Conflict(
                f"Partner '{entity['Pid']}' already has the alternative ID '{other.id}' for "
                f"agency '{entity['Agency']}' and scheme '{entity['Scheme']}'; "
                "(Agency, Scheme, Pid) must be unique",
                field="Pid",
            )

    async def update(
        self, entity_set: str, key: dict[str, object], values: dict[str, object], actor: str
    ) -> None:
        entity_type = ENTITY_TYPES[entity_set]
        if entity_set not in rules.UPDATABLE:
            raise NotSupported(f"{entity_set} cannot be updated with PUT or MERGE")
        key = self._normalize_key(entity_type, key)
        actor = rules.audit_user(actor)
        current = await self.get(entity_set, key)
        changes = rules.prepare_update(entity_type, key, values, self.limits)
        if entity_type is CERTIFICATE_MAPPING_RULE:
            changes = _mapping_rule({**current, **changes})
        if entity_type is ALTERNATIVE_PARTNER and "Pid" in changes:
            await self._check_alternative_unique({**current, **changes}, exclude_key=key)
        table = ENTITY_TABLES[entity_set]
        row = {column_name(k): v for k, v in changes.items()}
        row.update(last_modified_by=actor, last_modified_time=now())
        await self._execute(update(table).where(_key_where(table, entity_type, key)).values(**row))
        after = audit.snapshot(entity_set, {**current, **changes})
        self._audit(entity_set, key, audit.snapshot(entity_set, current), after, actor)
        self._record(entity_set, key, current.get("Pid"))
        if changes.get("Pid") not in (None, current.get("Pid")):
            self._record(entity_set, key, changes["Pid"])

    async def delete(self, entity_set: str, key: dict[str, object]) -> None:
        entity_type = ENTITY_TYPES[entity_set]
        if entity_type is PARTNER:
            await self.delete_partner(str(key["Pid"]), ())
            return
        key = self._normalize_key(entity_type, key)
        current = await self.get(entity_set, key)
        table = ENTITY_TABLES[entity_set]
        await self._execute(delete(table).where(_key_where(table, entity_type, key)))
        self._audit(entity_set, key, audit.snapshot(entity_set, current), None, None)
        self._record(entity_set, key, current.get("Pid"))

    async def delete_partner(self, pid: str, exclude: Sequence[str]) -> None:
        """Delete a partner with all its entities, keeping the entity sets in ``exclude``."""
        unknown = [name for name in exclude if name not in PARTNER_ENTITY_SETS]
        if unknown:
            raise InvalidValue(
                f"exclude: unknown entity set {', '.join(unknown)}; allowed are "
                f"{', '.join(PARTNER_ENTITY_SETS)}",
                field="exclude",
            )
        rules.prepare_key(PARTNER, {"Pid": pid})
        if not await self.partner_exists(pid):
            raise NotFound(f"Partner '{pid}' does not exist")
        for name, table in PARTNER_TABLES.items():
            if name not in exclude:
                entity_type = ENTITY_TYPES[name]
                for row in await self._execute(select(table).where(table.c.pid == pid)):
                    gone = self._row_to_entity(entity_type, row)
                    key = {k: gone[k] for k in entity_type.keys}
                    self._audit(name, key, audit.snapshot(name, gone), None, None)
                await self._execute(delete(table).where(table.c.pid == pid))
        self._record("Partners", {"Pid": pid}, pid)


class Reading(Directory):
    """A unit of work that only reads, each statement in one trip (:mod:`.reads`).

    It holds nothing of one request: the store hands the same one to every reader."""

    def __init__(self, reads: Reads, secretbox: SecretBox, limits: rules.Limits) -> None:
        super().__init__(None, secretbox, limits)  # type: ignore[arg-type]
        self.reads = reads

    @property
    def dialect(self) -> Dialect:
        return self.reads.dialect

    async def _rows(self, statement: Select) -> tuple[tuple[str, ...], list[Any]]:
        return await self.reads.rows(statement)

    async def _rows_shaped(
        self,
        name: Any,
        build: Callable[[], Select],
        stand_ins: list[str],
        values: list[str],
        statement: Callable[[], Select],
        *,
        near: bool,
    ) -> tuple[tuple[str, ...], list[Any]]:
        return await self.reads.shaped(name, build, stand_ins, values, statement, near=near)

    async def _rows_by_key(
        self, entity_set: str, key: dict[str, object]
    ) -> tuple[tuple[str, ...], list[Any]]:
        return await self.reads.by_key(entity_set, lambda: _by_key(entity_set), key)

    @asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        yield  # every statement of :mod:`.reads` is bounded


Unit = Directory
"""What the API driver works on: one request's or one change set's unit of work."""


class _ReadUnit:
    """:meth:`DirectoryStore.read` where reads need no connection of their own."""

    __slots__ = ("store", "reading")

    def __init__(self, store: DirectoryStore, reading: Reading) -> None:
        self.store = store
        self.reading = reading

    async def __aenter__(self) -> Directory:
        await self.store.catch_up()
        return self.reading

    async def __aexit__(self, *exc: object) -> None:
        return None


def _certificate_mapping(values: dict[str, object]) -> dict[str, object]:
    """Derive what SAP derives from the certificate: Id (MD5 of the DER), ValidUntil.

    The certificate may come as base64 of PEM (SAP's form), PEM, or base64 of DER; it is
    stored and returned as base64 of PEM, as SAP returns it.
    """
    user = str(values["User"])
    if not user.strip():
        raise InvalidValue("Property 'User' must not be empty", field="User")
    cert = certificates.load_certificate(str(values["Certificate"]))
    return {
        "Id": certificates.mapping_id(cert),
        "User": user,
        "Certificate": certificates.pem_base64(cert),
        "ValidUntil": certificates.valid_until_ms(cert),
    }


def _mapping_rule(values: dict[str, object]) -> dict[str, object]:
    """Check a rule has what its kind matches on; keep DNs in one canonical form."""
    rules.check_mapping_rule(values)
    fields = ("Id", "Kind", "User", "SubjectDN", "IssuerDN", "SerialNumber", "Thumbprint")
    out = {name: values[name] for name in fields if name in values}
    for name in ("SubjectDN", "IssuerDN"):
        if out.get(name):
            try:
                out[name] = certificates.normalize_dn(str(out[name]))
            except ValueError as exc:
                raise InvalidValue(
                    f"{name} is not a distinguished name: {exc}", field=name
                ) from None
    return out


def _describe(key: dict[str, object]) -> str:
    return "(" + ", ".join(f"{k}='{v}'" for k, v in key.items()) + ")"


class DirectoryStore:
    """Entry point: opens transactions and tells listeners what each one changed."""

    def __init__(
        self, engine: AsyncEngine, secretbox: SecretBox, limits: rules.Limits = rules.DEFAULT_LIMITS
    ) -> None:
        self.engine = engine
        self.secretbox = secretbox
        self.limits = limits
        self.listeners: list[Listener] = []
        self.before_read: list[Callable[[], Awaitable[None]]] = []
        """Run before every read: writers that buffer (the message log) catch up first."""
        self.reads: Reads | None = open_reads(engine)
        self._reading = (
            None if self.reads is None else Reading(self.reads, self.secretbox, self.limits)
        )

    @asynccontextmanager
    async def begin(
        self, actor: str | None = None, operation: str | None = None
    ) -> AsyncIterator[Directory]:
        """One write transaction; ``actor`` and ``operation`` are what its history says."""
        async with database.begin(self.engine) as conn:
            directory = Directory(
                conn, self.secretbox, self.limits, actor=actor, audit=audit.Recorder(operation)
            )
            try:
                yield directory
            except BaseException:
                await directory.abandon()
                raise
            await directory.flush()
            await directory.audit.write(conn, now())
            await publish(conn, directory.changes)
        if directory.changes:
            # Committed: the caller's answer is a success whatever a listener does.
            for listener in self.listeners:
                try:
                    result = listener(directory.changes)
                    if result is not None:
                        await result
                except Exception:
                    log.exception("a listener failed on changes already committed")

    async def catch_up(self) -> None:
        """Let writers that buffer (the message log) write what waits."""
        for catch_up in self.before_read:
            await catch_up()

    def read(self) -> AbstractAsyncContextManager[Directory]:
        """A unit of work that reads what is committed."""
        if self._reading is not None:
            return _ReadUnit(self, self._reading)
        return self._read_on_engine()

    @asynccontextmanager
    async def _read_on_engine(self) -> AsyncIterator[Directory]:
        await self.catch_up()
        async with self.engine.connect() as conn:
            yield Directory(conn, self.secretbox, self.limits)

    async def close(self) -> None:
        if self.reads is not None:
            reads, self.reads, self._reading = self.reads, None, None
            await reads.close()

    async def get(self, entity_set: str, key: dict[str, object], **kw: bool) -> dict[str, object]:
        async with self.read() as d:
            return await d.get(entity_set, key, **kw)

    async def list(self, entity_set: str, request: ListRequest) -> Page:
        async with self.read() as d:
            return await d.list(entity_set, request)

    async def create(
        self, entity_set: str, values: dict[str, object], actor: str
    ) -> dict[str, object]:
        async with self.begin() as d:
            return await d.create(entity_set, values, actor)

    async def update(
        self, entity_set: str, key: dict[str, object], values: dict[str, object], actor: str
    ) -> None:
        async with self.begin() as d:
            await d.update(entity_set, key, values, actor)

    async def delete(
        self, entity_set: str, key: dict[str, object], actor: str | None = None
    ) -> None:
        async with self.begin(actor) as d:
            await d.delete(entity_set, key)

    async def delete_partner(
        self, pid: str, exclude: Sequence[str], actor: str | None = None
    ) -> None:
        async with self.begin(actor) as d:
            await d.delete_partner(pid, exclude)

"""``$filter``/``$orderby`` compiled to SQL, run on a real SQLite file and a real PostgreSQL.

Every case asserts the rows SQLite returns, the rows PostgreSQL returns, and the rows the
OData V2 semantics ask for (URI conventions §4.2, §4.5) are one and the same list. The
PostgreSQL columns carry a linguistic (non-C) collation on purpose: code-point order must
come from the compiled SQL, not from how a column happens to be declared.

PostgreSQL: ``PARTNERGATE_TEST_PG_URL`` or the server on 127.0.0.1:5432 (trust auth). The
test works in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.elements import ColumnElement

from partnergate.model.entities import EdmType, EntityType, Property
from partnergate.odata.errors import BadRequest
from partnergate.odata.filter import (
    MAX_DEPTH,
    Compare,
    CompareOp,
    Literal,
    Or,
    PropertyRef,
    ValueType,
    parse_filter,
    parse_orderby,
)
from partnergate.store.filtering import compile_filter, compile_orderby

PG_URL = os.environ.get("PARTNERGATE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

ITEM = EntityType(
    "Item",
    "Items",
    ("Pid", "Id"),
    (
        Property("Pid", EdmType.STRING, False, 60),
        Property("Id", EdmType.STRING, False, 200),
        Property("Value", EdmType.STRING, True, 200),
        Property("Created", EdmType.DATETIME),
        Property("Num", EdmType.INT64),
        Property("Hex", EdmType.STRING),
    ),
)

MAX = "\U0010ffff"

D = datetime
ROWS: list[dict[str, Any]] = [
    dict(zip(("rid", "pid", "id", "value", "created", "num"), values, strict=True))
    for values in [
        (1, "abc", "a_b", "it's", D(2014, 9, 1), 5),
        (2, "ABC", "axb", "50%", D(2014, 9, 1, 0, 0, 0, 500000), 10),
        (3, "abd", "a%b", "50x", D(2014, 8, 31, 23, 59, 59), -3),
        (4, "B", "id_1", None, None, None),
        (5, "äpfel", "x", "Äpfel", D(2020, 1, 1), 0),
        (6, "Äpfel", "y", "äpfel", D(2020, 1, 1, 12), 7),
        (7, "ab", " pad ", "abcabc", D(2015, 1, 1), 100),
        (8, "a" * 60, "long", "x", D(2016, 1, 1), 1),
        (9, "zz", "Z", "", D(2016, 1, 1), 2),
        (10, "a" + MAX, "max", "_", D(2017, 1, 1), 3),
    ]
]
ALL = [row["rid"] for row in ROWS]


def everything_but(*rids: int) -> list[int]:
    return [rid for rid in ALL if rid not in rids]


def make_table(pg_collation: str | None) -> tuple[sa.MetaData, sa.Table]:
    def text(length: int) -> sa.types.TypeEngine[str]:
        if pg_collation is None:
            return sa.String(length)
        return sa.String(length).with_variant(
            sa.String(length, collation=pg_collation), "postgresql"
        )

    metadata = sa.MetaData()
    table = sa.Table(
        "items",
        metadata,
        sa.Column("rid", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("pid", text(60), nullable=False),
        sa.Column("id", text(200), nullable=False),
        sa.Column("value", text(200)),
        sa.Column("created", sa.DateTime),
        sa.Column("num", sa.BigInteger),
        sa.Index("ix_items_pid", "pid"),
    )
    sa.Index("ix_items_pid_c", sa.collate(table.c.pid, "C")).ddl_if(dialect="postgresql")
    return metadata, table


@dataclass
class Databases:
    engines: dict[str, AsyncEngine]
    table: sa.Table
    pg_schema: str

    @property
    def columns(self) -> dict[str, ColumnElement[Any] | None]:
        c = self.table.c
        return {"Pid": c.pid, "Id": c.id, "Value": c.value, "Created": c.created,
                "Num": c.num, "Hex": None}  # fmt: skip

    def rows(
        self,
        where: ColumnElement[bool] | None = None,
        order_by: list[ColumnElement[Any]] | None = None,
    ) -> dict[str, list[int]]:
        """The ``rid`` of the rows each database returns, in the order it returns them."""
        statement = sa.select(self.table.c.rid)
        if where is not None:
            statement = statement.where(where)
        statement = statement.order_by(*(order_by or []), self.table.c.rid)

        async def run() -> dict[str, list[int]]:
            found: dict[str, list[int]] = {}
            for name, engine in self.engines.items():
                async with engine.connect() as conn:
                    found[name] = list((await conn.execute(statement)).scalars())
            return found

        return asyncio.run(run())

    def filtered(self, text: str) -> dict[str, list[int]]:
        return self.rows(compile_filter(parse_filter(text, ITEM), self.columns))

    def ordered(self, text: str) -> dict[str, list[int]]:
        return self.rows(order_by=compile_orderby(parse_orderby(text, ITEM), self.columns))


def _asyncpg_url(url: str) -> sa.URL:
    return sa.make_url(url).set(drivername="postgresql+asyncpg")


async def _pick_collation(engine: AsyncEngine) -> str | None:
    """A linguistic collation the server has, under which 'B' sorts after 'a'."""
    async with engine.connect() as conn:
        names = set((await conn.execute(sa.text("SELECT collname FROM pg_collation"))).scalars())
    for name in ("en-x-icu", "und-x-icu", "en_US.utf8", "en_US.UTF-8"):
        if name in names:
            return name
    return None


async def _set_up(sqlite_url: str, schema: str) -> Databases:
    admin = create_async_engine(_asyncpg_url(PG_URL), poolclass=NullPool)
    try:
        async with admin.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        collation = await _pick_collation(admin)
    finally:
        await admin.dispose()
    metadata, table = make_table(collation)
    pg = create_async_engine(_asyncpg_url(PG_URL), poolclass=NullPool).execution_options(
        schema_translate_map={None: schema}
    )
    sqlite = create_async_engine(sqlite_url, poolclass=NullPool)
    for engine in (sqlite, pg):
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(table.insert(), ROWS)
    return Databases({"sqlite": sqlite, "postgresql": pg}, table, schema)


async def _tear_down(databases: Databases) -> None:
    for engine in databases.engines.values():
        await engine.dispose()
    admin = create_async_engine(_asyncpg_url(PG_URL), poolclass=NullPool)
    try:
        async with admin.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{databases.pg_schema}" CASCADE'))
    finally:
        await admin.dispose()


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    path: Path = tmp_path_factory.mktemp("filtering") / "filtering.db"
    schema = f"test_filtering_{uuid.uuid4().hex[:12]}"
    databases = asyncio.run(_set_up(f"sqlite+aiosqlite:///{path}", schema))
    try:
        yield databases
    finally:
        asyncio.run(_tear_down(databases))


def same(found: dict[str, list[int]], expected: list[int]) -> None:
    assert found == {"sqlite": expected, "postgresql": expected}


# -- comparisons ---------------------------------------------------------------------------

CASES: list[tuple[str, list[int]]] = [
    # eq/ne are exact and case-sensitive
    ("Pid eq 'abc'", [1]),
    ("Pid eq 'ABC'", [2]),
    ("Pid ne 'abc'", everything_but(1)),
    ("Value eq 'it''s'", [1]),
    ("Pid eq '" + "a" * 61 + "'", []),
    ("Value eq ''", [9]),
    # null: eq/ne null test for absence; other comparisons with null are false
    ("Value eq null", [4]),
    ("null eq Value", [4]),
    ("Value ne null", everything_but(4)),
    ("Value ne 'x'", everything_but(8)),
    ("not (Value eq 'x')", everything_but(8)),
    ("not (Value ne 'x')", [8]),
    ("(Value eq 'x') eq false", everything_but(8)),
    ("Value gt 'a'", [1, 5, 6, 7, 8]),
    ("not (Value gt 'a')", [2, 3, 4, 9, 10]),
    # ordering comparisons of strings go by code point: 'B' < 'a' < 'Ä' < 'ä'
    ("Pid lt 'a'", [2, 4]),
    ("Pid ge 'ab' and Pid le 'abd'", [1, 3, 7]),
    ("Pid gt 'zz'", [5, 6]),
    ("Value gt Pid", [1, 6, 7, 8]),
    # constants
    ("'a' eq 'a'", ALL),
    ("'a' eq 'b'", []),
    ("null eq null", ALL),
    ("true", ALL),
    ("false", []),
    ("not false", ALL),
    # junctions
    ("Pid eq 'abc' or Pid eq 'zz'", [1, 9]),
    ("(Pid eq 'abc' or Pid eq 'zz') and Num gt 3", [1]),
    ("Pid eq 'abc' or Pid eq 'zz' and Num gt 3", [1]),
    ("not (Pid eq 'abc' or Value eq null)", everything_but(1, 4)),
    # Edm.DateTime against datetime literals (naive UTC)
    ("Created eq datetime'2014-09-01T00:00:00'", [1]),
    ("Created eq datetime'2014-09-01T00:00'", [1]),
    ("Created gt datetime'2014-09-01T00:00'", [2, 5, 6, 7, 8, 9, 10]),
    ("Created lt datetime'2014-09-01T00:00:00.5'", [1, 3]),
    ("Created le datetime'2014-09-01T00:00:00.5'", [1, 2, 3]),
    ("Created eq null", [4]),
    # Edm.Int64 against every numeric literal form
    ("Num gt 5", [2, 6, 7]),
    ("Num gt 4.5", [1, 2, 6, 7]),
    ("Num le -3", [3]),
    ("Num eq 5L", [1]),
    ("Num lt 1.5d", [3, 5, 8]),
    ("Num lt 1.5f", [3, 5, 8]),
    ("Num ge 2.5M and Num lt 7", [1, 10]),
    ("Num eq 9223372036854775807L", []),
    ("Num ne 5", everything_but(1)),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_comparisons(dbs: Databases, text: str, expected: list[int]) -> None:
    same(dbs.filtered(text), expected)


# -- functions -------------------------------------------------------------------------

FUNCTION_CASES: list[tuple[str, list[int]]] = [
    # startswith: case-sensitive, % and _ are plain characters
    ("startswith(Pid, 'ab')", [1, 3, 7]),
    ("startswith(Pid, 'AB')", [2]),
    ("startswith(Pid, 'a')", [1, 3, 7, 8, 10]),
    ("startswith(Pid, '')", ALL),
    ("startswith(Value, '')", everything_but(4)),
    ("startswith(Value, '50%')", [2]),
    ("startswith(Id, 'a_')", [1]),
    ("startswith(Id, 'a%')", [3]),
    ("startswith(Pid, 'a" + MAX + "')", [10]),
    ("startswith(Pid, 'Äp')", [6]),
    ("startswith(Value, Pid)", [7]),
    ("not startswith(Value, 'a')", everything_but(7)),
    ("startswith(tolower(Pid), 'ab')", [1, 2, 3, 7]),
    # endswith
    ("endswith(Value, '%')", [2]),
    ("endswith(Id, '_1')", [4]),
    ("endswith(Value, 'abc')", [7]),
    ("endswith(Value, 'ABC')", []),
    ("endswith(Value, '')", everything_but(4)),
    ("endswith(Pid, 'a" + MAX + "')", [10]),
    ("endswith(Value, substring(Value, 4))", everything_but(4)),
    ("endswith(Pid, Value)", [9]),
    # substringof(needle, haystack): haystack contains needle
    ("substringof('_', Id)", [1, 4]),
    ("substringof('%', Value)", [2]),
    ("substringof('''', Value)", [1]),
    ("substringof('A', Pid)", [2]),
    ("substringof('pfel', Value)", [5, 6]),
    ("substringof('', Value)", everything_but(4)),
    # tolower/toupper change ASCII letters only, identically on both databases
    ("tolower(Pid) eq 'abc'", [1, 2]),
    ("toupper(Pid) eq 'ABC'", [1, 2]),
    ("tolower(Value) eq 'äpfel'", [6]),
    ("toupper(Pid) eq 'ÄPFEL'", [6]),
    ("tolower(Value) eq null", [4]),
    # length counts characters, not bytes
    ("length(Pid) eq 60", [8]),
    ("length(Value) eq 0", [9]),
    ("length(Pid) eq 2", [7, 9, 10]),
    ("length(Pid) eq 5", [5, 6]),
    ("length(Value) gt 4", [5, 6, 7]),
    # indexof and substring count from 0; a negative position is taken as 0
    ("indexof(Value, 'c') eq 2", [7]),
    ("indexof(Value, 'q') eq -1", everything_but(4)),
    ("indexof(Pid, 'p') eq 1", [5, 6]),
    ("substring(Value, 3) eq 'abc'", [7]),
    ("substring(Value, 1, 2) eq '0%'", [2]),
    ("substring(Value, 0, 0) eq ''", everything_but(4)),
    ("substring(Id, 100) eq ''", ALL),
    ("substring(Value, indexof(Value, 'q')) eq Value", ALL),
    ("substring(Value, indexof(Value, 'b'), length(Pid)) eq 'bc'", [7]),
    # trim, concat, replace
    ("trim(Id) eq 'pad'", [7]),
    ("Id eq ' pad '", [7]),
    ("concat(Pid, Id) eq 'abca_b'", [1]),
    ("concat(Value, '!') eq 'x!'", [8]),
    ("concat(Value, '!') eq null", [4]),
    ("replace(Value, 'abc', '') eq ''", [7, 9]),
    ("replace(Id, '_', '%') eq 'a%b'", [1, 3]),
]


@pytest.mark.parametrize(("text", "expected"), FUNCTION_CASES)
def test_functions(dbs: Databases, text: str, expected: list[int]) -> None:
    same(dbs.filtered(text), expected)


def test_matching_never_uses_like(dbs: Databases) -> None:
    """SQLite's LIKE ignores ASCII case and both give % and _ meaning: not used at all."""
    text = "startswith(Pid,'a') and endswith(Id,'b') and substringof('x',Value)"
    where = compile_filter(parse_filter(text, ITEM), dbs.columns)
    for dialect in (sa.dialects.sqlite.dialect(), sa.dialects.postgresql.dialect()):
        assert "LIKE" not in str(where.compile(dialect=dialect)).upper()


# -- properties that cannot be filtered ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hex eq 'AA'", []),
        ("Hex ne 'AA'", []),
        ("Hex eq null", []),
        ("startswith(Hex, 'A')", []),
        ("length(Hex) gt 0", []),
        ("startswith(Hex, 'A') or Pid eq 'abc'", [1]),
        ("Hex eq 'AA' and Pid eq 'abc'", []),
        ("not (Hex eq 'AA')", ALL),
    ],
)
def test_unfilterable_property_comparisons_are_false(
    dbs: Databases, text: str, expected: list[int]
) -> None:
    """SAP answers an empty result for a filter on AlternativePartners' Hex* keys."""
    same(dbs.filtered(text), expected)


# -- ordering -----------------------------------------------------------------------------

ORDER_CASES: list[tuple[str, list[int]]] = [
    ("Pid", [2, 4, 8, 7, 1, 3, 10, 9, 6, 5]),
    ("Pid desc", [5, 6, 9, 10, 3, 1, 7, 8, 4, 2]),
    ("Value", [4, 9, 2, 3, 10, 7, 1, 8, 5, 6]),
    ("Value desc", [6, 5, 8, 1, 7, 10, 3, 2, 9, 4]),
    ("Created desc, Pid", [6, 5, 10, 8, 9, 7, 2, 1, 3, 4]),
    ("Num", [4, 3, 5, 8, 9, 10, 1, 6, 2, 7]),
    ("Num desc", [7, 2, 6, 1, 10, 9, 8, 5, 3, 4]),
    ("tolower(Pid), Num desc", [8, 7, 2, 1, 3, 10, 4, 9, 6, 5]),
    ("length(Value) desc, Pid", [7, 6, 5, 1, 2, 3, 8, 10, 9, 4]),
    ("Hex, Pid", [2, 4, 8, 7, 1, 3, 10, 9, 6, 5]),
    ("Hex desc", ALL),
]


@pytest.mark.parametrize(("text", "expected"), ORDER_CASES)
def test_orderby(dbs: Databases, text: str, expected: list[int]) -> None:
    """Strings by code point; nulls first ascending, last descending; Hex ignored."""
    same(dbs.ordered(text), expected)


# -- index use -----------------------------------------------------------------------------


def _literal_sql(dbs: Databases, text: str, dialect: sa.engine.Dialect) -> str:
    statement = sa.select(dbs.table.c.rid).where(
        compile_filter(parse_filter(text, ITEM), dbs.columns)
    )
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def test_startswith_uses_the_index_on_sqlite(dbs: Databases) -> None:
    sql = _literal_sql(dbs, "startswith(Pid, 'ab')", sa.dialects.sqlite.dialect())

    async def plan() -> list[str]:
        async with dbs.engines["sqlite"].connect() as conn:
            rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)
            return [row[-1] for row in rows]

    details = asyncio.run(plan())
    assert any("INDEX ix_items_pid (pid>? AND pid<?)" in d for d in details), details


def test_startswith_can_use_a_code_point_index_on_postgresql(dbs: Databases) -> None:
    """An index on ``pid COLLATE "C"`` serves the range; the store can declare one."""
    sql = _literal_sql(dbs, "startswith(Pid, 'ab')", sa.dialects.postgresql.dialect())

    async def plan() -> list[str]:
        async with dbs.engines["postgresql"].begin() as conn:
            await conn.exec_driver_sql(f'SET LOCAL search_path TO "{dbs.pg_schema}"')
            await conn.exec_driver_sql("SET LOCAL enable_seqscan TO off")
            return list((await conn.exec_driver_sql("EXPLAIN " + sql)).scalars())

    assert any("ix_items_pid_c" in line for line in asyncio.run(plan()))


# -- size and depth ------------------------------------------------------------------------


def test_thousands_of_alternatives(dbs: Databases) -> None:
    """SQLite refuses expression trees deeper than 1000; long junctions are grouped."""
    pid = PropertyRef("Pid", ValueType.STRING)
    alternatives = tuple(
        Compare(CompareOp.EQ, pid, Literal(f"p{i}", ValueType.STRING)) for i in range(3000)
    )
    wanted = Compare(CompareOp.EQ, pid, Literal("zz", ValueType.STRING))
    expr = Or((*alternatives, wanted))
    same(dbs.rows(compile_filter(expr, dbs.columns)), [9])


def test_longest_filter_text(dbs: Databases) -> None:
    text, i = "Id eq 'Z'", 0
    while len(longer := f"Id eq '{i}'or {text}") <= 8192:
        text, i = longer, i + 1
    assert i > 500
    same(dbs.filtered(text), [9])


def _stack(frames: int, call: Callable[[], Any]) -> Any:
    """Call from ``frames`` frames deeper, as a request handler sits in a web stack."""
    return call() if frames == 0 else _stack(frames - 1, call)


STRING_WRAPPERS: dict[str, int] = {
    "tolower({})": 1,
    "toupper({})": 1,
    "trim({})": 1,
    "concat({}, 'a')": 1,
    "concat('a', {})": 1,
    "replace({}, 'a', 'b')": 1,
    "replace('abc', {}, 'b')": 1,
    "replace('abc', 'a', {})": 1,
    "substring({}, 1)": 1,
    "substring({}, 0, 2)": 1,
    "substring('abcdef', length({}))": 2,
    "substring('abcdef', indexof({}, 'b'))": 2,
    "substring('abcdef', 1, length({}))": 2,
    "substring('abcdef', 0, indexof('a', {}))": 2,
}
"""Each way a string expression nests inside another, and the tree levels it adds."""

CONDITIONS_OF_A_STRING = (
    "{} eq 'x'",
    "{} gt 'a'",
    "startswith({}, 'a')",
    "startswith('abc', {})",
    "endswith({}, 'a')",
    "endswith('abc', {})",
    "substringof({}, 'abc')",
)


MARGIN = 2
"""Levels beyond MAX_DEPTH that must still run, so that a change making the SQL deeper
shows here before it reaches the limit."""


@pytest.fixture
def depth(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """MAX_DEPTH itself, or MAX_DEPTH + MARGIN with the parser's limit raised to match."""
    height: int = MAX_DEPTH + request.param
    monkeypatch.setattr("partnergate.odata.filter.MAX_DEPTH", height)
    return height


def _deepest(wrapper: str, levels: int, condition: str, height: int) -> str:
    text = "Value"
    for _ in range((height - 2) // levels):
        text = wrapper.format(text)
    return condition.format(text)


@pytest.mark.parametrize("depth", [0, MARGIN], indirect=True, ids=["max", "margin"])
@pytest.mark.parametrize("condition", CONDITIONS_OF_A_STRING)
@pytest.mark.parametrize("wrapper", list(STRING_WRAPPERS))
def test_the_deepest_string_expressions_run_on_both(
    dbs: Databases, wrapper: str, condition: str, depth: int
) -> None:
    """MAX_DEPTH keeps the SQL within SQLite's parser stack and SQLAlchemy's recursive
    compiler, with room to spare below a deep caller."""
    text = _deepest(wrapper, STRING_WRAPPERS[wrapper], condition, depth)
    expr = parse_filter(text, ITEM)
    found = _stack(300, lambda: dbs.rows(compile_filter(expr, dbs.columns)))
    assert found["sqlite"] == found["postgresql"]


CONDITION_WRAPPERS: dict[str, int] = {
    "not ({})": 1,
    "({}) eq true": 1,
    "({}) ne false": 1,
    "Pid eq 'a' or not ({})": 2,
    "not (Pid eq 'a' and ({}))": 2,
}


@pytest.mark.parametrize("depth", [0, MARGIN], indirect=True, ids=["max", "margin"])
@pytest.mark.parametrize("wrapper", list(CONDITION_WRAPPERS))
def test_the_deepest_conditions_run_on_both(dbs: Databases, wrapper: str, depth: int) -> None:
    text = "Value eq 'x'"
    for _ in range((depth - 2) // CONDITION_WRAPPERS[wrapper]):
        text = wrapper.format(text)
    expr = parse_filter(text, ITEM)
    found = _stack(300, lambda: dbs.rows(compile_filter(expr, dbs.columns)))
    assert found["sqlite"] == found["postgresql"]


# -- differential: random filters, both databases ------------------------------------------


class RandomFilter:
    """Well-typed filter text of bounded height, drawn from every operator and function."""

    STRINGS = ("''", "'a'", "'ab'", "'AB'", "'it''s'", "'%'", "'_'", "'50%'", "'äpfel'",
               "'Ä'", "' '", "'b'", "'x'", "'a" + MAX + "'")  # fmt: skip

    def __init__(self, seed: int) -> None:
        import random

        self.random = random.Random(seed)

    def pick(self, *options: Callable[[], str]) -> str:
        return self.random.choice(options)()

    def condition(self, height: int) -> str:
        if height <= 2:
            return self.pick(
                lambda: f"{self.string(1)} {self.op()} {self.string(1)}",
                lambda: f"Num {self.op()} {self.random.choice(['5', '-3', '2.5', '1.5d', '7L'])}",
                lambda: (
                    f"{self.random.choice(['Value', 'Created', 'Num'])} "
                    f"{self.random.choice(['eq', 'ne'])} null"
                ),
                lambda: f"Created {self.op()} datetime'2014-09-01T00:00:00.5'",
                lambda: self.random.choice(["true", "false"]),
            )
        h = height - 1
        return self.pick(
            lambda: f"{self.string(h)} {self.op()} {self.string(h)}",
            lambda: f"{self.integer(h)} {self.op()} {self.integer(h)}",
            lambda: (
                f"{self.random.choice(['startswith', 'endswith'])}"
                f"({self.string(h)}, {self.string(h)})"
            ),
            lambda: f"substringof({self.string(h)}, {self.string(h)})",
            lambda: f"not ({self.condition(h)})",
            lambda: (
                f"({self.condition(h)}) {self.random.choice(['and', 'or'])} ({self.condition(h)})"
            ),
            lambda: (
                f"({self.condition(h)}) {self.random.choice(['eq', 'ne'])} ({self.condition(h)})"
            ),
        )

    def op(self) -> str:
        return self.random.choice(["eq", "ne", "gt", "ge", "lt", "le"])

    def string(self, height: int) -> str:
        if height <= 1:
            return self.random.choice(["Pid", "Id", "Value", *self.STRINGS])
        h = height - 1
        return self.pick(
            lambda: self.string(1),
            lambda: f"{self.random.choice(['tolower', 'toupper', 'trim'])}({self.string(h)})",
            lambda: f"concat({self.string(h)}, {self.string(h)})",
            lambda: f"replace({self.string(h)}, {self.string(h)}, {self.string(h)})",
            lambda: f"substring({self.string(h)}, {self.int32(h)})",
            lambda: f"substring({self.string(h)}, {self.int32(h)}, {self.int32(h)})",
        )

    def int32(self, height: int) -> str:
        if height <= 1:
            return self.random.choice(["0", "1", "2", "5"])
        h = height - 1
        return self.pick(
            lambda: self.int32(1),
            lambda: f"length({self.string(h)})",
            lambda: f"indexof({self.string(h)}, {self.string(h)})",
        )

    def integer(self, height: int) -> str:
        return self.random.choice(["Num", self.int32(height)])


def _within_budget(text: str) -> bool:
    """Whether the parser's cost rules (MAX_STRING_LENGTH, MAX_COST) let the text through:
    random nesting of ``replace`` over properties soon could grow past them."""
    try:
        parse_filter(text, ITEM)
    except BadRequest as exc:
        assert "are allowed" in exc.message, exc.message
        return False
    return True


def _random_filters(count: int, seed: int) -> list[str]:
    source = RandomFilter(seed)
    texts: list[str] = []
    while len(texts) < count:
        text = source.condition(source.random.randint(2, MAX_DEPTH))
        if len(text) <= 8192 and _within_budget(text):
            texts.append(text)
    return texts


def test_random_filters_agree(dbs: Databases) -> None:
    """Hundreds of random well-typed filters, up to MAX_DEPTH high: same rows on both."""
    for text in _random_filters(300, seed=20260727):
        found = dbs.filtered(text)
        assert found["sqlite"] == found["postgresql"], text

"""``$filter`` and ``$orderby`` syntax trees compiled to SQLAlchemy Core, run in the database.

Lives here: how each OData V2 operator and string function (URI conventions §4.5) is
written in SQL so that SQLite and PostgreSQL return the same rows in the same order.
Must not know: HTTP, the OData wire formats; the tree comes from ``odata.filter``.

The rules that make the two databases agree:

* Strings compare by code point, case-sensitively. SQLite's default BINARY collation does
  so; on PostgreSQL the ordering comparisons and ORDER BY get ``COLLATE "C"`` whatever the
  column's collation. Equality needs none: under a deterministic collation it is
  byte-wise, and without a COLLATE it keeps using the column's index.
* No LIKE: SQLite's is case-insensitive for ASCII and ``%``/``_`` would need escaping.
  ``startswith`` is a range on a plain column (so an index serves it) plus an exact
  ``substr`` check, ``endswith`` a ``substr`` from the end, ``substringof``/``indexof``
  ``instr`` on SQLite and ``strpos`` on PostgreSQL.
* ``tolower``/``toupper`` change the ASCII letters only, as SQLite's built-in
  ``lower``/``upper`` do; PostgreSQL's are Unicode-aware, so it gets ``translate``.
* Two-valued logic: ``null eq null`` is true, ``x ne null`` is true for a value ``x``,
  every other comparison or function with a null operand is false, and ``not`` is the
  exact complement. SQL's NULL never reaches a ``NOT``: it is folded to false first.
* A string function of a null is null, except that ``replace`` takes a null replacement
  as empty: SQLite's ``replace(x, '', NULL)`` is ``x``, PostgreSQL's is NULL, and only
  ``coalesce`` reconciles them without writing an argument twice into the SQL (which
  nested calls would multiply).
* Nulls sort first ascending and last descending on both (PostgreSQL's default differs).

A property mapped to ``None`` in ``columns`` is not filterable: every comparison or
function call that involves it is false, and ``$orderby`` ignores it. SAP answers an
empty result when AlternativePartners are filtered on Hexagency, Hexscheme or Hexid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnClause, ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine

from ..odata.filter import (
    And,
    Call,
    Compare,
    CompareOp,
    Expr,
    Literal,
    Not,
    Or,
    OrderBy,
    PropertyRef,
    ValueType,
    children,
    type_of,
)

Columns: TypeAlias = Mapping[str, "ColumnElement[Any] | None"]
"""Property name → the SQL expression holding it, or ``None`` if it cannot be filtered."""

_INT32_MAX = 2**31 - 1

JUNCTION_CHUNK = 64
"""Longest run of ``and``/``or`` operands written flat; longer runs are parenthesised in
groups, because SQLite parses ``a OR b OR …`` into a tree as deep as the run is long and
refuses trees deeper than 1000."""


def compile_filter(expr: Expr, columns: Columns) -> ColumnElement[bool]:
    """The WHERE clause for a parsed ``$filter`` (see :func:`odata.filter.parse_filter`)."""
    return _Compiler(columns).condition(expr)


def with_stand_ins(expr: Expr, stand_in: Callable[[int], str]) -> tuple[Expr, list[str]]:
    """``expr`` with each string literal that a property is compared to replaced by
    ``stand_in(i)``, and the literals replaced, in that order.

    Such a literal only ever becomes a bound parameter of the comparison, so filters
    that differ in those values alone (``Pid eq '…'``) make the same SQL: the store
    builds it once (:meth:`.reads.Reads.shaped`) and binds the values of each request.
    """
    values: list[str] = []

    def replaced(literal: Literal) -> Literal:
        values.append(str(literal.value))
        return Literal(stand_in(len(values) - 1), ValueType.STRING)

    def walk(node: Expr) -> Expr:
        if isinstance(node, Compare):
            left, right = node.left, node.right
            if isinstance(left, PropertyRef) and _is_string(right):
                return Compare(node.op, left, replaced(right))  # type: ignore[arg-type]
            if isinstance(right, PropertyRef) and _is_string(left):
                return Compare(node.op, replaced(left), right)  # type: ignore[arg-type]
            return node
        if isinstance(node, And):
            return And(tuple(walk(o) for o in node.operands))
        if isinstance(node, Or):
            return Or(tuple(walk(o) for o in node.operands))
        if isinstance(node, Not):
            return Not(walk(node.operand))
        return node

    return walk(expr), values


def pinned(expr: Expr | None) -> frozenset[str] | None:
    """The properties ``expr`` sets equal to string literals, if that is all it does
    (``Pid eq '…'``, or such terms joined by ``and``); None for any other filter."""
    if expr is None:
        return None
    terms = expr.operands if isinstance(expr, And) else (expr,)
    names = set()
    for term in terms:
        if not (
            isinstance(term, Compare)
            and term.op is CompareOp.EQ
            and isinstance(term.left, PropertyRef)
            and _is_string(term.right)
        ):
            return None
        names.add(term.left.name)
    return frozenset(names)


def _is_string(expr: Expr) -> bool:
    return isinstance(expr, Literal) and expr.edm_type is ValueType.STRING


def compile_orderby(orderby: Iterable[OrderBy], columns: Columns) -> list[ColumnElement[Any]]:
    """The ORDER BY clauses for a parsed ``$orderby``, in order.

    The caller appends the key columns so that paging with ``$skip``/``$skiptoken`` is
    stable when the requested keys tie.
    """
    compiler = _Compiler(columns)
    clauses: list[ColumnElement[Any]] = []
    for key in orderby:
        if compiler.unfilterable(key.expr):
            continue
        value = compiler.value(key.expr)
        if type_of(key.expr) is ValueType.STRING:
            value = code_point_order(value)
        clauses.append(value.desc().nulls_last() if key.descending else value.asc().nulls_first())
    return clauses


# -- SQL that differs between the databases ----------------------------------------------


class code_point_order(FunctionElement[str]):
    """The string operand compared by code point: ``x COLLATE "C"`` on PostgreSQL."""

    type = sa.String()
    inherit_cache = True
    name = "code_point_order"


class text_position(FunctionElement[int]):
    """``text_position(haystack, needle)``: 1-based position of needle, 0 if absent."""

    type = sa.Integer()
    inherit_cache = True
    name = "text_position"


class ascii_lower(FunctionElement[str]):
    """``lower`` of the ASCII letters only."""

    type = sa.String()
    inherit_cache = True
    name = "ascii_lower"


class ascii_upper(FunctionElement[str]):
    """``upper`` of the ASCII letters only."""

    type = sa.String()
    inherit_cache = True
    name = "ascii_upper"


class parenthesized(FunctionElement[bool]):
    """A condition in parentheses that SQLAlchemy will not flatten into its parent."""

    type = sa.Boolean()
    inherit_cache = True
    name = "parenthesized"


class non_negative(FunctionElement[int]):
    """``x`` clamped at 0, NULL for NULL, naming ``x`` once: ``max(x, 0)`` on SQLite,
    ``int4larger(x, 0)`` on PostgreSQL (the strict function behind ``max(int4)``;
    ``greatest`` would turn NULL into 0)."""

    type = sa.Integer()
    inherit_cache = True
    name = "non_negative"


def _args(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(arg, **kw) for arg in element.clauses]


@compiles(code_point_order)
def _code_point_order(element: code_point_order, compiler: SQLCompiler, **kw: Any) -> str:
    (inner,) = element.clauses
    return str(compiler.process(inner.self_group(), **kw))


@compiles(code_point_order, "postgresql")
def _code_point_order_pg(element: code_point_order, compiler: SQLCompiler, **kw: Any) -> str:
    (inner,) = element.clauses
    return compiler.process(sa.collate(inner, "C"), **kw)


@compiles(text_position)
def _text_position(element: text_position, compiler: SQLCompiler, **kw: Any) -> str:
    return "instr({}, {})".format(*_args(element, compiler, **kw))


@compiles(text_position, "postgresql")
def _text_position_pg(element: text_position, compiler: SQLCompiler, **kw: Any) -> str:
    return "strpos({}, {})".format(*_args(element, compiler, **kw))


@compiles(parenthesized)
def _parenthesized(element: parenthesized, compiler: SQLCompiler, **kw: Any) -> str:
    (inner,) = element.clauses
    return f"({compiler.process(inner, **kw)})"


@compiles(non_negative)
def _non_negative(element: non_negative, compiler: SQLCompiler, **kw: Any) -> str:
    return "max({}, 0)".format(*_args(element, compiler, **kw))


@compiles(non_negative, "postgresql")
def _non_negative_pg(element: non_negative, compiler: SQLCompiler, **kw: Any) -> str:
    return "int4larger({}, 0)".format(*_args(element, compiler, **kw))


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = _UPPER.lower()


@compiles(ascii_lower)
def _ascii_lower(element: ascii_lower, compiler: SQLCompiler, **kw: Any) -> str:
    return "lower({})".format(*_args(element, compiler, **kw))


@compiles(ascii_lower, "postgresql")
def _ascii_lower_pg(element: ascii_lower, compiler: SQLCompiler, **kw: Any) -> str:
    return "translate({}, '{}', '{}')".format(*_args(element, compiler, **kw), _UPPER, _LOWER)


@compiles(ascii_upper)
def _ascii_upper(element: ascii_upper, compiler: SQLCompiler, **kw: Any) -> str:
    return "upper({})".format(*_args(element, compiler, **kw))


@compiles(ascii_upper, "postgresql")
def _ascii_upper_pg(element: ascii_upper, compiler: SQLCompiler, **kw: Any) -> str:
    return "translate({}, '{}', '{}')".format(*_args(element, compiler, **kw), _LOWER, _UPPER)


# -- the compiler ------------------------------------------------------------------------


class _Compiler:
    """Two views of a node: as a condition (``condition``) and as a value (``value``).

    A condition may be NULL where the filter is false; that is harmless under AND, OR and
    WHERE, and :meth:`definite` folds it to false where it is not (under ``not`` and
    where a condition is compared as a value).
    """

    def __init__(self, columns: Columns) -> None:
        self.columns = columns

    def unfilterable(self, expr: Expr) -> bool:
        stack = [expr]
        while stack:
            node = stack.pop()
            if isinstance(node, PropertyRef) and self._column_or_none(node.name) is None:
                return True
            stack.extend(children(node))
        return False

    def _column_or_none(self, name: str) -> ColumnElement[Any] | None:
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(f"no column given for property {name!r}") from None

    def column(self, name: str) -> ColumnElement[Any]:
        column = self._column_or_none(name)
        assert column is not None, f"{name} is not filterable"
        return column

    # -- conditions -------------------------------------------------------------------

    def condition(self, expr: Expr) -> ColumnElement[bool]:
        if isinstance(expr, And):
            return self._junction(sa.and_, expr.operands)
        if isinstance(expr, Or):
            return self._junction(sa.or_, expr.operands)
        if isinstance(expr, Not):
            return sa.not_(self.definite(expr.operand))
        if isinstance(expr, Compare):
            return self._compare(expr)
        if isinstance(expr, Call):
            return self._predicate(expr)
        if isinstance(expr, Literal):
            return sa.true() if expr.value else sa.false()
        if self.unfilterable(expr):
            return sa.false()
        return self.column(expr.name)

    def definite(self, expr: Expr) -> ColumnElement[bool]:
        """The condition, false instead of NULL."""
        condition = self.condition(expr)
        if isinstance(expr, Not | Literal):
            return condition
        return sa.func.coalesce(condition, sa.false(), type_=sa.Boolean())

    def _junction(self, combine: Any, operands: tuple[Expr, ...]) -> ColumnElement[bool]:
        clauses: list[ColumnElement[bool]] = [self.condition(o) for o in operands]
        while len(clauses) > JUNCTION_CHUNK:
            clauses = [
                parenthesized(combine(*clauses[i : i + JUNCTION_CHUNK]))
                for i in range(0, len(clauses), JUNCTION_CHUNK)
            ]
        result: ColumnElement[bool] = combine(*clauses)
        return result

    def _compare(self, node: Compare) -> ColumnElement[bool]:
        if self.unfilterable(node):
            return sa.false()
        op, left, right = node.op, node.left, node.right
        null_left, null_right = _is_null(left), _is_null(right)
        if null_left or null_right:
            if null_left and null_right:
                return sa.true() if op is CompareOp.EQ else sa.false()
            other = self.value(right if null_left else left)
            return other.is_(None) if op is CompareOp.EQ else other.is_not(None)
        lhs, rhs = self._operands(left, right)
        if op is CompareOp.EQ:
            if isinstance(left, Literal) or isinstance(right, Literal):
                return lhs == rhs
            return lhs.is_not_distinct_from(rhs)
        if op is CompareOp.NE:
            return lhs.is_distinct_from(rhs)
        if type_of(left) is ValueType.STRING:
            lhs, rhs = code_point_order(lhs), code_point_order(rhs)
        if op is CompareOp.GT:
            return lhs > rhs
        if op is CompareOp.GE:
            return lhs >= rhs
        if op is CompareOp.LT:
            return lhs < rhs
        return lhs <= rhs

    def _operands(self, left: Expr, right: Expr) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        """Both sides; a literal is bound with the SQL type of the other side."""
        lhs = None if isinstance(left, Literal) else self.value(left)
        rhs = None if isinstance(right, Literal) else self.value(right)
        if lhs is None:
            assert isinstance(left, Literal)
            lhs = self.bind(left, rhs)
        if rhs is None:
            assert isinstance(right, Literal)
            rhs = self.bind(right, lhs)
        return lhs, rhs

    def _predicate(self, node: Call) -> ColumnElement[bool]:
        """The boolean string functions of §4.5."""
        if self.unfilterable(node):
            return sa.false()
        first, second = node.args
        if node.name == "substringof":
            return text_position(self.value(second), self.value(first)) > 0
        subject = self.value(first)
        if node.name == "startswith":
            return self._startswith(subject, second)
        return self._endswith(subject, second)

    def _startswith(self, subject: ColumnElement[Any], prefix: Expr) -> ColumnElement[bool]:
        if not isinstance(prefix, Literal):
            pattern = self.value(prefix)
            return _substr(subject, sa.literal(1), sa.func.length(pattern)) == pattern
        assert isinstance(prefix.value, str)
        text = prefix.value
        if not text:
            return subject.is_not(None)
        pattern = self.bind(prefix, subject)
        exact = _substr(subject, sa.literal(1), sa.literal(len(text))) == pattern
        if not isinstance(subject, ColumnClause):
            return exact
        lower = code_point_order(subject) >= code_point_order(pattern)
        upper_text = _successor(text)
        if upper_text is None:
            return sa.and_(lower, exact)
        upper = sa.literal(upper_text, pattern.type)
        return sa.and_(lower, code_point_order(subject) < code_point_order(upper), exact)

    def _endswith(self, subject: ColumnElement[Any], suffix: Expr) -> ColumnElement[bool]:
        if isinstance(suffix, Literal):
            assert isinstance(suffix.value, str)
            if not suffix.value:
                return subject.is_not(None)
            pattern = self.bind(suffix, subject)
            start = sa.func.length(subject) - sa.literal(len(suffix.value) - 1)
        else:
            pattern = self.value(suffix)
            start = sa.func.length(subject) - sa.func.length(pattern) + sa.literal(1)
        return _substr(subject, start) == pattern

    # -- values -------------------------------------------------------------------------

    def value(self, expr: Expr) -> ColumnElement[Any]:
        if isinstance(expr, Literal):
            return self.bind(expr, None)
        if isinstance(expr, PropertyRef):
            return self.column(expr.name)
        if type_of(expr) is ValueType.BOOLEAN:
            return self.definite(expr)
        assert isinstance(expr, Call)
        return self._function(expr)

    def _function(self, node: Call) -> ColumnElement[Any]:
        """The value-returning string functions of §4.5."""
        name = node.name
        args = [self.value(arg) for arg in node.args]
        if name == "length":
            return sa.func.length(args[0], type_=sa.Integer())
        if name == "indexof":
            return text_position(args[0], args[1]) - sa.literal(1)
        if name == "tolower":
            return ascii_lower(args[0])
        if name == "toupper":
            return ascii_upper(args[0])
        if name == "trim":
            return sa.func.trim(args[0], type_=sa.String())
        if name == "concat":
            return sa.type_coerce(args[0], sa.String()).concat(args[1])
        if name == "replace":
            text, find, replacement = args
            return sa.func.replace(text, find, sa.func.coalesce(replacement, ""), type_=sa.String())
        assert name == "substring"
        start = self._start(node.args[1], args[1])
        if len(args) == 2:
            return _substr(args[0], start)
        return _substr(args[0], start, self._offset(node.args[2], args[2]))

    def _start(self, expr: Expr, value: ColumnElement[Any]) -> ColumnElement[Any]:
        """``substring``'s 0-based start as ``substr``'s 1-based one. A literal is added to
        here and kept within Int32, where PostgreSQL's ``int4`` would overflow at the
        largest start (no string is that long, so the substring is empty all the same)."""
        if isinstance(expr, Literal):
            assert isinstance(expr.value, int)
            return sa.literal(min(expr.value + 1, _INT32_MAX), sa.Integer())
        return non_negative(value) + sa.literal(1)

    def _offset(self, expr: Expr, value: ColumnElement[Any]) -> ColumnElement[Any]:
        """A 0-based position or a length, clamped at 0: SQLite's ``substr`` counts
        negative positions from the end, PostgreSQL's refuses a negative length."""
        if isinstance(expr, Literal):
            return sa.literal(expr.value, sa.Integer())
        return non_negative(value)

    def bind(self, literal: Literal, peer: ColumnElement[Any] | None) -> ColumnElement[Any]:
        """A literal as a bound parameter, typed like ``peer`` where that fits, so that
        the column's type processes it (SQLite's DateTime storage, for one)."""
        value: Any = literal.value
        t = literal.edm_type
        type_: TypeEngine[Any]
        if t is ValueType.STRING:
            type_ = _peer_type(peer, str) or sa.String()
        elif t is ValueType.DATETIME:
            type_ = _peer_type(peer, datetime) or sa.DateTime()
            if getattr(type_, "timezone", False):
                value = value.replace(tzinfo=UTC)
        elif t in (ValueType.INT32, ValueType.INT64):
            type_ = _peer_type(peer, int) or sa.BigInteger()
            if not -_INT32_MAX - 1 <= value <= _INT32_MAX:
                type_ = sa.BigInteger()  # an Int64 beside an Int32 (``length(…)``) on PostgreSQL
        elif t is ValueType.DECIMAL:
            type_ = sa.Numeric(asdecimal=True)
        elif t in (ValueType.DOUBLE, ValueType.SINGLE):
            type_ = sa.Float()
        else:
            type_ = sa.Boolean()
        return sa.literal(value, type_)


def _is_null(expr: Expr) -> bool:
    return isinstance(expr, Literal) and expr.edm_type is ValueType.NULL


def _peer_type(peer: ColumnElement[Any] | None, python_type: type) -> TypeEngine[Any] | None:
    if peer is None:
        return None
    try:
        matches = peer.type.python_type is python_type
    except NotImplementedError:
        return None
    return peer.type if matches else None


def _substr(*args: ColumnElement[Any]) -> ColumnElement[str]:
    return sa.func.substr(*args, type_=sa.String())


def _successor(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``, by code point.

    ``None`` when there is none (the prefix is all U+10FFFF). Surrogates are skipped: no
    stored string can hold one.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:
                code = 0xE000
            return "".join(chars) + chr(code)
    return None

"""``$filter`` and ``$orderby`` expressions: tokenizer, parser and typed AST.

Lives here: the OData V2 common expression grammar as far as the Partner Directory needs it
(OData V2 URI conventions §4.2 ``$orderby`` and §4.5 ``$filter``; ABNF in [MS-ODATA]
§2.2.3.6.1.1 "Common Expression Syntax"), the literal forms of [MS-ODATA] §2.2.2
"Abstract Type System", and the static type rules that can be checked without data.
Must not know: SQL, HTTP, any I/O. ``store.filtering`` turns the AST into SQL.

Operator precedence, tightest first (§4.5): grouping ``( )``, primary (function calls),
unary ``not``, relational ``gt ge lt le``, equality ``eq ne``, ``and``, ``or``. So
``not Pid eq 'a'`` applies ``not`` to ``Pid`` and is refused; write ``not (Pid eq 'a')``.
Arithmetic (``add sub mul div mod``, unary ``-``) is not supported.

Every problem in the text is a :class:`~partnergate.odata.errors.BadRequest` whose message
names the option and the 1-based character position.

The cost of evaluating an expression is bounded here, before any SQL exists, by rules on
its text alone: :data:`MAX_EXPRESSION_LENGTH` characters (which bounds every literal),
:data:`MAX_DEPTH` levels, no string longer than :data:`MAX_STRING_LENGTH` in the worst case,
and :data:`MAX_COST` characters read or computed per row. The time a query may take in the
database is bounded by the store.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple, NoReturn, TypeAlias

from ..model.entities import EntityType
from .errors import BadRequest

MAX_EXPRESSION_LENGTH = 8192
"""Longest ``$filter``/``$orderby`` text accepted, in characters."""

MAX_DEPTH = 10
"""Tallest syntax tree accepted. ``a or b or c`` is one level however long, and parentheses
alone add none; the filters SAP's clients send are three or four levels high. The bound
comes from the databases: SQLite's parser stack holds 100 entries, so it refuses SQL that
nests function calls about 30 deep, and one level of the tree can cost two or three calls
(``replace(x, y, z)`` is ``replace(x, y, coalesce(z, ''))``, ``substring(s, indexof(…))``
is ``substr(s, max(instr(…) - 1, 0) + 1)``). Ten levels leave a margin of two; a taller
filter is a 400 here rather than a database error later."""

MAX_STRING_LENGTH = 16384
"""Longest string a ``$filter``/``$orderby`` may compute, in characters, in the worst case.

The rule is static, checked as the tree is built, so that no data can make a query grow
past it: a property counts as long as its MaxLength (:data:`UNDECLARED_LENGTH` if it has
none), a literal as its text, and each function as the most it can return from arguments
that long: ``concat`` the sum, ``replace`` every possible match of ``find`` replaced
(a computed ``find`` is taken as one character long), ``substring``/``trim``/``tolower``/
``toupper`` no more than their argument. ``replace(Name, 'o', 'ooo…')`` would otherwise
multiply each row's value by the replacement's length at every level of nesting; here it
is a 400 that names the limit. Twice the longest MaxLength of the directory, so that any
property can still be changed by ``replace``/``concat`` with room to spare."""

UNDECLARED_LENGTH = 8192
"""How long a property without a MaxLength (the message log's texts) counts for
:data:`MAX_STRING_LENGTH` and :data:`MAX_COST`: the longest MaxLength of the directory."""

MAX_COST = 1 << 20
"""Most characters a ``$filter``/``$orderby`` may read or compute for each row, in the worst
case: the sum over its nodes of each string's worst-case length (see
:data:`MAX_STRING_LENGTH`), every other node counting one. It bounds the work per row of
many terms over long values (``substringof('x', Sender) or …`` a hundred times); the
time a whole query may take is bounded by the store (the ``query_time_limit`` setting).
A literal is bounded by :data:`MAX_EXPRESSION_LENGTH` and counts here by its length."""


class ValueType(StrEnum):
    """The static type of an expression: an EDM primitive type, or ``null``.

    A superset of :class:`~partnergate.model.entities.EdmType`: the literal forms of
    [MS-ODATA] §2.2.2 include types no property of the directory has.
    """

    NULL = "null"
    STRING = "Edm.String"
    BINARY = "Edm.Binary"
    BOOLEAN = "Edm.Boolean"
    INT32 = "Edm.Int32"
    INT64 = "Edm.Int64"
    DECIMAL = "Edm.Decimal"
    DOUBLE = "Edm.Double"
    SINGLE = "Edm.Single"
    DATETIME = "Edm.DateTime"


NUMERIC_TYPES = frozenset(
    {ValueType.INT32, ValueType.INT64, ValueType.DECIMAL, ValueType.DOUBLE, ValueType.SINGLE}
)


class CompareOp(StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"


EQUALITY_OPS = frozenset({CompareOp.EQ, CompareOp.NE})
RELATIONAL_OPS = frozenset({CompareOp.GT, CompareOp.GE, CompareOp.LT, CompareOp.LE})

LiteralValue: TypeAlias = str | int | Decimal | float | bool | datetime | None


@dataclass(frozen=True)
class Literal:
    """A constant: ``'text'`` → str, ``5``/``5L`` → int, ``1.5``/``1.5M`` → Decimal,
    ``1.5d``/``1.5f`` → float, ``true`` → bool, ``datetime'…'`` → naive UTC datetime,
    ``null`` → None."""

    value: LiteralValue
    edm_type: ValueType


@dataclass(frozen=True)
class PropertyRef:
    """A property of the entity type being filtered, or a member of one of its complex
    values by its path (``IntegrationArtifact/Id``), with its declared type."""

    name: str
    edm_type: ValueType


@dataclass(frozen=True)
class Compare:
    op: CompareOp
    left: Expr
    right: Expr


@dataclass(frozen=True)
class And:
    """Conjunction of two or more conditions; ``a and b and c`` is one node."""

    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    """Disjunction of two or more conditions; ``a or b or c`` is one node."""

    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class Call:
    """A call of one of :data:`FUNCTIONS`, arguments already type-checked."""

    name: str
    args: tuple[Expr, ...]


Expr: TypeAlias = Literal | PropertyRef | Compare | And | Or | Not | Call
"""Any node of the syntax tree; a runtime union, so ``isinstance(x, Expr)`` works."""


@dataclass(frozen=True)
class OrderBy:
    """One key of ``$orderby``: an expression and its direction."""

    expr: Expr
    descending: bool = False


@dataclass(frozen=True)
class Signature:
    params: tuple[ValueType, ...]
    result: ValueType
    optional: int = 0
    """How many trailing parameters may be left out."""


_S, _I = ValueType.STRING, ValueType.INT32

FUNCTIONS: dict[str, Signature] = {
    "substringof": Signature((_S, _S), ValueType.BOOLEAN),
    "startswith": Signature((_S, _S), ValueType.BOOLEAN),
    "endswith": Signature((_S, _S), ValueType.BOOLEAN),
    "length": Signature((_S,), _I),
    "indexof": Signature((_S, _S), _I),
    "replace": Signature((_S, _S, _S), _S),
    "substring": Signature((_S, _I, _I), _S, optional=1),
    "tolower": Signature((_S,), _S),
    "toupper": Signature((_S,), _S),
    "trim": Signature((_S,), _S),
    "concat": Signature((_S, _S), _S),
}
"""The string functions of OData V2 URI conventions §4.5, with their signatures.

``substringof(a, b)`` is true when ``b`` contains ``a``; ``indexof`` and ``substring``
count from 0. The date and math functions (``year``, ``round``, …) are not offered.
"""


def type_of(expr: Expr) -> ValueType:
    """The static type of an expression (no recursion: a node's type is local)."""
    if isinstance(expr, Literal | PropertyRef):
        return expr.edm_type
    if isinstance(expr, Call):
        return FUNCTIONS[expr.name].result
    return ValueType.BOOLEAN


def parse_filter(text: str, entity_type: EntityType) -> Expr:
    """Parse and type-check ``$filter`` text (already percent-decoded) into a condition."""
    parser = _Parser(text, entity_type, "$filter")
    expr = parser.expression()
    parser.expect_end()
    if type_of(expr) is not ValueType.BOOLEAN:
        parser.fail(f"the expression is {_describe(expr)}, not a condition", 0)
    return expr


def parse_orderby(text: str, entity_type: EntityType) -> tuple[OrderBy, ...]:
    """Parse ``$orderby`` text: comma-separated expressions, each optionally ``asc``/``desc``."""
    parser = _Parser(text, entity_type, "$orderby")
    keys: list[OrderBy] = []
    while True:
        start = parser.peek().pos
        expr = parser.expression()
        binary_property = isinstance(expr, PropertyRef) and type_of(expr) is ValueType.BINARY
        if type_of(expr) not in _ORDERABLE and not binary_property:
            parser.fail(f"cannot order by {_describe(expr)}", start)
        if not isinstance(expr, PropertyRef | Call):
            parser.fail("each key must be a property or a function of properties", start)
        token = parser.peek()
        descending = False
        if token.kind == "name" and token.text in ("asc", "desc"):
            parser.advance()
            descending = token.text == "desc"
        keys.append(OrderBy(expr, descending))
        token = parser.peek()
        if token.kind == "end":
            return tuple(keys)
        if token.kind != ",":
            parser.fail(f"expected ',' or the end, found {_shown(token)}", token.pos)
        parser.advance()


_ORDERABLE = NUMERIC_TYPES | {ValueType.STRING, ValueType.DATETIME}
"""What ``$orderby`` orders by; an ``Edm.Binary`` property too, by its bytes (SAP's spec of
``BinaryParameters`` lists ``$orderby=Value``), though a binary value has no comparison
operators in ``$filter``."""

_KEYWORDS = frozenset({"and", "or", "not", *(op.value for op in CompareOp)})
_ARITHMETIC = frozenset({"add", "sub", "mul", "div", "mod"})
_NOT_OFFERED = frozenset(
    "year month day hour minute second round floor ceiling isof cast contains now".split()
)
"""Functions of OData (V2 date and math, V4 ``contains``) named as not offered."""

_TOKEN = re.compile(
    r"""
      (?P<ws>[ \t\r\n]+)
    | (?P<string>'(?:[^']|'')*')
    | (?P<typed>[A-Za-z][A-Za-z0-9]*'(?:[^']|'')*')
    | (?P<number>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?P<suffix>[A-Za-z_][A-Za-z0-9_]*)?
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<punct>[(),])
    """,
    re.VERBOSE,
)

_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?Z?")
"""[MS-ODATA] §2.2.2 ``datetimeUriLiteral``: seconds and up to 7 fractional digits optional."""

_OFFSET = re.compile(r"[+-]\d{2}:?\d{2}$")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


_BINARY_POWER = {
    "or": 1,
    "and": 2,
    **{op.value: 3 for op in EQUALITY_OPS},
    **{op.value: 4 for op in RELATIONAL_OPS},
}
"""How tightly each binary operator binds (§4.5 precedence); all associate to the left."""

_NOT_POWER = 5


class _Pending(NamedTuple):
    """An operator, open parenthesis or open call waiting on the parser's stack."""

    kind: str
    """``binary``, ``not``, ``group`` or ``call``."""
    text: str
    pos: int
    power: int
    base: int = 0
    """For ``group``/``call``: how many operands were stacked before it opened."""


class _Token(NamedTuple):
    kind: str
    """``name``, ``literal``, ``(``, ``)``, ``,`` or ``end``."""
    text: str
    pos: int
    literal: Literal | None = None


class _Parser:
    """Operator-precedence parsing of a token list with explicit stacks, so that no input
    can exhaust the Python stack; type checks run as each node is built."""

    def __init__(self, text: str, entity_type: EntityType, option: str) -> None:
        self.text = text
        self.entity_type = entity_type
        self.option = option
        if len(text) > MAX_EXPRESSION_LENGTH:
            self.fail(f"longer than {MAX_EXPRESSION_LENGTH} characters", None)
        self.tokens = list(self._tokenize())
        self.index = 0
        self.spans: dict[int, int] = {}
        """Start position of each node built, by ``id``, for messages about operands."""
        self.heights: dict[int, int] = {}
        self.lengths: dict[int, int] = {}
        """Worst-case length of each string node built, by ``id`` (:data:`MAX_STRING_LENGTH`)."""
        self.costs: dict[int, int] = {}
        """Worst-case characters each node's subtree reads or computes (:data:`MAX_COST`)."""

    # -- errors and token access --------------------------------------------------

    def fail(self, message: str, pos: int | None) -> NoReturn:
        where = "" if pos is None else f" at position {pos + 1}"
        raise BadRequest(f"Invalid {self.option}: {message}{where}")

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def expect_end(self) -> None:
        token = self.peek()
        if token.kind != "end":
            self.fail(f"expected an operator or the end, found {_shown(token)}", token.pos)

    def _node(self, node: Expr, pos: int) -> Expr:
        """Record where a node starts and refuse it if the tree grows too tall, or if it
        could compute too long a string or cost too much per row."""
        height = 1 + max((self.heights.get(id(c), 1) for c in children(node)), default=0)
        if height > MAX_DEPTH:
            self.fail(f"expression nested more than {MAX_DEPTH} levels deep", pos)
        length = self._worst_length(node)
        if length > MAX_STRING_LENGTH:
            self.fail(
                f"{_describe(node)} can produce a string of {length} characters; "
                f"at most {MAX_STRING_LENGTH} are allowed",
                pos,
            )
        cost = max(length, 1) + sum(self.costs.get(id(c), 1) for c in children(node))
        if cost > MAX_COST:
            self.fail(
                f"the expression can read or compute {cost} characters for each row; "
                f"at most {MAX_COST} are allowed",
                pos,
            )
        self.spans[id(node)] = pos
        self.heights[id(node)] = height
        self.lengths[id(node)] = length
        self.costs[id(node)] = cost
        return node

    def _worst_length(self, node: Expr) -> int:
        """The longest string ``node`` can be, from its children's (0 if not a string)."""
        if type_of(node) is not ValueType.STRING:
            return 0
        if isinstance(node, Literal):
            assert isinstance(node.value, str)
            return len(node.value)
        if isinstance(node, PropertyRef):
            found = self.entity_type.filterable(node.name)
            declared = found.max_length if found is not None else None
            return UNDECLARED_LENGTH if declared is None else declared
        assert isinstance(node, Call)
        sizes = [self.lengths.get(id(arg), 0) for arg in node.args]
        if node.name == "concat":
            return sizes[0] + sizes[1]
        if node.name == "replace":
            return _replaced_length(*node.args, *sizes)
        if node.name == "substring" and len(node.args) == 3:
            count = node.args[2]
            if isinstance(count, Literal):
                assert isinstance(count.value, int)
                return min(sizes[0], count.value)
        return sizes[0]

    def _pos(self, node: Expr) -> int:
        return self.spans.get(id(node), 0)

    # -- tokenizer ------------------------------------------------------------------

    def _tokenize(self) -> Iterator[_Token]:
        text, pos = self.text, 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                if text[pos] == "'":
                    self.fail("unterminated string literal", pos)
                if text[pos] == "-":
                    self.fail("unary minus is only supported in numeric literals", pos)
                self.fail(f"unexpected character {text[pos]!r}", pos)
            kind = match.lastgroup
            if kind == "suffix":
                kind = "number"
            value = match.group(0)
            if kind == "string":
                yield _Token("literal", value, pos, self._string(value[1:-1], pos))
            elif kind == "typed":
                yield _Token("literal", value, pos, self._typed(value, pos))
            elif kind == "number":
                literal = self._number(match.group("number"), match.group("suffix") or "", pos)
                yield _Token("literal", value, pos, literal)
            elif kind == "name":
                if text.startswith("'", match.end()):
                    self.fail(f"unterminated {clip(value)}'…' literal", pos)
                yield _Token("name", value, pos)
            elif kind == "punct":
                yield _Token(value, value, pos)
            pos = match.end()
        yield _Token("end", "", len(text))

    def _string(self, quoted: str, pos: int) -> Literal:
        value = quoted.replace("''", "'")
        if _UNSTORABLE.search(value):
            self.fail("string literal contains NUL or an unpaired surrogate", pos)
        return Literal(value, ValueType.STRING)

    def _typed(self, token: str, pos: int) -> Literal:
        prefix, _, rest = token.partition("'")
        body = rest[:-1]
        if prefix in _KEYWORDS:
            self.fail(f"expected a space after '{prefix}'", pos)
        if prefix.lower() != "datetime":
            self.fail(f"{clip(prefix)}'…' literals are not supported", pos)
        match = _DATETIME.fullmatch(body)
        shown = clip(body)
        if match is None:
            if "T" in body and _OFFSET.search(body):
                self.fail(
                    f"datetime'{shown}' has a time-zone offset; datetime literals are UTC "
                    "and take none",
                    pos,
                )
            self.fail(f"datetime'{shown}' is not of the form yyyy-mm-ddThh:mm[:ss[.fffffff]]", pos)
        year, month, day, hour, minute, second, fraction = match.groups()
        micro = int((fraction or "").ljust(6, "0")[:6])
        fields = (int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
        value = _datetime_or_none(*fields, micro)
        if value is None:
            self.fail(f"datetime'{shown}' is not a valid date and time", pos)
        return Literal(value, ValueType.DATETIME)

    def _number(self, digits: str, suffix: str, pos: int) -> Literal:
        integral = "." not in digits and "e" not in digits.lower()
        kind = suffix.lower()
        if kind in ("", "l") and integral:
            magnitude = digits.lstrip("-").lstrip("0") or "0"
            if len(magnitude) > 19:
                self.fail(f"integer {clip(digits)} is out of range for Edm.Int64", pos)
            value = -int(magnitude) if digits.startswith("-") else int(magnitude)
            if kind == "" and _INT32[0] <= value <= _INT32[1]:
                return Literal(value, ValueType.INT32)
            if _INT64[0] <= value <= _INT64[1]:
                return Literal(value, ValueType.INT64)
            self.fail(f"integer {clip(digits)} is out of range for Edm.Int64", pos)
        if kind == "m" or (kind == "" and "e" not in digits.lower()):
            whole, _, frac = digits.lstrip("-").partition(".")
            if "e" in digits.lower() or len(whole) > 29 or len(frac) > 29:
                text = clip(digits + suffix)
                self.fail(f"{text} is not an Edm.Decimal (at most 29.29 digits)", pos)
            return Literal(Decimal(digits), ValueType.DECIMAL)
        if kind in ("d", "f", ""):
            number = float(digits)
            single = kind == "f"
            if not math.isfinite(number) or (single and abs(number) > 3.4028234663852886e38):
                self.fail(f"{clip(digits + suffix)} is out of range", pos)
            return Literal(number, ValueType.SINGLE if single else ValueType.DOUBLE)
        self.fail(f"invalid number {clip(digits + suffix)}", pos)

    # -- grammar --------------------------------------------------------------------

    def expression(self) -> Expr:
        """Parse one expression by operator precedence, with explicit stacks.

        No recursion, so parentheses cost no Python stack; only the height of the tree
        built is limited. A token that cannot continue the expression outside
        parentheses (``,``, ``asc``, the end) ends it and is left for the caller.
        """
        operands: list[Expr] = []
        pending: list[_Pending] = []
        expect_operand = True
        while True:
            token = self.peek()
            if expect_operand:
                if token.kind == "(":
                    pending.append(_Pending("group", "(", token.pos, 0, len(operands)))
                elif token.kind == "name" and token.text == "not":
                    pending.append(_Pending("not", "not", token.pos, _NOT_POWER))
                elif (
                    token.kind == ")"
                    and pending
                    and pending[-1].kind == "call"
                    and pending[-1].base == len(operands)
                ):
                    self.advance()
                    self._close_call(pending.pop(), operands)
                    expect_operand = False
                    continue
                elif (
                    token.kind == "name"
                    and token.text not in _KEYWORDS
                    and self._peek_next().kind == "("
                ):
                    self._known_function(token)
                    self.advance()
                    pending.append(_Pending("call", token.text, token.pos, 0, len(operands)))
                else:
                    operands.append(self._operand(token))
                    expect_operand = False
                self.advance()
                continue
            if token.kind == "name" and token.text in _ARITHMETIC:
                self.fail(f"arithmetic operator '{token.text}' is not supported", token.pos)
            power = _BINARY_POWER.get(token.text) if token.kind == "name" else None
            if power is not None:
                self._reduce(pending, operands, power)
                pending.append(_Pending("binary", token.text, token.pos, power))
                self.advance()
                expect_operand = True
                continue
            self._reduce(pending, operands, 1)
            open_marker = pending[-1] if pending else None
            if token.kind == ")":
                if open_marker is None:
                    self.fail("')' without matching '('", token.pos)
                self.advance()
                pending.pop()
                if open_marker.kind == "call":
                    self._close_call(open_marker, operands)
                continue
            if token.kind == "," and open_marker is not None:
                if open_marker.kind != "call":
                    self.fail("',' outside a function's arguments", token.pos)
                self.advance()
                expect_operand = True
                continue
            if open_marker is not None:
                closing = (
                    "')'" if open_marker.kind == "group" else f"',' or ')' in {open_marker.text}(…)"
                )
                self.fail(f"expected {closing}, found {_shown(token)}", token.pos)
            break
        assert len(operands) == 1
        return operands[0]

    def _peek_next(self) -> _Token:
        return self.tokens[min(self.index + 1, len(self.tokens) - 1)]

    def _operand(self, token: _Token) -> Expr:
        if token.kind == "literal":
            assert token.literal is not None
            return self._node(token.literal, token.pos)
        if token.kind != "name":
            self.fail(f"expected an operand, found {_shown(token)}", token.pos)
        name = token.text
        if name in ("true", "false", "True", "False"):
            return self._node(Literal(name.lower() == "true", ValueType.BOOLEAN), token.pos)
        if name == "null":
            return self._node(Literal(None, ValueType.NULL), token.pos)
        if name in _KEYWORDS or name in _ARITHMETIC:
            self.fail(f"expected an operand, found '{name}'", token.pos)
        found = self.entity_type.filterable(name)
        if found is None:
            self.fail(
                f"property '{clip(name)}' does not exist in {self.entity_type.name}", token.pos
            )
        edm_type = ValueType(found.edm_type.value)
        return self._node(PropertyRef(name, edm_type), token.pos)

    def _known_function(self, token: _Token) -> None:
        if token.text not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            what = "is not supported" if token.text in _NOT_OFFERED else "is unknown"
            self.fail(f"function '{clip(token.text)}' {what} (supported: {known})", token.pos)

    def _reduce(self, pending: list[_Pending], operands: list[Expr], power: int) -> None:
        """Apply pending operators that bind at least as tightly as ``power``."""
        while pending and pending[-1].kind in ("binary", "not") and pending[-1].power >= power:
            op = pending.pop()
            if op.kind == "not":
                operand = operands.pop()
                if type_of(operand) is not ValueType.BOOLEAN:
                    self.fail(
                        f"'not' needs a condition but is applied to {_describe(operand)}; "
                        "'not' binds tighter than comparisons, write not (…)",
                        op.pos,
                    )
                operands.append(self._node(Not(operand), op.pos))
                continue
            right = operands.pop()
            left = operands.pop()
            if op.text in ("and", "or"):
                operands.append(self._junction(op, left, right))
            else:
                compare_op = CompareOp(op.text)
                self._check_compare(compare_op, left, right, op.pos)
                operands.append(self._node(Compare(compare_op, left, right), self._pos(left)))

    def _junction(self, op: _Pending, left: Expr, right: Expr) -> Expr:
        """``and``/``or`` of two conditions; nested ones of the same kind become one node."""
        node_type = And if op.text == "and" else Or
        parts: list[Expr] = []
        for side in (left, right):
            if type_of(side) is not ValueType.BOOLEAN:
                self.fail(
                    f"'{op.text}' needs conditions on both sides, not {_describe(side)}",
                    self._pos(side),
                )
            parts.extend(side.operands if isinstance(side, node_type) else (side,))
        return self._node(node_type(tuple(parts)), self._pos(left))

    def _close_call(self, marker: _Pending, operands: list[Expr]) -> None:
        args = operands[marker.base :]
        del operands[marker.base :]
        self._check_call(marker.text, args, marker.pos)
        operands.append(self._node(Call(marker.text, tuple(args)), marker.pos))

    # -- static types -------------------------------------------------------------

    def _check_compare(self, op: CompareOp, left: Expr, right: Expr, pos: int) -> None:
        """Operands must be of one family; ``null`` only with ``eq``/``ne`` (§4.5)."""
        lt, rt = type_of(left), type_of(right)
        if ValueType.NULL in (lt, rt):
            if op not in EQUALITY_OPS:
                self.fail(f"'{op.value}' cannot compare with null; use eq or ne", pos)
            return
        if ValueType.BINARY in (lt, rt):
            self.fail(
                f"Edm.Binary values cannot be compared ({_describe(left)} "
                f"{op.value} {_describe(right)})",
                pos,
            )
        if _family(lt) != _family(rt):
            self.fail(f"cannot compare {_describe(left)} with {_describe(right)}", pos)
        if op in RELATIONAL_OPS and lt is ValueType.BOOLEAN:
            self.fail(f"'{op.value}' does not apply to conditions", pos)

    def _check_call(self, name: str, args: list[Expr], pos: int) -> None:
        sig = FUNCTIONS[name]
        least, most = len(sig.params) - sig.optional, len(sig.params)
        if not least <= len(args) <= most:
            wanted = str(most) if least == most else f"{least} or {most}"
            noun = "argument" if most == 1 else "arguments"
            types = ", ".join(p.value for p in sig.params)
            self.fail(f"{name}({types}) takes {wanted} {noun}, got {len(args)}", pos)
        for number, (arg, param) in enumerate(zip(args, sig.params, strict=False), start=1):
            actual = type_of(arg)
            if actual is not param:
                self.fail(
                    f"argument {number} of {name} must be {param.value}, not {_describe(arg)}",
                    self._pos(arg),
                )
            if param is ValueType.INT32 and isinstance(arg, Literal):
                assert isinstance(arg.value, int)
                if arg.value < 0:
                    self.fail(f"argument {number} of {name} must not be negative", self._pos(arg))


def children(expr: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of a node."""
    if isinstance(expr, Compare):
        return (expr.left, expr.right)
    if isinstance(expr, And | Or):
        return expr.operands
    if isinstance(expr, Not):
        return (expr.operand,)
    if isinstance(expr, Call):
        return expr.args
    return ()


def _replaced_length(
    text: Expr, find: Expr, replacement: Expr, text_len: int, find_len: int, repl_len: int
) -> int:
    """The longest ``replace(text, find, replacement)`` can be: every match replaced.

    An empty ``find`` replaces nothing on both databases; a computed one may be a single
    character. A literal ``text`` and ``find`` give the exact number of matches.
    """
    if isinstance(find, Literal):
        if not find_len:
            return text_len
    else:
        find_len = 1
    if repl_len <= find_len:
        return text_len
    if isinstance(text, Literal) and isinstance(find, Literal):
        assert isinstance(text.value, str) and isinstance(find.value, str)
        matches = text.value.count(find.value)
    else:
        matches = text_len // find_len
    return text_len + matches * (repl_len - find_len)


def _datetime_or_none(*fields: int) -> datetime | None:
    try:
        return datetime(*fields)
    except ValueError:
        return None


def _family(t: ValueType) -> str:
    return "number" if t in NUMERIC_TYPES else t.value


def _describe(expr: Expr) -> str:
    """Name an operand for a message in terms the caller wrote."""
    if isinstance(expr, PropertyRef):
        return f"property '{expr.name}' ({expr.edm_type.value})"
    if isinstance(expr, Literal):
        if expr.edm_type is ValueType.NULL:
            return "null"
        return f"{clip(_literal_text(expr))} ({expr.edm_type.value})"
    if isinstance(expr, Call):
        return f"{expr.name}(…) ({type_of(expr).value})"
    return "a condition"


def _literal_text(literal: Literal) -> str:
    """The literal as it would be written in a URI ([MS-ODATA] §2.2.2)."""
    value, t = literal.value, literal.edm_type
    if t is ValueType.NULL:
        return "null"
    if t is ValueType.STRING:
        assert isinstance(value, str)
        return "'" + value.replace("'", "''") + "'"
    if t is ValueType.BOOLEAN:
        return "true" if value else "false"
    if isinstance(value, datetime):
        return f"datetime'{value.isoformat(timespec='microseconds')}'"
    suffix = {ValueType.INT64: "L", ValueType.DOUBLE: "d", ValueType.SINGLE: "f"}
    return f"{value}{suffix.get(t, '')}"


def _shown(token: _Token) -> str:
    return "the end of the expression" if token.kind == "end" else f"'{clip(token.text)}'"


def clip(text: str, limit: int = 40) -> str:
    """Caller's text quoted in a message, cut short: the message must stay small."""
    return text if len(text) <= limit else text[: limit - 1] + "…"

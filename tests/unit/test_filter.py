"""``$filter``/``$orderby`` parsing: OData V2 URI conventions §4.2 and §4.5, literal forms of
[MS-ODATA] §2.2.2, and the 400s every malformed or ill-typed expression must give."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from partnergate.model.entities import (
    ALTERNATIVE_PARTNER,
    BINARY_PARAMETER,
    CERTIFICATE_USER_MAPPING,
    STRING_PARAMETER,
    EntityType,
)
from partnergate.odata.errors import BadRequest
from partnergate.odata.filter import (
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
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
    parse_filter,
    parse_orderby,
    type_of,
)

S = ValueType.STRING
PID = PropertyRef("Pid", S)
ID = PropertyRef("Id", S)
VALUE = PropertyRef("Value", S)
CREATED = PropertyRef("CreatedTime", ValueType.DATETIME)
VALID_UNTIL = PropertyRef("ValidUntil", ValueType.INT64)


def lit(value: object) -> Literal:
    kinds = {str: S, bool: ValueType.BOOLEAN, int: ValueType.INT32}
    return Literal(value, kinds[type(value)])  # type: ignore[arg-type]


def eq(left: Expr, right: Expr) -> Compare:
    return Compare(CompareOp.EQ, left, right)


def sp(text: str) -> Expr:
    return parse_filter(text, STRING_PARAMETER)


def bad(text: str, entity_type: EntityType = STRING_PARAMETER) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_filter(text, entity_type)
    assert caught.value.status == 400
    assert caught.value.message.startswith("Invalid $filter: ")
    return caught.value.message


# -- structure and precedence ----------------------------------------------------------


def test_sap_client_filter_shapes() -> None:
    """The shapes SAP's own Partner Directory client sends (reference §1.8)."""
    assert sp("Pid eq 'P1'") == eq(PID, lit("P1"))
    assert sp("Pid eq 'P1' and startswith(Id,'interfaceDetermination_')") == And(
        (eq(PID, lit("P1")), Call("startswith", (ID, lit("interfaceDetermination_"))))
    )
    assert parse_filter("startswith(ContentType,'xsl')", BINARY_PARAMETER) == Call(
        "startswith", (PropertyRef("ContentType", S), lit("xsl"))
    )


def test_and_binds_tighter_than_or() -> None:
    a, b, c = (eq(PID, lit(x)) for x in "abc")
    assert sp("Pid eq 'a' or Pid eq 'b' and Pid eq 'c'") == Or((a, And((b, c))))
    assert sp("Pid eq 'a' and Pid eq 'b' or Pid eq 'c'") == Or((And((a, b)), c))


def test_parentheses_override_precedence() -> None:
    a, b, c = (eq(PID, lit(x)) for x in "abc")
    assert sp("Pid eq 'a' and (Pid eq 'b' or Pid eq 'c')") == And((a, Or((b, c))))


def test_chains_of_one_junction_are_one_node() -> None:
    """``a or (b or c)`` and ``((a or b) or c)`` mean ``a or b or c``: one flat node."""
    a, b, c, d = (eq(PID, lit(x)) for x in "abcd")
    assert sp("Pid eq 'a' or Pid eq 'b' or Pid eq 'c' or Pid eq 'd'") == Or((a, b, c, d))
    assert sp("((Pid eq 'a' or Pid eq 'b') or Pid eq 'c') or Pid eq 'd'") == Or((a, b, c, d))
    assert sp("Pid eq 'a' or (Pid eq 'b' or (Pid eq 'c' or Pid eq 'd'))") == Or((a, b, c, d))


def test_not_binds_tighter_than_comparison() -> None:
    """§4.5: unary ``not`` precedes the relational and equality operators."""
    assert sp("not startswith(Pid,'a')") == Not(Call("startswith", (PID, lit("a"))))
    assert sp("not (Pid eq 'a')") == Not(eq(PID, lit("a")))
    assert sp("not not (Pid eq 'a')") == Not(Not(eq(PID, lit("a"))))
    assert sp("not startswith(Pid,'a') and Id eq 'b'") == And(
        (Not(Call("startswith", (PID, lit("a")))), eq(ID, lit("b")))
    )
    message = bad("not Pid eq 'a'")
    assert "'not' needs a condition" in message and "write not (…)" in message


def test_relational_binds_tighter_than_equality() -> None:
    assert sp("Pid gt 'a' eq Id lt 'b'") == eq(
        Compare(CompareOp.GT, PID, lit("a")), Compare(CompareOp.LT, ID, lit("b"))
    )


def test_equality_chains_associate_left() -> None:
    assert sp("Pid eq 'a' eq true") == eq(eq(PID, lit("a")), lit(True))


@pytest.mark.parametrize("op", list(CompareOp))
def test_each_comparison_operator(op: CompareOp) -> None:
    assert sp(f"Value {op.value} 'x'") == Compare(op, VALUE, lit("x"))


def test_whitespace_is_free_between_tokens() -> None:
    assert sp("  ( Pid   eq\t'a' )  ") == eq(PID, lit("a"))
    assert sp("startswith( Pid ,'a' )") == Call("startswith", (PID, lit("a")))


def test_literal_on_the_left() -> None:
    assert sp("'a' eq Pid") == eq(lit("a"), PID)


# -- literals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("''", ""),
        ("'it''s'", "it's"),
        ("''''", "'"),
        ("'50%_'", "50%_"),
        ("'a b'", "a b"),
        ("'Äpfel €'", "Äpfel €"),
        ("'eq and or'", "eq and or"),
    ],
)
def test_string_literals(text: str, value: str) -> None:
    assert sp(f"Value eq {text}") == eq(VALUE, Literal(value, S))


@pytest.mark.parametrize(
    ("text", "value", "edm_type"),
    [
        ("5", 5, ValueType.INT32),
        ("-5", -5, ValueType.INT32),
        ("2147483647", 2147483647, ValueType.INT32),
        ("2147483648", 2147483648, ValueType.INT64),
        ("5L", 5, ValueType.INT64),
        ("5l", 5, ValueType.INT64),
        ("-9223372036854775808L", -(2**63), ValueType.INT64),
        ("0" * 5000 + "7", 7, ValueType.INT32),
        ("-0", 0, ValueType.INT32),
        ("1.5", Decimal("1.5"), ValueType.DECIMAL),
        ("1.5M", Decimal("1.5"), ValueType.DECIMAL),
        ("2m", Decimal(2), ValueType.DECIMAL),
        ("1.5d", 1.5, ValueType.DOUBLE),
        ("1.5D", 1.5, ValueType.DOUBLE),
        ("1e3", 1000.0, ValueType.DOUBLE),
        ("1.5E-2d", 0.015, ValueType.DOUBLE),
        ("2.5f", 2.5, ValueType.SINGLE),
    ],
)
def test_numeric_literals(text: str, value: object, edm_type: ValueType) -> None:
    parsed = parse_filter(f"ValidUntil eq {text}", CERTIFICATE_USER_MAPPING)
    assert parsed == eq(VALID_UNTIL, Literal(value, edm_type))  # type: ignore[arg-type]
    assert isinstance(parsed, Compare)
    assert type(parsed.right.value) is type(value)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("datetime'2014-09-01T00:00:00'", datetime(2014, 9, 1)),
        ("datetime'2014-09-01T10:20'", datetime(2014, 9, 1, 10, 20)),
        ("datetime'2014-09-01T10:20:30.5'", datetime(2014, 9, 1, 10, 20, 30, 500000)),
        ("datetime'2014-09-01T10:20:30.123'", datetime(2014, 9, 1, 10, 20, 30, 123000)),
        ("datetime'2014-09-01T10:20:30.1234567'", datetime(2014, 9, 1, 10, 20, 30, 123456)),
        ("datetime'2014-09-01T10:20:30Z'", datetime(2014, 9, 1, 10, 20, 30)),
    ],
)
def test_datetime_literals_are_naive_utc(text: str, value: datetime) -> None:
    parsed = sp(f"CreatedTime ge {text}")
    assert parsed == Compare(CompareOp.GE, CREATED, Literal(value, ValueType.DATETIME))
    assert isinstance(parsed, Compare) and isinstance(parsed.right, Literal)
    assert isinstance(parsed.right.value, datetime) and parsed.right.value.tzinfo is None


def test_boolean_and_null_literals() -> None:
    assert sp("true") == Literal(True, ValueType.BOOLEAN)
    assert sp("false") == Literal(False, ValueType.BOOLEAN)
    assert sp("True or False") == Or((lit(True), lit(False)))
    assert sp("CreatedBy eq null") == eq(PropertyRef("CreatedBy", S), Literal(None, ValueType.NULL))
    assert sp("null ne CreatedTime") == Compare(
        CompareOp.NE, Literal(None, ValueType.NULL), CREATED
    )


# -- functions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "call"),
    [
        ("startswith(Pid,'a')", Call("startswith", (PID, lit("a")))),
        ("endswith(Pid,'a')", Call("endswith", (PID, lit("a")))),
        ("substringof('a',Pid)", Call("substringof", (lit("a"), PID))),
        ("length(Pid) eq 3", eq(Call("length", (PID,)), lit(3))),
        ("indexof(Pid,'b') eq 1", eq(Call("indexof", (PID, lit("b"))), lit(1))),
        ("tolower(Pid) eq 'a'", eq(Call("tolower", (PID,)), lit("a"))),
        ("toupper(Pid) eq 'A'", eq(Call("toupper", (PID,)), lit("A"))),
        ("trim(Pid) eq 'a'", eq(Call("trim", (PID,)), lit("a"))),
        ("concat(Pid,Id) eq 'ab'", eq(Call("concat", (PID, ID)), lit("ab"))),
        ("replace(Pid,'a','b') eq 'b'", eq(Call("replace", (PID, lit("a"), lit("b"))), lit("b"))),
        ("substring(Pid,1) eq 'b'", eq(Call("substring", (PID, lit(1))), lit("b"))),
        ("substring(Pid,1,2) eq 'b'", eq(Call("substring", (PID, lit(1), lit(2))), lit("b"))),
    ],
)
def test_each_function(text: str, call: Expr) -> None:
    assert sp(text) == call


def test_functions_nest() -> None:
    assert sp("startswith(tolower(concat(Pid,Id)),trim('a'))") == Call(
        "startswith",
        (Call("tolower", (Call("concat", (PID, ID)),)), Call("trim", (lit("a"),))),
    )
    assert sp("substring(Pid, indexof(Pid, '_'), length(Id)) eq Id") == eq(
        Call(
            "substring",
            (PID, Call("indexof", (PID, lit("_"))), Call("length", (ID,))),
        ),
        ID,
    )


def test_static_types() -> None:
    assert type_of(Call("length", (PID,))) is ValueType.INT32
    assert type_of(Call("startswith", (PID, lit("a")))) is ValueType.BOOLEAN
    assert type_of(PID) is S
    assert type_of(Not(lit(True))) is ValueType.BOOLEAN


# -- errors ------------------------------------------------------------------------------


def test_unknown_property_is_named_and_nothing_else() -> None:
    message = bad("Secret eq 'a'")
    assert (
        message
        == "Invalid $filter: property 'Secret' does not exist in StringParameter at position 1"
    )


def test_properties_are_case_sensitive() -> None:
    assert "property 'pid'" in bad("pid eq 'a'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected an operand, found the end of the expression at position 1"),
        ("Pid eq", "expected an operand, found the end of the expression at position 7"),
        ("Pid eq 'a' and", "found the end of the expression at position 15"),
        ("Pid eq 'a", "unterminated string literal at position 8"),
        ("Pid eq 'a' Id eq 'b'", "expected an operator or the end, found 'Id' at position 12"),
        ("(Pid eq 'a'", "expected ')', found the end of the expression at position 12"),
        ("Pid eq 'a')", "')' without matching '(' at position 11"),
        ("()", "expected an operand, found ')' at position 2"),
        ("Pid eq 'a',Id eq 'b'", "found ',' at position 11"),
        ("(Pid, Id) eq 'a'", "',' outside a function's arguments at position 5"),
        ("Pid eq eq 'a'", "expected an operand, found 'eq' at position 8"),
        ("and Pid eq 'a'", "expected an operand, found 'and' at position 1"),
        ("Pid == 'a'", "unexpected character '=' at position 5"),
        ("Pid eq 'a' && Id eq 'b'", "unexpected character '&' at position 12"),
        ("Pid eq -Id", "unary minus is only supported in numeric literals at position 8"),
        ("Pid eq'a'", "expected a space after 'eq' at position 5"),
        ("Pid/ eq 'a'", "unexpected character '/' at position 4"),
        ("Pid/Name eq 'a'", "property 'Pid/Name' does not exist in StringParameter"),
        ("length(Pid) add 1 eq 4", "arithmetic operator 'add' is not supported at position 13"),
        ("startswith(Pid,'a'", "expected ',' or ')' in startswith(…), found the end"),
        ("startswith(Pid,'a',)", "expected an operand, found ')' at position 20"),
        ("startswith(Pid 'a')", "expected ',' or ')' in startswith(…), found ''a'' at position 16"),
    ],
)
def test_syntax_errors_name_the_position(text: str, expected: str) -> None:
    assert expected in bad(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Pid eq 1", "cannot compare property 'Pid' (Edm.String) with 1 (Edm.Int32)"),
        ("Pid eq 1.5d", "cannot compare property 'Pid' (Edm.String) with 1.5d (Edm.Double)"),
        ("Pid eq true", "cannot compare property 'Pid' (Edm.String) with true (Edm.Boolean)"),
        (
            "CreatedTime gt '2014-09-01'",
            "cannot compare property 'CreatedTime' (Edm.DateTime) with '2014-09-01' (Edm.String)",
        ),
        ("length(Pid) eq '3'", "cannot compare length(…) (Edm.Int32) with '3' (Edm.String)"),
        ("Pid gt null", "'gt' cannot compare with null; use eq or ne"),
        ("(Pid eq 'a') gt (Id eq 'b')", "'gt' does not apply to conditions"),
        ("Pid eq 'a' gt Id", "cannot compare property 'Pid' (Edm.String) with a condition"),
        ("Pid", "the expression is property 'Pid' (Edm.String), not a condition at position 1"),
        ("length(Pid)", "the expression is length(…) (Edm.Int32), not a condition"),
        ("'a'", "not a condition"),
        ("Pid eq 'a' and Id", "'and' needs conditions on both sides, not property 'Id'"),
        ("Pid or Id eq 'b'", "'or' needs conditions on both sides, not property 'Pid'"),
        ("length(1) eq 1", "argument 1 of length must be Edm.String, not 1 (Edm.Int32)"),
        ("startswith(Pid, null)", "argument 2 of startswith must be Edm.String, not null"),
        (
            "startswith(Pid, Pid eq 'a')",
            "argument 2 of startswith must be Edm.String, not a condition",
        ),
        ("substring(Pid, '1') eq 'a'", "argument 2 of substring must be Edm.Int32"),
        (
            "substring(Pid, 1L) eq 'a'",
            "argument 2 of substring must be Edm.Int32, not 1L (Edm.Int64)",
        ),
        ("substring(Pid, -1) eq 'a'", "argument 2 of substring must not be negative"),
        ("substring(Pid, 1, -2) eq 'a'", "argument 3 of substring must not be negative"),
        ("length() eq 1", "length(Edm.String) takes 1 argument, got 0"),
        ("startswith(Pid)", "startswith(Edm.String, Edm.String) takes 2 arguments, got 1"),
        ("substring(Pid,1,2,3) eq 'a'", "takes 2 or 3 arguments, got 4"),
        ("year(CreatedTime) eq 2014", "function 'year' is not supported (supported: concat, "),
        ("contains(Pid,'a')", "function 'contains' is not supported"),
        ("frobnicate(Pid)", "function 'frobnicate' is unknown"),
    ],
)
def test_type_errors(text: str, expected: str) -> None:
    assert expected in bad(text)


def test_binary_values_cannot_be_compared_except_with_null() -> None:
    assert "Edm.Binary values cannot be compared" in bad("Value eq 'x'", BINARY_PARAMETER)
    parsed = parse_filter("Value ne null", BINARY_PARAMETER)
    assert parsed == Compare(
        CompareOp.NE, PropertyRef("Value", ValueType.BINARY), Literal(None, ValueType.NULL)
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("99999999999999999999", "integer 99999999999999999999 is out of range for Edm.Int64"),
        ("9223372036854775808L", "out of range for Edm.Int64"),
        ("1.5L", "invalid number 1.5L"),
        ("5x", "invalid number 5x"),
        ("1e999d", "1e999d is out of range"),
        ("1e39f", "1e39f is out of range"),
        ("1e5M", "is not an Edm.Decimal"),
        ("0." + "1" * 30, "is not an Edm.Decimal"),
        ("datetime'2014-09-01'", "is not of the form yyyy-mm-ddThh:mm[:ss[.fffffff]]"),
        ("datetime'2014-13-01T00:00'", "datetime'2014-13-01T00:00' is not a valid date and time"),
        ("datetime'2014-02-30T00:00'", "is not a valid date and time"),
        (
            "datetime'2014-09-01T10:00:00+02:00'",
            "has a time-zone offset; datetime literals are UTC",
        ),
        ("datetime'2014-09-01T10:00", "unterminated datetime'…' literal"),
        ("guid'12345678-aaaa-bbbb-cccc-ddddeeeeffff'", "guid'…' literals are not supported"),
        ("X'0A'", "X'…' literals are not supported"),
        ("'a\x00b'", "string literal contains NUL or an unpaired surrogate"),
    ],
)
def test_bad_literals(text: str, expected: str) -> None:
    message = bad(f"ValidUntil eq {text}", CERTIFICATE_USER_MAPPING)
    assert expected in message
    assert "at position 15" in message


# -- abuse ---------------------------------------------------------------------------------


def test_text_longer_than_the_limit_is_refused() -> None:
    longest = "Pid eq '" + "a" * (MAX_EXPRESSION_LENGTH - 9) + "'"
    assert len(longest) == MAX_EXPRESSION_LENGTH
    assert isinstance(sp(longest), Compare)
    assert bad(longest + " ") == f"Invalid $filter: longer than {MAX_EXPRESSION_LENGTH} characters"


def _nots(count: int) -> str:
    return "not " * count + "(Pid eq 'a')"


def test_depth_limit() -> None:
    """The tree may be MAX_DEPTH high: MAX_DEPTH - 2 nots over a comparison of a property."""
    assert isinstance(sp(_nots(MAX_DEPTH - 2)), Not)
    assert f"nested more than {MAX_DEPTH} levels deep" in bad(_nots(MAX_DEPTH - 1))


@pytest.mark.parametrize(
    "text",
    [
        "(" * 5000 + "Pid eq 'a'" + ")" * 5000,
        "(" * 8000,
        ")" * 8000,
        "not " * 2000 + "true",
        "tolower(" * 900 + "Pid" + ")" * 900 + " eq 'a'",
        "Pid eq 'a' eq " * 500 + "true",
        "startswith(" * 800,
    ],
)
def test_hostile_nesting_is_a_400_not_a_recursion_error(text: str) -> None:
    with pytest.raises(BadRequest):
        sp(text)


def test_redundant_parentheses_cost_no_depth() -> None:
    assert sp("(" * 4000 + "Pid eq 'a'" + ")" * 4000) == eq(PID, lit("a"))


def test_a_long_flat_disjunction_is_fine() -> None:
    text = " or ".join(f"Pid eq 'p{i}'" for i in range(480))
    parsed = sp(text)
    assert isinstance(parsed, Or) and len(parsed.operands) == 480


# -- $orderby ------------------------------------------------------------------------------


def ob(text: str) -> tuple[OrderBy, ...]:
    return parse_orderby(text, STRING_PARAMETER)


def test_orderby_keys_and_directions() -> None:
    assert ob("Value") == (OrderBy(VALUE),)
    assert ob("Value desc") == (OrderBy(VALUE, descending=True),)
    assert ob("Pid asc, Id desc,CreatedTime") == (
        OrderBy(PID),
        OrderBy(ID, descending=True),
        OrderBy(CREATED),
    )
    assert ob("tolower(Id) desc") == (OrderBy(Call("tolower", (ID,)), descending=True),)
    assert parse_orderby("Agency,Scheme,Id", ALTERNATIVE_PARTNER)[1] == OrderBy(
        PropertyRef("Scheme", S)
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected an operand, found the end of the expression at position 1"),
        ("Pid,", "expected an operand, found the end of the expression at position 5"),
        ("Pid desc desc", "expected ',' or the end, found 'desc' at position 10"),
        ("Pid descending", "expected ',' or the end, found 'descending' at position 5"),
        ("Nope", "property 'Nope' does not exist in StringParameter at position 1"),
        ("'a'", "each key must be a property or a function of properties at position 1"),
        ("Pid eq 'a'", "cannot order by a condition at position 1"),
        ("(Pid desc)", "expected ')', found 'desc' at position 6"),
    ],
)
def test_orderby_errors(text: str, expected: str) -> None:
    with pytest.raises(BadRequest) as caught:
        ob(text)
    assert caught.value.message == f"Invalid $orderby: {expected}"


def test_orderby_of_binary_orders_by_bytes() -> None:
    """SAP's API Hub spec lists ``Value`` among the ``$orderby`` values (compatibility.md)."""
    (order,) = parse_orderby("Value desc", BINARY_PARAMETER)
    assert order.descending and order.expr == PropertyRef("Value", ValueType.BINARY)


@pytest.mark.parametrize(
    "text",
    [
        "Pid eq " + "1" * 8000,
        "Pid eq 1" + "0" * 30 + "L",
        "Pid eq 0." + "1" * 8000,
        "Pid eq datetime'" + "T" * 8000 + "+01:00'",
        "P" * 8000 + " eq 'a'",
        "f" * 8000 + "(Pid)",
        "Pid eq 'a' " + "x" * 8000,
        "guid" * 2000 + "'a'",
    ],
)
def test_messages_quote_at_most_a_short_excerpt(text: str) -> None:
    """Long input is refused with a 400 whose message does not echo it whole."""
    assert len(bad(text)) < 300


def test_member_paths_reach_only_declared_members() -> None:
    """``IntegrationArtifact/Id`` is a member the log declares; any other path, however
    long or deep, is a 400 that quotes it cut short."""
    from partnergate.model.entities import MESSAGE_PROCESSING_LOG as MPL

    expr = parse_filter("IntegrationArtifact/Id eq 'flow'", MPL)
    assert expr == Compare(
        CompareOp.EQ,
        PropertyRef("IntegrationArtifact/Id", ValueType.STRING),
        Literal("flow", ValueType.STRING),
    )
    for text in (
        "IntegrationArtifact/Version eq 'x'",
        "IntegrationArtifact/Id/Deeper eq 'x'",
        "MessageGuid/Id eq 'x'",
        "A/" * 3_000 + "B eq 'x'",
    ):
        message = bad(text, MPL)
        assert "does not exist in MessageProcessingLog" in message
        assert len(message) < 200
    assert "longer than" in bad("A/" * 50_000 + "B eq 'x'", MPL)
    assert "unexpected character '/'" in bad("IntegrationArtifact/ eq 'x'", MPL)
    assert "does not exist" in bad("IntegrationArtifact/Id eq 'x'")  # not a parameter's

"""System and custom query options: OData V2 URI conventions §4 and §5, and the SAP
Partner Directory's use of them (reference §1.8)."""

from __future__ import annotations

import pytest

from partnergate.model.entities import BINARY_PARAMETER, STRING_PARAMETER
from partnergate.odata.errors import BadRequest
from partnergate.odata.filter import Compare, CompareOp, Literal, OrderBy, PropertyRef, ValueType
from partnergate.odata.query import MAX_PAGING_VALUE, QueryOptions, parse_query


def collection(*params: tuple[str, str]) -> QueryOptions:
    return parse_query(list(params), STRING_PARAMETER, collection=True)


def single(*params: tuple[str, str]) -> QueryOptions:
    return parse_query(list(params), STRING_PARAMETER, collection=False)


def refused(*params: tuple[str, str], is_collection: bool = True) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_query(list(params), STRING_PARAMETER, collection=is_collection)
    assert caught.value.status == 400
    return caught.value.message


def test_no_options() -> None:
    assert collection() == QueryOptions()
    assert QueryOptions().select is None and QueryOptions().custom == {}


def test_sap_paging_request() -> None:
    """SAP's own next-page link: ``StringParameters?$select=Value&$format=json&$skiptoken=1000``."""
    options = collection(("$select", "Value"), ("$format", "json"), ("$skiptoken", "1000"))
    assert options == QueryOptions(select=("Value",), format="json", skiptoken=1000)


def test_figaf_binary_parameter_listing() -> None:
    """A real client's metadata listing of BinaryParameters (reference §1.8)."""
    select = "Pid,Id,LastModifiedBy,LastModifiedTime,CreatedBy,CreatedTime,ContentType"
    options = parse_query(
        [("$select", select), ("$inlinecount", "allpages"), ("$format", "json")],
        BINARY_PARAMETER,
        collection=True,
    )
    assert options.select == tuple(select.split(","))
    assert options.inlinecount is True


def test_filter_is_parsed() -> None:
    options = collection(("$filter", "Pid eq 'P1'"))
    assert options.filter == Compare(
        CompareOp.EQ, PropertyRef("Pid", ValueType.STRING), Literal("P1", ValueType.STRING)
    )


def test_filter_errors_come_from_the_parser() -> None:
    assert refused(("$filter", "Pid eq")).startswith("Invalid $filter: expected an operand")
    assert refused(("$filter", "")).startswith("Invalid $filter: ")


def test_orderby_is_parsed() -> None:
    options = collection(("$orderby", "Pid,Value desc"))
    assert options.orderby == (
        OrderBy(PropertyRef("Pid", ValueType.STRING)),
        OrderBy(PropertyRef("Value", ValueType.STRING), descending=True),
    )
    assert refused(("$orderby", "Nope")).startswith("Invalid $orderby: property 'Nope'")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Value", ("Value",)),
        ("Pid,Id", ("Pid", "Id")),
        (" Pid , Id ", ("Pid", "Id")),
        ("Id,Pid,Id", ("Id", "Pid")),
        ("*", None),
        ("Pid,*", None),
    ],
)
def test_select(value: str, expected: tuple[str, ...] | None) -> None:
    assert collection(("$select", value)).select == expected
    assert single(("$select", value)).select == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Nope", "Invalid $select: property 'Nope' does not exist in StringParameter"),
        ("pid", "Invalid $select: property 'pid' does not exist in StringParameter"),
        ("", "Invalid $select: empty item; name properties separated by ','"),
        ("Pid,,Id", "Invalid $select: empty item"),
        ("Pid,", "Invalid $select: empty item"),
    ],
)
def test_select_errors(value: str, expected: str) -> None:
    assert refused(("$select", value)).startswith(expected)


@pytest.mark.parametrize("option", ["$top", "$skip", "$skiptoken"])
def test_paging_values(option: str) -> None:
    field = option[1:]
    assert getattr(collection((option, "0")), field) == 0
    assert getattr(collection((option, "30")), field) == 30
    assert getattr(collection((option, str(MAX_PAGING_VALUE))), field) == MAX_PAGING_VALUE
    assert getattr(collection((option, "0" * 5000 + "7")), field) == 7


@pytest.mark.parametrize("option", ["$top", "$skip", "$skiptoken"])
@pytest.mark.parametrize("value", ["-1", "", "1.5", "ten", "1e3", "+5", "0x10", "５"])
def test_paging_values_must_be_non_negative_integers(option: str, value: str) -> None:
    message = refused((option, value))
    assert message == f"Invalid {option}: '{value}' is not a non-negative integer"


@pytest.mark.parametrize("option", ["$top", "$skip", "$skiptoken"])
def test_paging_values_are_bounded(option: str) -> None:
    too_big = str(MAX_PAGING_VALUE + 1)
    assert refused((option, too_big)) == (
        f"Invalid {option}: {too_big} is larger than {MAX_PAGING_VALUE}"
    )
    assert "larger than" in refused((option, "9" * 40))


def test_inlinecount() -> None:
    assert collection(("$inlinecount", "allpages")).inlinecount is True
    assert collection(("$inlinecount", "none")).inlinecount is False
    assert refused(("$inlinecount", "all")) == "Invalid $inlinecount: 'all'; use allpages or none"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("json", "json"),
        ("atom", "atom"),
        ("xml", "xml"),
        ("JSON", "json"),
        ("application/json", "json"),
        ("application/atom+xml", "atom"),
        ("application/xml", "xml"),
        ("application/json;odata=verbose", "json"),
    ],
)
def test_format(value: str, expected: str) -> None:
    assert collection(("$format", value)).format == expected
    assert single(("$format", value)).format == expected


def test_unknown_format() -> None:
    assert refused(("$format", "csv")) == "Invalid $format: 'csv'; use json, atom or xml"


def test_expand_is_refused_with_the_reason() -> None:
    expected = "$expand is not supported: StringParameter has no navigation properties"
    assert refused(("$expand", "Partner")) == expected
    assert refused(("$expand", ""), is_collection=False) == expected


def test_custom_options_pass_through() -> None:
    """SAP's custom options (§5): ``user``, ``exclude``, ``returnHashedPassword``."""
    options = single(("user", "MyUser"), ("returnHashedPassword", "SHA256"))
    assert options.custom == {"user": "MyUser", "returnHashedPassword": "SHA256"}
    assert collection(("exclude", "AuthorizedUsers"), ("$top", "1")).custom == {
        "exclude": "AuthorizedUsers"
    }


@pytest.mark.parametrize("name", ["$count", "$Filter", "$search", "$apply", "$", "$value"])
def test_unknown_system_options(name: str) -> None:
    assert refused((name, "1")).startswith(f"Unknown system query option '{name}' (supported: ")


@pytest.mark.parametrize(
    "params",
    [
        [("$top", "1"), ("$top", "1")],
        [("$filter", "Pid eq 'a'"), ("$filter", "Pid eq 'b'")],
        [("user", "a"), ("user", "b")],
    ],
)
def test_repeated_options(params: list[tuple[str, str]]) -> None:
    name = params[0][0]
    assert refused(*params) == f"Query option '{name}' is given more than once"


@pytest.mark.parametrize(
    "name", ["$filter", "$orderby", "$top", "$skip", "$skiptoken", "$inlinecount"]
)
def test_collection_options_on_a_single_entity(name: str) -> None:
    message = refused((name, "1"), is_collection=False)
    assert message == f"System query option '{name}' does not apply to a single entity"


def test_options_are_checked_in_request_order() -> None:
    """The first bad option decides the message, so a client fixes one thing at a time."""
    assert refused(("$top", "x"), ("$skip", "y")).startswith("Invalid $top")


def test_messages_quote_at_most_a_short_excerpt() -> None:
    assert len(refused(("$top", "9" * 5000))) < 120
    assert len(refused(("$format", "x" * 5000))) < 120
    assert len(refused(("$" + "x" * 5000, ""))) < 250

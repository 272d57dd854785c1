"""Query options on collections: $filter, $select, $orderby, $top, $skip, paging, counts."""

from __future__ import annotations

import uuid

import httpx
import pytest

from ..conftest import Api, Server, start_server, stop_server


@pytest.fixture
def partner_values(api: Api, pid: str) -> str:
    for i, value in enumerate(["alpha", "Beta", "gamma", "it's", "50%_off"]):
        r = api.post("StringParameters", json={"Pid": pid, "Id": f"K{i}", "Value": value})
        assert r.status_code == 201
    return pid


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [e["Id"] for e in response.json()["d"]["results"]]


def test_filter_eq_and_functions(api: Api, partner_values: str) -> None:
    pid = partner_values
    q = lambda f: ids(api.get("StringParameters", params={"$filter": f}))  # noqa: E731
    assert q(f"Pid eq '{pid}'") == ["K0", "K1", "K2", "K3", "K4"]
    assert q(f"Pid eq '{pid}' and Value eq 'it''s'") == ["K3"]
    assert q(f"Pid eq '{pid}' and startswith(Value,'B')") == ["K1"]
    assert q(f"Pid eq '{pid}' and startswith(Value,'b')") == []
    assert q(f"Pid eq '{pid}' and substringof('%_', Value)") == ["K4"]
    assert q(f"Pid eq '{pid}' and endswith(Value,'ma')") == ["K2"]
    assert q(f"Pid eq '{pid}' and tolower(Value) eq 'beta'") == ["K1"]
    assert q(f"Pid eq '{pid}' and length(Value) eq 5") == ["K0", "K2"]
    assert q(f"Pid eq '{pid}' and (Id eq 'K0' or Id eq 'K4') and not (Value eq 'alpha')") == ["K4"]
    assert q(f"Pid eq '{pid}' and Id ne 'K0' and Id le 'K2'") == ["K1", "K2"]


def test_filters_of_one_shape_answer_each_with_its_values(api: Api, pid: str) -> None:
    """Filters that differ only in their string literals share one SQL statement; each
    answer still holds the rows of its own values, whichever side the literal is on."""
    other = pid + "_other"
    for owner, count in ((pid, 3), (other, 2)):
        for i in range(count):
            r = api.post("StringParameters", json={"Pid": owner, "Id": f"S{i}", "Value": "v"})
            assert r.status_code == 201
    q = lambda f: ids(api.get("StringParameters", params={"$filter": f}))  # noqa: E731
    for _ in range(2):
        assert q(f"Pid eq '{pid}'") == ["S0", "S1", "S2"]
        assert q(f"Pid eq '{other}'") == ["S0", "S1"]
        assert q(f"'{other}' eq Pid") == ["S0", "S1"]
        assert q(f"Pid eq '{pid}' and Id eq 'S1'") == ["S1"]
        assert q(f"Pid eq '{other}' and Id eq 'S1'") == ["S1"]
        assert q(f"Pid eq '{other}' and Id eq 'S2'") == []
        assert q(f"Pid eq '{pid}' and Id gt 'S0'") == ["S1", "S2"]
        assert q(f"Pid eq '{other}' and Id gt 'S0'") == ["S1"]
    r = api.get(
        "StringParameters",
        params={"$filter": f"Pid eq '{other}'", "$inlinecount": "allpages", "$top": "1"},
    )
    assert r.json()["d"]["__count"] == "2"
    assert ids(r) == ["S0"]


def test_filter_by_datetime(api: Api, partner_values: str) -> None:
    r = api.get(
        "StringParameters",
        params={
            "$filter": f"Pid eq '{partner_values}' and CreatedTime gt datetime'2000-01-01T00:00:00'"
        },
    )
    assert len(ids(r)) == 5
    r = api.get(
        "StringParameters",
        params={
            "$filter": f"Pid eq '{partner_values}' and CreatedTime lt datetime'2000-01-01T00:00:00'"
        },
    )
    assert ids(r) == []


def test_orderby_select_top_skip_count(api: Api, partner_values: str) -> None:
    pid = partner_values
    base = {"$filter": f"Pid eq '{pid}'"}
    assert ids(api.get("StringParameters", params={**base, "$orderby": "Value desc"})) == [
        "K3",
        "K2",
        "K0",
        "K1",
        "K4",
    ]
    assert ids(
        api.get("StringParameters", params={**base, "$orderby": "Pid asc,Id desc", "$top": "2"})
    ) == ["K4", "K3"]
    assert ids(api.get("StringParameters", params={**base, "$skip": "3"})) == ["K3", "K4"]
    selected = api.get(
        "StringParameters", params={**base, "$select": "Id,Value", "$top": "1"}
    ).json()["d"]["results"][0]
    assert set(selected) == {"__metadata", "Id", "Value"}
    counted = api.get(
        "StringParameters", params={**base, "$inlinecount": "allpages", "$top": "1"}
    ).json()["d"]
    assert counted["__count"] == "5" and len(counted["results"]) == 1
    assert api.get("StringParameters/$count", params=base).text == "5"


def test_alternative_partner_hex_filter_is_empty_not_an_error(api: Api, pid: str) -> None:
    api.post(
        "AlternativePartners", json={"Agency": "A" + pid, "Scheme": "S", "Id": "I", "Pid": pid}
    )
    assert ids(api.get("AlternativePartners", params={"$filter": f"Pid eq '{pid}'"})) == ["I"]
    assert ids(api.get("AlternativePartners", params={"$filter": "Hexscheme eq '53'"})) == []


def test_bad_query_options_are_400(api: Api) -> None:
    for params in (
        {"$filter": "Nope eq 'x'"},
        {"$filter": "Pid eq"},
        {"$filter": "Pid eq 'unterminated"},
        {"$top": "-1"},
        {"$top": "ten"},
        {"$skip": "-5"},
        {"$orderby": "Nope desc"},
        {"$select": "Nope"},
        {"$expand": "Anything"},
        {"$unknown": "1"},
        {"$inlinecount": "sometimes"},
    ):
        r = api.get("StringParameters", params=params)
        assert r.status_code == 400, params
        assert r.json()["error"]["message"]["value"], params


@pytest.fixture(scope="module")
def small_pages(tmp_path_factory: pytest.TempPathFactory, store_url: str):
    srv = start_server(
        tmp_path_factory.mktemp("paging"),
        store_url,
        {"PARTNERGATE_PAGE_SIZE": "3", "PARTNERGATE_BINARY_PAGE_SIZE": "2"},
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def test_server_paging_follows_next_links(small_pages: Server) -> None:
    pid = "PG_" + uuid.uuid4().hex[:8]
    with Api(small_pages) as api:
        for i in range(7):
            api.post("StringParameters", json={"Pid": pid, "Id": f"N{i}", "Value": "v"})
        url: str | None = (
            api.base_url.join("StringParameters")
            .copy_merge_params({"$filter": f"Pid eq '{pid}'", "$inlinecount": "allpages"})
            .__str__()
        )
        seen: list[str] = []
        pages = 0
        while url:
            d = api.get(url).json()["d"]
            assert d["__count"] == "7"
            seen += [e["Id"] for e in d["results"]]
            url = d.get("__next")
            pages += 1
            assert url is None or "$skiptoken=" in url
        assert seen == [f"N{i}" for i in range(7)] and pages == 3
        limited = api.get(
            "StringParameters", params={"$filter": f"Pid eq '{pid}'", "$top": "4"}
        ).json()["d"]
        assert len(limited["results"]) == 3 and "__next" in limited
        rest = api.get(limited["__next"]).json()["d"]
        assert [e["Id"] for e in rest["results"]] == ["N3"] and "__next" not in rest
        atom = api.get(
            "StringParameters",
            params={"$filter": f"Pid eq '{pid}'"},
            headers={"Accept": "application/atom+xml"},
        )
        assert 'rel="next"' in atom.text
        for i in range(3):
            api.post(
                "BinaryParameters",
                json={"Pid": pid, "Id": f"B{i}", "ContentType": "text", "Value": "eA=="},
            )
        binary = api.get("BinaryParameters", params={"$filter": f"Pid eq '{pid}'"}).json()["d"]
        assert len(binary["results"]) == 2 and "__next" in binary

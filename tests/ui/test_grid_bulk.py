"""The bulk grid's changes over HTTP: preview changes nothing, a change is all or nothing."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from html import unescape
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from ..conftest import Api, Server
from .conftest import SIZES, admin_tab, csrf_of, shot, unfold_menu
from .test_search_everywhere import assert_fits

KEY = re.compile(r'name="key" value="([^"]+)"')


def _pid(tag: str) -> str:
    return f"G{tag}_{uuid.uuid4().hex[:8]}"


def keys_on(ui: httpx.Client, **query: str) -> list[str]:
    page = ui.get("/ui/grid", params=query)
    assert page.status_code == 200, page.text
    return [unescape(k) for k in KEY.findall(page.text)]


def post_bulk(ui: httpx.Client, query: dict[str, str], data: dict[str, object]) -> httpx.Response:
    csrf = csrf_of(ui.get("/ui/grid", params=query).text)
    return ui.post("/ui/grid/bulk", params=query, data={"csrf": csrf, **data})


def string_values(api: Api, pid: str) -> dict[str, str]:
    rows = api.get("StringParameters", params={"$filter": f"Pid eq '{pid}'"}).json()["d"]["results"]
    return {r["Id"]: r["Value"] for r in rows}


def test_preview_changes_nothing_and_confirm_changes_every_row(ui: httpx.Client, api: Api) -> None:
    pids = [_pid("edit"), _pid("edit")]
    for pid in pids:
        assert (
            api.post(
                "StringParameters", json={"Pid": pid, "Id": "TIMEOUT", "Value": "10"}
            ).status_code
            == 201
        )
    query = {
        "set": "string-parameters",
        "filter": f"Id eq 'TIMEOUT' and substringof('{pids[0][:5]}', Pid)",
    }
    keys = [k for k in keys_on(ui, **query) if json.loads(k)["Pid"] in pids]
    assert len(keys) == 2
    change = {"operation": "edit", "column": "Value", "value": "30", "key": keys}

    preview = post_bulk(ui, query, {**change, "step": "preview"})
    assert preview.status_code == 200, preview.text
    assert "Confirm: edit 2" in preview.text
    assert preview.text.count(">30<") == 2
    assert [string_values(api, p)["TIMEOUT"] for p in pids] == ["10", "10"]

    done = post_bulk(ui, query, {**change, "step": "apply"})
    assert done.status_code == 303
    assert [string_values(api, p)["TIMEOUT"] for p in pids] == ["30", "30"]


def test_a_failing_row_moves_no_alternative_partner(ui: httpx.Client, api: Api) -> None:
    agency = "agency_" + uuid.uuid4().hex[:6]
    first, second, target = _pid("alt"), _pid("alt"), _pid("target")
    for pid, scheme, ident in ((first, "S1", "1"), (second, "S2", "2"), (target, "S2", "3")):
        body = {"Pid": pid, "Agency": agency, "Scheme": scheme, "Id": ident + agency}
        assert api.post("AlternativePartners", json=body).status_code == 201
    query = {"set": "alternative-partners", "filter": f"Agency eq '{agency}'"}
    keys = keys_on(ui, **query)
    assert len(keys) == 3
    # moving the first two to target: the second collides with target's (agency, S2)
    rows = api.get("AlternativePartners", params={"$filter": f"Agency eq '{agency}'"}).json()["d"][
        "results"
    ]
    by_pid = {r["Pid"]: r for r in rows}
    chosen = [
        json.dumps(
            {k: by_pid[p][k] for k in ("Hexagency", "Hexid", "Hexscheme")},
            sort_keys=True,
            separators=(",", ":"),
        )
        for p in (first, second)
    ]
    assert set(chosen) <= set(keys)
    change = {"operation": "edit", "column": "Pid", "value": target, "key": chosen}

    preview = post_bulk(ui, query, {**change, "step": "preview"})
    assert preview.status_code == 409
    assert "This change cannot be made" in preview.text
    assert "must be unique" in unescape(preview.text)

    done = post_bulk(ui, query, {**change, "step": "apply"})
    assert done.status_code == 409
    assert "Nothing was changed" in done.text
    after = api.get("AlternativePartners", params={"$filter": f"Agency eq '{agency}'"}).json()["d"][
        "results"
    ]
    assert sorted((r["Pid"], r["Scheme"]) for r in after) == sorted(
        [(first, "S1"), (second, "S2"), (target, "S2")]
    )


def test_a_failing_copy_copies_nothing(ui: httpx.Client, api: Api) -> None:
    source, target = _pid("src"), _pid("dst")
    for ident in ("A", "B"):
        assert (
            api.post(
                "StringParameters", json={"Pid": source, "Id": ident, "Value": ident}
            ).status_code
            == 201
        )
    assert (
        api.post("StringParameters", json={"Pid": target, "Id": "B", "Value": "theirs"}).status_code
        == 201
    )
    query = {"set": "string-parameters", "filter": f"Pid eq '{source}'"}
    keys = keys_on(ui, **query)
    assert len(keys) == 2

    done = post_bulk(
        ui, query, {"operation": "copy", "target": target, "key": keys, "step": "apply"}
    )
    assert done.status_code == 409
    assert "already exists" in unescape(done.text)
    assert string_values(api, target) == {"B": "theirs"}

    fresh = _pid("dst")
    copied = post_bulk(
        ui, query, {"operation": "copy", "target": fresh, "key": keys, "step": "apply"}
    )
    assert copied.status_code == 303
    assert string_values(api, fresh) == {"A": "A", "B": "B"}
    assert string_values(api, source) == {"A": "A", "B": "B"}


def test_delete_of_a_row_gone_meanwhile_deletes_nothing(ui: httpx.Client, api: Api) -> None:
    pid = _pid("del")
    for ident in ("X", "Y"):
        assert (
            api.post("StringParameters", json={"Pid": pid, "Id": ident, "Value": "v"}).status_code
            == 201
        )
    query = {"set": "string-parameters", "filter": f"Pid eq '{pid}'"}
    keys = keys_on(ui, **query)
    assert api.delete(f"StringParameters(Pid='{pid}',Id='Y')").status_code in (200, 204)

    done = post_bulk(ui, query, {"operation": "delete", "key": keys, "step": "apply"})
    assert done.status_code == 409
    assert string_values(api, pid) == {"X": "v"}

    keys = keys_on(ui, **query)
    gone = post_bulk(ui, query, {"operation": "delete", "key": keys, "step": "apply"})
    assert gone.status_code == 303
    assert string_values(api, pid) == {}


def test_export_selected_as_csv_and_json(ui: httpx.Client, api: Api) -> None:
    pid = _pid("exp")
    assert (
        api.post(
            "StringParameters", json={"Pid": pid, "Id": "ADDRESS", "Value": "https://x"}
        ).status_code
        == 201
    )
    query = {"set": "string-parameters", "filter": f"Pid eq '{pid}'"}
    keys = keys_on(ui, **query)
    as_csv = post_bulk(ui, query, {"operation": "export", "format": "csv", "key": keys})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["Pid"], r["Id"], r["Value"]) for r in rows] == [(pid, "ADDRESS", "https://x")]
    as_json = post_bulk(ui, query, {"operation": "export", "format": "json", "key": keys})
    assert as_json.json()["rows"][0]["Value"] == "https://x"


def test_the_grid_sorts_and_filters_in_the_store(ui: httpx.Client, api: Api) -> None:
    pid = _pid("sort")
    for ident, value in (("A", "b"), ("B", "c"), ("C", "a"), ("D", "zz")):
        body = {"Pid": pid, "Id": ident, "Value": value}
        assert api.post("StringParameters", json=body).status_code == 201
    query = {"set": "string-parameters", "filter": f"Pid eq '{pid}' and length(Value) eq 1"}
    ids = [json.loads(k)["Id"] for k in keys_on(ui, **query, sort="-Value")]
    assert ids == ["B", "A", "C"]
    ids = [json.loads(k)["Id"] for k in keys_on(ui, **query, sort="Value")]
    assert ids == ["C", "A", "B"]


def test_a_bad_filter_is_a_400_with_the_reason(ui: httpx.Client) -> None:
    page = ui.get("/ui/grid", params={"set": "string-parameters", "filter": "Pid eq"})
    assert page.status_code == 400
    assert "Invalid $filter" in unescape(page.text)


def test_a_bulk_change_without_the_form_token_changes_nothing(ui: httpx.Client, api: Api) -> None:
    pid = _pid("csrf")
    assert (
        api.post("StringParameters", json={"Pid": pid, "Id": "K", "Value": "v"}).status_code == 201
    )
    keys = keys_on(ui, set="string-parameters", filter=f"Pid eq '{pid}'")
    refused = ui.post(
        "/ui/grid/bulk",
        params={"set": "string-parameters"},
        data={"operation": "delete", "key": keys, "step": "apply"},
    )
    assert refused.status_code == 403
    assert string_values(api, pid) == {"K": "v"}


@pytest.mark.parametrize("size", SIZES)
def test_bulk_edit_in_the_browser(browser: Browser, server: Server, api: Api, size: str) -> None:
    pid = _pid(size)
    for ident in ("A", "B", "C"):
        body = {"Pid": pid, "Id": ident, "Value": "old"}
        assert api.post("StringParameters", json=body).status_code == 201
    with admin_tab(browser, server, size) as tab:
        unfold_menu(tab)
        tab.get_by_role("link", name="Bulk", exact=True).click()
        tab.get_by_label("$filter").fill(f"Pid eq '{pid}'")
        tab.get_by_role("button", name="Show").click()
        expect(tab.get_by_role("row")).to_have_count(4)
        assert_fits(tab)
        shot(tab, f"grid-{size}")
        tab.get_by_label("Select all rows on this page").check()
        tab.get_by_label(f"Select B of {pid}").uncheck()
        tab.get_by_label("New value").fill("new")
        tab.get_by_role("button", name="Set column…").click()
        expect(tab.get_by_role("heading", level=1)).to_have_text("Set Value of 2 string parameters")
        assert string_values(api, pid) == {"A": "old", "B": "old", "C": "old"}
        assert_fits(tab)
        shot(tab, f"grid-preview-{size}")
        tab.get_by_role("button", name="Confirm: edit 2").click()
        expect(tab.locator(".flash")).to_have_text("2 string parameters changed.")
        assert string_values(api, pid) == {"A": "new", "B": "old", "C": "new"}


@pytest.mark.parametrize("size", SIZES)
def test_bulk_copy_delete_and_export_in_the_browser(
    browser: Browser, server: Server, api: Api, size: str
) -> None:
    """Copy, delete and export the ticked rows: each change previewed, then all at once."""
    pid, target = _pid(size), _pid(size + "to")
    for ident in ("A", "B", "C"):
        body = {"Pid": pid, "Id": ident, "Value": ident.lower()}
        assert api.post("StringParameters", json=body).status_code == 201
    with admin_tab(browser, server, size) as tab:
        tab.goto(f"/ui/grid?set=string-parameters&filter=Pid eq '{pid}'")
        tab.get_by_label(f"Select A of {pid}").check()
        tab.get_by_label(f"Select C of {pid}").check()
        with tab.expect_download() as exported:
            tab.get_by_label("Export as").select_option("json")
            tab.get_by_role("button", name="Export").click()
        rows = json.loads(Path(exported.value.path()).read_text())["rows"]
        assert sorted(r["Id"] for r in rows) == ["A", "C"]

        tab.get_by_label("Copy to partner").fill(target)
        tab.get_by_role("button", name="Copy…").click()
        expect(tab.get_by_role("heading", level=1)).to_have_text(
            f"Copy 2 string parameters to partner {target}"
        )
        assert_fits(tab)
        assert string_values(api, target) == {}
        tab.get_by_role("button", name="Confirm: copy 2").click()
        expect(tab.locator(".flash")).to_have_text(
            f"2 string parameters copied to partner '{target}'."
        )
        assert string_values(api, target) == {"A": "a", "C": "c"}

        tab.goto(f"/ui/grid?set=string-parameters&filter=Pid eq '{pid}'")
        tab.get_by_label("Select all rows on this page").check()
        tab.get_by_role("button", name="Delete…").click()
        expect(tab.get_by_role("heading", level=1)).to_have_text("Delete 3 string parameters")
        assert_fits(tab)
        assert len(string_values(api, pid)) == 3
        tab.get_by_role("button", name="Confirm: delete 3").click()
        expect(tab.locator(".flash")).to_have_text("3 string parameters deleted.")
        assert string_values(api, pid) == {}

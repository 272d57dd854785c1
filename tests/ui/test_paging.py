"""The partner list with 10,000 partners: paged in SQL, one bounded query per page."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import event, insert, text

from partnergate.security.secretbox import SecretBox
from partnergate.store import database
from partnergate.store.directory import DirectoryStore
from partnergate.store.tables import string_parameters
from partnergate.web.ui.directory import PAGE_SIZE, partner_page

from ..conftest import Server
from .conftest import run_async, shot

PARTNERS = 10_000
PREFIX = "Load10k_"
ROW = re.compile(r'<td[^>]*><a class="mono strong" href="/ui/partners/([^"]+)">')


async def _bulk_insert(url: str) -> None:
    engine = database.create_engine(url)
    stamp = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {
            "pid": f"{PREFIX}{n:05d}",
            "id": "ADDRESS",
            "value": f"https://p{n}.example",
            "created_by": "bulk",
            "created_time": stamp,
            "last_modified_by": "bulk",
            "last_modified_time": stamp,
        }
        for n in range(PARTNERS)
    ]
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(string_parameters), rows)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def many_partners(server: Server, store_url: str) -> str:
    run_async(lambda: _bulk_insert(store_url))
    return PREFIX


def _pids(html: str) -> list[str]:
    return ROW.findall(html)


def test_the_first_page_is_bounded_and_links_to_the_next(
    ui: httpx.Client, many_partners: str
) -> None:
    first = ui.get("/ui/partners", params={"q": many_partners.lower()})
    assert first.status_code == 200
    pids = _pids(first.text)
    assert pids == [f"{PREFIX}{n:05d}" for n in range(PAGE_SIZE)]
    assert f'rel="next" href="/ui/partners?q={many_partners.lower()}&amp;page=2"' in first.text
    assert 'rel="prev"' not in first.text

    second = _pids(ui.get("/ui/partners", params={"q": many_partners, "page": 2}).text)
    assert second[0] == f"{PREFIX}{PAGE_SIZE:05d}"

    last_page = PARTNERS // PAGE_SIZE
    last = ui.get("/ui/partners", params={"q": many_partners, "page": last_page}).text
    assert _pids(last)[-1] == f"{PREFIX}{PARTNERS - 1:05d}"
    assert 'rel="next"' not in last
    assert 'rel="prev"' in last

    beyond = ui.get("/ui/partners", params={"q": many_partners, "page": last_page + 1})
    assert _pids(beyond.text) == []
    assert "Go to the first page" in beyond.text


def test_sorting_and_searching_stay_in_the_url(ui: httpx.Client, many_partners: str) -> None:
    newest = ui.get("/ui/partners", params={"q": many_partners, "sort": "-pid"}).text
    assert _pids(newest)[0] == f"{PREFIX}{PARTNERS - 1:05d}"
    assert f"/ui/partners?q={many_partners}&amp;sort=-pid&amp;page=2" in newest
    one = ui.get("/ui/partners", params={"q": "load10k_0424"}).text
    assert _pids(one) == [f"{PREFIX}0424{n}" for n in range(10)]
    assert 'rel="next"' not in one


def test_a_page_is_one_query_with_a_limit(many_partners: str, store_url: str) -> None:
    """The list never counts or loads every partner: one SELECT … LIMIT per page."""

    async def run() -> list[str]:
        engine = database.create_engine(store_url)
        statements: list[str] = []
        event.listen(
            engine.sync_engine,
            "before_cursor_execute",
            lambda conn, cursor, statement, *args: statements.append(statement),
        )
        store = DirectoryStore(engine, SecretBox(bytes(32)))
        if store.reads is not None:  # reads that bypass SQLAlchemy's engine on the driver
            run_sql = store.reads._run

            async def counted(sql: str, params: list[object]) -> list[object]:
                statements.append(sql)
                return await run_sql(sql, params)

            store.reads._run = counted  # type: ignore[method-assign]
        try:
            async with engine.connect() as conn:  # first connection: the dialect's own queries
                await conn.execute(text("SELECT 1"))
            statements.clear()
            page = await partner_page(store, search="", number=3)
            assert len(page.pids) == PAGE_SIZE and page.has_next
        finally:
            await store.close()
            await engine.dispose()
        return statements

    # On PostgreSQL the read's time budget is set first (SET LOCAL statement_timeout).
    statements = [s for s in run_async(run) if "statement_timeout" not in s]
    assert len(statements) == 1, statements
    assert re.search(r"\bLIMIT\b", statements[0], re.IGNORECASE)
    assert re.search(r"\bOFFSET\b", statements[0], re.IGNORECASE)
    assert "count(" not in statements[0].lower()


def test_a_person_pages_through_the_partners(page: Page, many_partners: str) -> None:
    page.get_by_label("Find partners").fill(many_partners)
    page.get_by_role("main").get_by_role("button", name="Search").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(PAGE_SIZE)
    expect(rows.first).to_contain_text(f"{PREFIX}00000")
    shot(page, "partners")
    page.get_by_role("link", name="Next →").click()
    expect(rows.first).to_contain_text(f"{PREFIX}{PAGE_SIZE:05d}")
    pages = page.get_by_role("navigation", name="Pages")
    expect(pages.locator("[aria-current=page]")).to_have_text(re.compile(r"^Page 2( of \d+)?$"))
    pages.get_by_role("link", name="Page 3").click()
    expect(rows.first).to_contain_text(f"{PREFIX}{2 * PAGE_SIZE:05d}")
    pages.get_by_role("link", name="← Previous").click()
    expect(rows.first).to_contain_text(f"{PREFIX}{PAGE_SIZE:05d}")
    pages.get_by_role("link", name="« First").click()
    expect(rows.first).to_contain_text(f"{PREFIX}00000")
    expect(pages.get_by_role("link", name="← Previous")).to_have_count(0)
    pages.get_by_role("link", name="Next →").click()
    page.get_by_role("link", name="Partner ID").click()
    expect(rows.first).to_contain_text(f"{PREFIX}{PARTNERS - 1:05d}")
    expect(page).to_have_url(re.compile(r"sort=-pid"))

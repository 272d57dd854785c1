"""Browser and form tests of the admin UI against the real server (see tests/conftest.py).

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright for Python; no browser
is downloaded. Each browser test gets a fresh context signed in as the admin, and writes
screenshots to ``tests/artifacts/`` for a reviewer to look at.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from ..conftest import Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
T = TypeVar("T")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
"""Window sizes every page must fit: a desktop's and a phone's."""


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@contextmanager
def sign_in(server: Server, name: str, password: str) -> Iterator[httpx.Client]:
    """A client holding a UI session, as a browser has after the sign-in form."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        form = client.get("/ui/signin")
        done = client.post(
            "/ui/signin",
            data={"name": name, "password": password, "csrf": csrf_of(form.text), "next": ""},
        )
        assert done.status_code == 303, done.text
        yield client


@pytest.fixture
def ui(server: Server) -> Iterator[httpx.Client]:
    with sign_in(server, *server.admin) as client:
        yield client


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run`` in a thread of its own: Playwright's sync API keeps a loop running."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless; the test is skipped where it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    """Chromium for a module; after the server, so the store outlives the browser's loop.
    Playwright's sync API keeps an event loop running in the main thread while it is open,
    so it closes before modules that call ``asyncio.run`` themselves."""
    with chromium() as launched:
        yield launched


@contextmanager
def open_tab(browser: Browser, server: Server, *, javascript: bool = True) -> Iterator[Page]:
    """A browser tab; the test fails if the UI asks another host or a script fails."""
    context = browser.new_context(
        base_url=server.url, viewport={"width": 1280, "height": 900}, java_script_enabled=javascript
    )
    foreign: list[str] = []

    def only_ours(route: Route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", only_ours)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not foreign, f"the UI asked other hosts: {foreign}"
    assert not errors, f"script errors in the browser: {errors}"


def sign_in_tab(tab: Page, name: str, password: str) -> None:
    tab.goto("/ui/")
    tab.get_by_label("User name").fill(name)
    tab.get_by_label("Password").fill(password)
    tab.get_by_role("button", name="Sign in").click()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """A signed-in admin's browser tab."""
    with open_tab(browser, server) as tab:
        sign_in_tab(tab, *server.admin)
        tab.wait_for_url("**/ui/partners")
        yield tab


@contextmanager
def admin_tab(browser: Browser, server: Server, size: str) -> Iterator[Page]:
    """A signed-in admin's browser tab of one of :data:`SIZES`."""
    with open_tab(browser, server) as tab:
        width, height = SIZES[size]
        tab.set_viewport_size({"width": width, "height": height})
        sign_in_tab(tab, *server.admin)
        tab.wait_for_url("**/ui/partners")
        yield tab


@pytest.fixture(params=list(SIZES))
def sized(request: pytest.FixtureRequest, browser: Browser, server: Server) -> Iterator[Page]:
    """A signed-in admin's tab, once for each of :data:`SIZES`."""
    with admin_tab(browser, server, request.param) as tab:
        yield tab


def unfold_menu(tab: Page) -> None:
    """Opens the main menu where it is folded behind its button (a phone's width)."""
    toggle = tab.get_by_role("button", name="Menu")
    if toggle.is_visible() and toggle.get_attribute("aria-expanded") == "false":
        toggle.click()


def shot(tab: Page, name: str) -> None:
    """A full-page screenshot into tests/artifacts, named for the page it shows."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"ui-{name}.png"), full_page=True)

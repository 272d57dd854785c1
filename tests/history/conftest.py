"""The UI's fixtures (a signed-in client, Chromium) for the history tests, and the history
entries of a partner as the API lists them."""

from __future__ import annotations

from ..conftest import Api
from ..ui.conftest import browser, page, ui

__all__ = ["browser", "entries", "page", "ui"]


def entries(api: Api, pid: str) -> list[dict]:
    """Every history entry naming ``pid``, oldest first (following ``__next``)."""
    url = "AuditEntries"
    params: dict[str, str] | None = {
        "$filter": f"Pid eq '{pid}' or PreviousPid eq '{pid}'",
        "$orderby": "Id",
    }
    found: list[dict] = []
    while url:
        answer = api.get(url, params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()["d"]
        found += body["results"]
        url = body.get("__next", "")
        url = url.split("/api/v1/", 1)[1] if url else ""
        params = None
    return found

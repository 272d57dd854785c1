"""The UI's fixtures (a signed-in client, Chromium) for the history tests."""

from ..ui.conftest import browser, page, ui

__all__ = ["browser", "page", "ui"]

"""Serving stored bytes to a browser: always as a download, never run.

Parameters, certificates and message attachments hold what partners sent. Opened in the
browser of an administrator who is signed in, such bytes could run as a page of ours, so
every download says so (``Content-Disposition: attachment``), forbids content sniffing and
sandboxes itself in case a browser renders it anyway.
"""

from __future__ import annotations

from urllib.parse import quote


def download_headers(filename: str, content_type: str | None = None) -> dict[str, str]:
    """Response headers for ``filename``; RFC 6266 with RFC 8187's UTF-8 form of the name."""
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers

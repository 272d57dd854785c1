"""Export the Partner Directory as a zip, and import one after showing its plan.

The zip holds the layout of ``partnergate pd export`` (docs/pd-as-code.md). An import is
two steps: the upload is planned against the store and the plan shown per partner; the
person confirms, the same zip comes back with the plan's digest, and it is applied in one
transaction — only if the plan is still the one that was shown.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.datastructures import UploadFile
from starlette.responses import Response

from ...model.errors import DirectoryError
from ...pdcode import archive, local
from ...pdcode.files import LayoutError
from ...pdcode.plan import MissingPassword, Op
from ..downloads import download_headers
from .pages import Page, guarded

MODES = (
    ("replace", "Create and update (keep what the zip does not have)"),
    ("add", "Create only (change nothing that exists)"),
    ("sync", "Create, update and delete (for the partners in the zip)"),
)


@guarded
async def export(page: Page) -> Response:
    """All partners, or those ticked on the partner list (``?pid=…``, repeatable)."""
    pids = [p for p in page.request.query_params.getlist("pid") if p] or None
    async with _scratch("pd-export-") as tmp:
        root = tmp / "partner-directory"
        await local.export(page.services.store, root, pids)
        data = await asyncio.to_thread(archive.pack, root)
    name = "partner-directory.zip" if pids is None else f"partner-directory-{len(pids)}.zip"
    return Response(data, media_type="application/zip", headers=download_headers(name))


@guarded
async def import_page(page: Page) -> Response:
    if page.request.method == "GET":
        return page.render(
            "transfer/import.html", section="partners", modes=MODES, mode="replace", error=None
        )
    mode = page.text("mode") if page.text("mode") in dict(MODES) else "replace"
    upload = page.form.get("file")
    if isinstance(upload, UploadFile):
        data = await upload.read()
    else:
        try:
            data = await asyncio.to_thread(base64.b64decode, page.text("zip"), validate=True)
        except (binascii.Error, ValueError):
            data = b""
    if not data:
        return _form(page, mode, "Choose a zip file exported by partnergate or FlashPipe.")
    confirmed = page.text("digest")
    try:
        async with _scratch("pd-import-") as tmp:
            limit = page.services.settings.max_body_bytes * 10
            root = await asyncio.to_thread(archive.unpack, data, tmp, limit)
            outcome = await local.import_(
                page.services.store, root, mode=mode, dry_run=True, references=False
            )
            digest = _digest(outcome.ops)
            if not confirmed or not outcome.ops:
                return _plan(page, mode, outcome, data, digest)
            if confirmed != digest:
                return _plan(page, mode, outcome, data, digest, changed=True)
            await local.import_(
                page.services.store,
                root,
                mode=mode,
                actor=page.user,
                keep_ops=False,
                references=False,
            )
    except (LayoutError, MissingPassword) as exc:
        return _form(page, mode, str(exc))
    except local.ImportRefused as exc:
        return _form(page, mode, str(exc))
    except DirectoryError as exc:
        return _form(page, mode, exc.message)
    counts = outcome.counts
    flash = (
        f"Imported: {counts['create']} created, {counts['update']} changed, "
        f"{counts['delete']} deleted, in one transaction."
    )
    return page.redirect(page.urls.partners(), flash)


@asynccontextmanager
async def _scratch(prefix: str) -> AsyncIterator[Path]:
    """A temporary folder made and removed in a thread: a large export or upload holds
    thousands of files, and neither step may stall the event loop."""
    tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=prefix))
    try:
        yield tmp
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, ignore_errors=True)


def _form(page: Page, mode: str, error: str) -> Response:
    return page.render(
        "transfer/import.html", 400, section="partners", modes=MODES, mode=mode, error=error
    )


def _plan(
    page: Page, mode: str, outcome: local.Outcome, data: bytes, digest: str, changed: bool = False
) -> Response:
    groups: dict[str, list[Op]] = {}
    for op in outcome.ops:
        groups.setdefault(op.pid or "Certificates", []).append(op)
    return page.render(
        "transfer/plan.html",
        section="partners",
        mode=mode,
        modes=dict(MODES),
        groups=groups,
        counts=outcome.counts,
        zip=base64.b64encode(data).decode("ascii"),
        digest=digest,
        changed=changed,
    )


def _digest(ops: list[Op]) -> str:
    """What the plan does, values included: the apply step runs only this plan."""
    h = hashlib.sha256()
    for op in ops:
        h.update(f"{op.action}|{op.entity_set}|{sorted(op.key.items())}|".encode())
        for name, value in sorted(op.values.items()):
            raw = value if isinstance(value, bytes) else str(value).encode()
            h.update(name.encode() + b"=" + hashlib.sha256(raw).digest())
    return h.hexdigest()

"""Binary parameters as documents: upload and download as files, check, edit, try.

A file goes in and comes out as it is (the API's base64 is the store's business). Before
a document is saved it is checked by what its content type promises: XML and XSD must be
well-formed (an XSD must also be a schema), JSON must parse, an XSLT must compile in
Saxon; a failed check names the line and nothing is saved unless the person asks for it.
Compiling and trying a stylesheet run in the Saxon worker processes
(:class:`~partnergate.runtime.xslt.XsltEngine`), never on the event loop, and a try is
stopped after the step time limit like an ``xslt`` step.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass

from lxml import etree
from starlette.datastructures import UploadFile
from starlette.responses import Response

from ...model.errors import DirectoryError, InvalidValue, NotFound
from ...model.rules import ENCODINGS, TEXT_CONTENT_TYPES
from ...runtime.errors import StepError
from ...runtime.exchange import Exchange
from ...runtime.pduri import PdUri
from ...security import xmldoor
from .entities import KEPT_LIMIT, binary_view, relabel
from .highlight import decode
from .kinds import BINARY, CONTENT_TYPE_NAMES, PID_FIELD, Field, content_type_for
from .pages import Page, guarded, segment, templates
from .usage import flow_uses, matches

templates.filters.setdefault("segment", segment)

MAX_PARAMS = 50


@dataclass(frozen=True)
class Check:
    ok: bool
    message: str
    line: int | None = None


def _xml_check(content: bytes, what: str) -> Check | etree._Element:
    try:
        return xmldoor.parse(content, what=what)
    except xmldoor.XmlRefused as exc:
        line = None
        try:
            etree.fromstring(
                content, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
            )
        except etree.XMLSyntaxError as syntax:
            line = syntax.lineno
        except Exception:  # noqa: BLE001 - the door's reason is the message either way
            pass
        return Check(False, exc.reason, line)


def _check_sync(content: bytes, base: str) -> Check:
    """The checks that need no Saxon; run in a thread."""
    if base == "json":
        try:
            json.loads(content)
        except UnicodeDecodeError as exc:
            return Check(False, f"not UTF-8 text ({exc.reason})")
        except json.JSONDecodeError as exc:
            return Check(
                False,
                f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                exc.lineno,
            )
        return Check(True, "valid JSON")
    root = _xml_check(content, "the document")
    if isinstance(root, Check):
        if root.line:
            return Check(False, f"{root.message} (line {root.line})", root.line)
        return root
    if base == "xsd":
        try:
            etree.XMLSchema(root)
        except etree.XMLSchemaParseError as exc:
            entry = exc.error_log.last_error if exc.error_log else None
            line = entry.line if entry is not None else None
            where = f" (line {line})" if line else ""
            return Check(
                False, f"not a usable XML schema: {entry.message if entry else exc}{where}", line
            )
        return Check(True, "a well-formed XML schema")
    return Check(True, "well-formed XML")


async def check_document(page: Page, content: bytes, content_type: str) -> Check | None:
    """The check of ``content`` for its content type, or None if the type has none."""
    base = content_type.partition(";")[0]
    if base not in ("xml", "xsl", "xsd", "json"):
        return None
    result = await asyncio.to_thread(_check_sync, content, base)
    if not result.ok or base != "xsl":
        return result
    problem = await page.services.runtime.engine.services.xslt.check(
        content, time_limit=float(page.services.settings.step_time_limit)
    )
    if problem is not None:
        line = _line_in(problem)
        return Check(False, f"does not compile: {problem}", line)
    return Check(True, "compiles with Saxon")


def _line_in(text: str) -> int | None:
    marker = " on line "
    at = text.find(marker)
    if at < 0:
        return None
    digits = ""
    for c in text[at + len(marker) :]:
        if not c.isdigit():
            break
        digits += c
    return int(digits) if digits else None


DOCUMENT_FIELDS = (PID_FIELD, *BINARY.create, Field("Id", "Parameter ID"))
"""The labels the document pages show, for a refusal that names a property."""


def _labelled(exc: DirectoryError) -> str:
    return relabel(exc.message, DOCUMENT_FIELDS)


async def _row(page: Page) -> dict[str, object]:
    pid, ident = page.path_param("pid"), page.path_param("id")
    return await page.services.store.get(BINARY.entity_set, {"Pid": pid, "Id": ident})


def _params_text(params: tuple[tuple[str, str], ...]) -> str:
    return "\n".join(f"{n}={v}" for n, v in params)


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, eq, value = line.partition("=")
        if not eq or not name.strip():
            raise InvalidValue(f"Parameter line {number} is not name=value", field="params")
        params[name.strip()] = value
    if len(params) > MAX_PARAMS:
        raise InvalidValue(f"Give at most {MAX_PARAMS} parameters", field="params")
    return params


async def _render(
    page: Page, row: dict[str, object], status_code: int = 200, **extra: object
) -> Response:
    pid, ident = str(row["Pid"]), str(row["Id"])
    content_type = str(row["ContentType"])
    base = content_type.partition(";")[0]
    value = row["Value"]
    assert isinstance(value, bytes)
    uses = []
    if base == "xsl":
        flows = list(page.services.runtime.deployment.flows)
        uses = [
            u
            for u in await asyncio.to_thread(flow_uses, flows)
            if matches(u, pid, ident) and u.what.startswith("pd:")
        ]
    context: dict[str, object] = {
        "check": None,
        "error": "",
        "text": decode(value, content_type) if base in TEXT_CONTENT_TYPES else "",
        "sample": "",
        "params": _params_text(uses[0].params) if uses else "",
        "result": None,
        "tried": None,
    }
    context.update(extra)
    return page.render(
        "documents/show.html",
        status_code,
        section="partners",
        row=row,
        pid=pid,
        ident=ident,
        base=base,
        editable=base in TEXT_CONTENT_TYPES,
        view=binary_view(row),
        uses=uses,
        kind=BINARY,
        content_types=CONTENT_TYPE_NAMES,
        encodings=ENCODINGS,
        **context,
    )


async def _upload(page: Page) -> tuple[bytes, str] | None:
    """The chosen file, or the one a refused form carried back (see :func:`_kept`)."""
    upload = page.form.get("File")
    if isinstance(upload, UploadFile) and upload.filename:
        return await upload.read(), upload.filename
    if kept := page.text("Kept"):
        try:
            return base64.b64decode(kept, validate=True), page.text("KeptName") or "upload"
        except ValueError:  # binascii.Error, or text that is not ASCII
            raise InvalidValue("Choose the file again", field="File") from None
    return None


def _kept(page: Page, uploaded: tuple[bytes, str] | None) -> dict[str, str]:
    """An upload as hidden fields of the refused form, since a browser cannot refill a file
    input: the next submission uses it unless another file is chosen."""
    limit = min(KEPT_LIMIT, page.services.settings.max_binary_bytes)
    if uploaded is None or len(uploaded[0]) > limit:
        return {}
    content, name = uploaded
    return {
        "Kept": base64.b64encode(content).decode("ascii"),
        "KeptName": name,
        "KeptSize": str(len(content)),
    }


def _content_type(page: Page, filename: str, current: str = "") -> str:
    chosen = page.text("ContentType") or "auto"
    if chosen == "keep":
        return current
    if chosen == "auto":
        guessed = content_type_for(filename) if filename else None
        if guessed is None:
            raise InvalidValue(
                f"Choose a content type: it cannot be told from the file name '{filename}'",
                field="ContentType",
            )
        return guessed
    if chosen not in CONTENT_TYPE_NAMES:
        raise InvalidValue(f"Unknown content type '{chosen}'", field="ContentType")
    return chosen


async def _save(
    page: Page, pid: str, ident: str, content: bytes, content_type: str, *, create: bool
) -> Check | None:
    """Check, then store unless the check failed and the person did not insist."""
    check = await check_document(page, content, content_type)
    if check is not None and not check.ok and page.form.get("force") != "on":
        return check
    store = page.services.store
    values = {"Value": content, "ContentType": content_type}
    if create:
        await store.create(BINARY.entity_set, {"Pid": pid, "Id": ident, **values}, page.user)
    else:
        await store.update(BINARY.entity_set, {"Pid": pid, "Id": ident}, values, page.user)
    return None


@guarded
async def show(page: Page) -> Response:
    row = await _row(page)
    if page.request.method == "GET":
        return await _render(page, row)
    pid, ident = str(row["Pid"]), str(row["Id"])
    action = page.text("action")
    current = str(row["ContentType"])
    try:
        if action == "upload":
            uploaded = await _upload(page)
            if uploaded is None:
                raise InvalidValue("Choose a file to upload", field="File")
            content, filename = uploaded
            content_type = _content_type(page, filename, current)
        elif action == "save":
            content_type = current
            encoding = current.partition(";")[2].partition("=")[2].strip() or "utf-8"
            try:
                content = page.text("Text").replace("\r\n", "\n").encode(encoding)
            except (UnicodeEncodeError, LookupError) as exc:
                raise InvalidValue(
                    f"The text cannot be written in {encoding}: {exc}", field="Text"
                ) from None
        elif action == "try":
            return await _try(page, row)
        else:
            raise InvalidValue("Unknown action")
        failed = await _save(page, pid, ident, content, content_type, create=False)
    except DirectoryError as exc:
        typed = {"text": page.text("Text")} if action == "save" else {}
        return await _render(page, row, exc.status, error=_labelled(exc), **typed)
    if failed is not None:
        shown = page.text("Text") if action == "save" else decode(content, content_type)
        return await _render(
            page,
            row,
            422,
            check=failed,
            error="Nothing was saved: the check failed.",
            text=shown,
            unsaved=True,
        )
    return page.redirect(
        page.urls.base + f"/documents/{segment(pid)}/{segment(ident)}",
        f"Binary parameter '{ident}' saved ({len(content)} bytes).",
    )


async def _try(page: Page, row: dict[str, object]) -> Response:
    """Run the stored stylesheet over a sample message, as an ``xslt`` step would."""
    pid, ident = str(row["Pid"]), str(row["Id"])
    sample = page.text("sample")
    uploaded = await _upload(page)
    body = uploaded[0] if uploaded else sample.encode("utf-8")
    try:
        params = _parse_params(page.text("params"))
        if not body.strip():
            raise InvalidValue("Give a sample message", field="sample")
    except DirectoryError as exc:
        return await _render(
            page, row, exc.status, error=exc.message, sample=sample, params=page.text("params")
        )
    exchange = Exchange.inbound(body, [("Content-Type", "application/xml")], user=page.user)
    xslt = page.services.runtime.engine.services.xslt
    try:
        result = await xslt.transform(
            PdUri(pid, ident, "Binary"),
            exchange,
            params,
            time_limit=float(page.services.settings.step_time_limit),
        )
    except StepError as exc:
        tried = {
            "ok": False,
            "message": f"{exc.status}: {exc.text}",
            "body": "",
            "headers": {},
            "properties": {},
        }
    else:
        tried = {
            "ok": True,
            "message": f"{len(result.body)} bytes",
            "body": result.body.decode("utf-8", errors="replace"),
            "headers": result.headers,
            "properties": result.properties,
        }
    return await _render(page, row, sample=sample, params=page.text("params"), tried=tried)


def _new_form(
    page: Page,
    values: dict[str, str],
    status_code: int = 200,
    *,
    error: str = "",
    check: Check | None = None,
) -> Response:
    return page.render(
        "documents/new.html",
        status_code,
        section="partners",
        values=values,
        error=error,
        check=check,
        content_types=CONTENT_TYPE_NAMES,
    )


@guarded
async def new(page: Page) -> Response:
    pid = page.query.get("pid", "") if page.request.method == "GET" else page.text("pid").strip()
    values = {
        "pid": pid,
        "id": page.text("id").strip(),
        "ContentType": page.text("ContentType") or "auto",
    }
    if page.request.method == "GET":
        return _new_form(page, values)
    check = None
    uploaded = None
    try:
        uploaded = await _upload(page)
        if uploaded is None:
            raise InvalidValue("Choose a file to upload", field="File")
        content, filename = uploaded
        ident = values["id"] or filename.rsplit("/", 1)[-1]
        values["id"] = ident
        content_type = _content_type(page, filename)
        check = await _save(page, pid, ident, content, content_type, create=True)
    except DirectoryError as exc:
        values.update(_kept(page, uploaded))
        return _new_form(page, values, exc.status, error=_labelled(exc))
    if check is not None:
        values.update(_kept(page, uploaded))
        return _new_form(
            page, values, 422, error="Nothing was saved: the check failed.", check=check
        )
    return page.redirect(
        page.urls.base + f"/documents/{segment(pid)}/{segment(ident)}",
        f"Binary parameter '{ident}' added to partner '{pid}' ({len(content)} bytes).",
    )


__all__ = ["check_document", "new", "show", "NotFound"]

"""Adding, changing and deleting one entity of a partner; downloading a binary value.

Every change is a call of :class:`~partnergate.store.directory.DirectoryStore`, so the UI
obeys the same rules as the API, and a refusal is shown with the rule's own message next
to the field it names (:attr:`DirectoryError.field`).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.responses import Response

from ...model.errors import DirectoryError, InvalidValue, NotFound
from ...model.rules import ENCODINGS, TEXT_CONTENT_TYPES
from ...security.certificates import CertificateError, CertificateInfo, load_certificate
from ..downloads import download_headers
from .directory import load_partner
from .highlight import LANGUAGES, decode, highlight
from .kinds import BINARY, DOWNLOAD, KINDS, Field, Kind, content_type_for
from .pages import Page, guarded

FormValues = dict[str, str]


def kind_of(page: Page) -> Kind:
    kind = KINDS.get(str(page.request.path_params["kind"]))
    if kind is None:
        raise NotFound(f"There is no kind of entity called '{page.request.path_params['kind']}'")
    return kind


def shown_values(page: Page, fields: tuple[Field, ...]) -> FormValues:
    """What the person typed, to show again if the form is refused; never a password."""
    shown: FormValues = {}
    for f in fields:
        if f.widget == "binary":
            shown.update({k: page.text(k) for k in ("ContentType", "Encoding", "Text")})
        elif f.widget != "password":
            shown[f.name] = page.text(f.name)
    return shown


async def read_values(
    page: Page, fields: tuple[Field, ...], current: dict[str, object] | None = None
) -> dict[str, object]:
    """The entity values a form gives.

    Raises :class:`InvalidValue` when the form itself is incomplete (a binary parameter
    without content or content type); the store checks everything else.
    """
    values: dict[str, object] = {}
    for f in fields:
        if f.widget == "binary":
            values.update(await _binary_values(page, current))
        else:
            values[f.name] = page.text(f.name)
    return values


async def _binary_values(page: Page, current: dict[str, object] | None) -> dict[str, object]:
    upload = page.form.get("File")
    text = page.text("Text")
    encoding = page.text("Encoding")
    content: bytes | None = None
    filename = ""
    if isinstance(upload, UploadFile) and upload.filename:
        filename = upload.filename
        content = await upload.read()
    elif text:
        if encoding and encoding.upper() not in ENCODINGS:
            raise InvalidValue(f"Unknown encoding '{encoding}'", field="ContentType")
        try:
            content = text.encode(encoding or "utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidValue(
                f"The text cannot be written in {encoding}: {exc.reason}", field="Value"
            ) from None
    chosen = page.text("ContentType")
    if chosen == "auto":
        guessed = content_type_for(filename) if filename else None
        if guessed is None:
            raise InvalidValue(
                "Choose a content type"
                + (f": it cannot be told from the file name '{filename}'" if filename else ""),
                field="ContentType",
            )
        chosen = guessed
    if encoding and chosen in TEXT_CONTENT_TYPES:
        chosen = f"{chosen};encoding={encoding}"
    values: dict[str, object] = {"ContentType": chosen}
    if content is not None:
        values["Value"] = content
    elif current is None:
        raise InvalidValue("Choose a file to upload or paste the content", field="Value")
    return values


def refused(exc: DirectoryError, fields: tuple[Field, ...]) -> tuple[dict[str, str], str]:
    """Place a rule's message next to its field, or above the form if no field is shown."""
    names = {f.name for f in fields}
    if any(f.widget == "binary" for f in fields):
        names.add("ContentType")
    if exc.field in names:
        return {str(exc.field): exc.message}, ""
    return {}, exc.message


def binary_view(row: dict[str, object]) -> dict[str, Any]:
    """What the page shows of a binary value: highlighted text, a certificate, or its size."""
    value = row["Value"]
    assert isinstance(value, bytes)
    content_type = str(row["ContentType"])
    base = content_type.partition(";")[0]
    view: dict[str, Any] = {"size": len(value), "base": base, "language": LANGUAGES.get(base)}
    if view["language"]:
        text = decode(value, content_type)
        view["html"] = highlight(text, view["language"])
        view["lines"] = max(1, text.count("\n") + (not text.endswith("\n")))
    elif base == "crt":
        try:
            view["certificate"] = CertificateInfo.from_certificate(load_certificate(value))
        except CertificateError as exc:
            view["problem"] = exc.message
    return view


def form_page(
    page: Page,
    kind: Kind,
    pid: str,
    action: str,
    *,
    status_code: int = 200,
    row: dict[str, object] | None = None,
    values: FormValues | None = None,
    errors: dict[str, str] | None = None,
    error: str = "",
) -> Response:
    fields = kind.create if action == "new" else kind.change
    return page.render(
        "entities/form.html",
        status_code,
        section="partners",
        kind=kind,
        pid=pid,
        action=action,
        fields=fields,
        row=row,
        values=values or {},
        errors=errors or {},
        error=error,
        view=binary_view(row) if row is not None and kind is BINARY else None,
        encodings=ENCODINGS,
    )


async def current_entity(page: Page, kind: Kind, pid: str) -> dict[str, object]:
    key = kind.key_from(pid, page.query)
    if key is None:
        names = ", ".join(param for param, _ in kind.key_params)
        raise NotFound(f"The link does not name a {kind.title.lower()} (it needs {names})")
    row = await page.services.store.get(kind.entity_set, key)
    if row.get("Pid") != pid:
        raise NotFound(f"{kind.title} '{kind.label_of(row)}' does not belong to partner '{pid}'")
    return row


@guarded
async def new(page: Page) -> Response:
    kind, pid = kind_of(page), page.path_param("pid")
    if page.request.method == "GET":
        if await load_partner(page.services.store, pid) is None:
            raise NotFound(f"Partner '{pid}' does not exist")
        return form_page(page, kind, pid, "new")
    try:
        entity = await read_values(page, kind.create)
        created = await page.services.store.create(
            kind.entity_set, {**entity, "Pid": pid}, page.user
        )
    except DirectoryError as exc:
        errors, error = refused(exc, kind.create)
        return form_page(
            page,
            kind,
            pid,
            "new",
            status_code=exc.status,
            values=shown_values(page, kind.create),
            errors=errors,
            error=error,
        )
    return page.redirect(
        page.urls.partner(pid, kind.slug), f"{kind.title} '{kind.label_of(created)}' added."
    )


@guarded
async def edit(page: Page) -> Response:
    kind, pid = kind_of(page), page.path_param("pid")
    row = await current_entity(page, kind, pid)
    if page.request.method == "GET":
        shown = [f.name for f in kind.change if f.widget not in ("password", "binary")]
        values = {name: str(row.get(name) or "") for name in shown}
        return form_page(page, kind, pid, "edit", row=row, values=values)
    store = page.services.store
    try:
        changes = await read_values(page, kind.change, current=row)
        if kind.upsert:
            key = {prop: row[prop] for _, prop in kind.key_params}
            await store.create(kind.entity_set, {**key, "Pid": pid, **changes}, page.user)
        else:
            await store.update(kind.entity_set, kind.key_of(row), changes, page.user)
    except DirectoryError as exc:
        errors, error = refused(exc, kind.change)
        return form_page(
            page,
            kind,
            pid,
            "edit",
            status_code=exc.status,
            row=row,
            values=shown_values(page, kind.change),
            errors=errors,
            error=error,
        )
    label = kind.label_of(row)
    moved_to = changes.get("Pid")
    if isinstance(moved_to, str) and moved_to != pid:
        gone = await load_partner(store, pid) is None
        note = f" Partner '{pid}' had nothing else and is gone." if gone else ""
        return page.redirect(
            page.urls.partner(moved_to, kind.slug),
            f"{kind.title} '{label}' moved here from partner '{pid}'.{note}",
        )
    return page.redirect(page.urls.partner(pid, kind.slug), f"{kind.title} '{label}' saved.")


@guarded
async def delete(page: Page) -> Response:
    kind, pid = kind_of(page), page.path_param("pid")
    row = await current_entity(page, kind, pid)
    store = page.services.store
    label = kind.label_of(row)
    if page.request.method == "GET":
        parts = await load_partner(store, pid) or {}
        last = sum(len(rows) for rows in parts.values()) == 1
        return page.render(
            "entities/delete.html", section="partners", kind=kind, pid=pid, row=row, last=last
        )
    await store.delete(kind.entity_set, kind.key_of(row), page.user)
    if await load_partner(store, pid) is None:
        return page.redirect(
            page.urls.partners(),
            f"{kind.title} '{label}' deleted. It was the last part of partner '{pid}', "
            "so the partner is gone.",
        )
    return page.redirect(page.urls.partner(pid, kind.slug), f"{kind.title} '{label}' deleted.")


@guarded
async def download(page: Page) -> Response:
    """The stored bytes as an attachment, never rendered inline on the UI's origin."""
    pid = page.path_param("pid")
    row = await current_entity(page, BINARY, pid)
    media_type, extension = DOWNLOAD.get(
        str(row["ContentType"]).partition(";")[0], ("application/octet-stream", "bin")
    )
    name = str(row["Id"])
    if not name.lower().endswith("." + extension):
        name += "." + extension
    value = row["Value"]
    assert isinstance(value, bytes)
    return Response(value, media_type=media_type, headers=download_headers(name))

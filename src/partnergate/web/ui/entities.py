"""Adding, changing and deleting one entity of a partner; downloading a binary value.

Every change is a call of :class:`~partnergate.store.directory.DirectoryStore`, so the UI
obeys the same rules as the API, and a refusal is shown with the rule's own message next
to the field it names (:attr:`DirectoryError.field`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from typing import Any

from markupsafe import Markup
from starlette.datastructures import UploadFile
from starlette.responses import Response

from ...model.errors import AlreadyExists, DirectoryError, InvalidValue, NotFound
from ...model.rules import ENCODINGS, TEXT_CONTENT_TYPES, check_identifier
from ...security import xmldoor
from ...security.certificates import CertificateError, CertificateInfo, load_certificate
from ..downloads import download_headers
from .accounts import unknown_sender_note
from .directory import load_partner
from .highlight import LANGUAGES, decode, highlight
from .kinds import AUTHORIZED_USER, BINARY, DOWNLOAD, KINDS, Field, Kind, content_type_for
from .pages import Page, guarded

FormValues = dict[str, str]


def kind_of(page: Page) -> Kind:
    kind = KINDS.get(str(page.request.path_params["kind"]))
    if kind is None:
        raise NotFound(f"There is no kind of entity called '{page.request.path_params['kind']}'")
    return kind


KEPT_LIMIT = 4 * 1024 * 1024
"""Largest uploaded file a refused form carries back, so it need not be chosen again."""


def shown_values(page: Page, fields: tuple[Field, ...]) -> FormValues:
    """What the person typed, to show again if the form is refused; never a password.

    An uploaded file comes back as a hidden field, since a browser cannot refill a file
    input: the next submission uses it unless another file or text is given.
    """
    shown: FormValues = {}
    for f in fields:
        if f.widget == "binary":
            shown.update({k: page.text(k) for k in ("ContentType", "Encoding", "Text")})
            kept = page.form.get("_kept_bytes")
            limit = min(KEPT_LIMIT, page.services.settings.max_binary_bytes)
            if isinstance(kept, bytes) and len(kept) <= limit:
                shown["Kept"] = base64.b64encode(kept).decode("ascii")
                shown["KeptName"] = page.text("_kept_name") or "upload"
                shown["KeptSize"] = str(len(kept))
        elif f.widget != "password":
            shown[f.name] = page.text(f.name)
    return shown


_PROPERTY = re.compile(r"^Property '(\w+)'")


def check_fields(page: Page, fields: tuple[Field, ...]) -> dict[str, str]:
    """Every field's own mistake at once (empty, too long, characters), in its label's words.

    The store checks one value after another and stops at the first; a form shows all.
    """
    errors: dict[str, str] = {}
    for f in fields:
        if f.widget in ("binary", "password"):
            continue
        value = page.text(f.name)
        if f.name == "Pid":
            value = value.strip()
        if f.required and not value:
            errors[f.name] = f"Enter the {f.label.lower() if f.label != 'ID' else 'ID'}"
        elif f.max_length is not None and len(value) > f.max_length:
            errors[f.name] = (
                f"{f.label} is {len(value)} characters long; at most {f.max_length} are allowed"
            )
        elif f.mono and f.widget in ("text", "partner") and value:
            try:
                check_identifier(f.name, value)
            except InvalidValue as exc:
                errors[f.name] = relabel(exc.message, fields)
    return errors


def relabel(message: str, fields: tuple[Field, ...]) -> str:
    """A rule's message with the property named as the form's label names it."""
    labels = {f.name: f.label for f in fields}
    found = _PROPERTY.match(message)
    if found and found.group(1) in labels:
        return labels[found.group(1)] + message[found.end() :]
    return message


async def existing(page: Page, kind: Kind, pid: str, values: dict[str, object]) -> Markup | None:
    """Where the entity that has the key already is, as a sentence with a link to it."""
    store, urls = page.services.store, page.urls
    try:
        if kind.slug == "alternative-partners":
            key = kind.key_from(pid, {p: str(values.get(prop, "")) for p, prop in kind.key_params})
            assert key is not None
            row = await store.get(kind.entity_set, key)
        elif kind.slug == "authorized-users":
            row = await store.get(kind.entity_set, {"User": str(values.get("User", "")).lower()})
        else:
            row = await store.get(kind.entity_set, {"Pid": pid, "Id": str(values.get("Id", ""))})
    except DirectoryError:
        return None
    owner = str(row["Pid"])
    what = f"{kind.title} {kind.label_of(row)}"
    if owner == pid:
        return Markup('{} already exists on this partner: <a href="{}">open it</a>.').format(
            what, urls.entity(pid, kind, "edit", row)
        )
    return Markup(
        '{} already belongs to partner <a class="mono" href="{}">{}</a>; '
        "an entry can belong to one partner only."
    ).format(what, urls.partner(owner, kind.slug), owner)


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
        _keep(page, content, filename)
    elif not text and page.text("Kept"):
        try:
            content = base64.b64decode(page.text("Kept"), validate=True)
        except binascii.Error:
            raise InvalidValue("Choose the file again", field="Value") from None
        filename = page.text("KeptName")
        _keep(page, content, filename)
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
        if not page.text("Unchecked"):
            problem = await asyncio.to_thread(content_problem, content, chosen.partition(";")[0])
            if problem:
                raise InvalidValue(problem, field="Value")
        values["Value"] = content
    elif current is None:
        raise InvalidValue("Choose a file to upload or paste the content", field="Value")
    return values


async def gather(
    page: Page, fields: tuple[Field, ...], current: dict[str, object] | None = None
) -> dict[str, object]:
    """The form's values, or :class:`FormErrors` naming every field that is wrong."""
    errors = check_fields(page, fields)
    try:
        values = await read_values(page, fields, current)
    except InvalidValue as exc:
        if not errors or exc.field is None:
            raise
        errors.setdefault(exc.field, relabel(exc.message, fields))
    if errors:
        raise FormErrors(errors)
    return values


def _keep(page: Page, content: bytes, filename: str) -> None:
    """Hold an upload in the form, so that a refused form can send it back to the page."""
    page.form._dict["_kept_bytes"] = content  # type: ignore[attr-defined]
    page.form._dict["_kept_name"] = filename  # type: ignore[attr-defined]


NOT_CHECKED = "Save it anyway"
"""The label of the box that stores content which does not parse as its content type."""


def content_problem(content: bytes, base: str) -> str:
    """Why content does not read as its declared type, or "" (XML kinds and JSON only)."""
    if base in ("xml", "xsl", "xsd"):
        try:
            xmldoor.check(content, what="The content")
        except xmldoor.XmlRefused as exc:
            return (
                f"{exc.reason}. It was not saved: check the file and the content type "
                f"'{base}', or tick '{NOT_CHECKED}'."
            )
    elif base == "json":
        try:
            json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
            return (
                f"The content is not valid JSON{where}. It was not saved: check the file and "
                f"the content type 'json', or tick '{NOT_CHECKED}'."
            )
    return ""


def refused(exc: DirectoryError, fields: tuple[Field, ...]) -> tuple[dict[str, str], str]:
    """Place a rule's message next to its field, or above the form if no field is shown."""
    names = {f.name for f in fields}
    if any(f.widget == "binary" for f in fields):
        names.add("ContentType")
    message = relabel(exc.message, fields)
    if exc.field in names:
        return {str(exc.field): message}, ""
    return {}, message


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
    error: str | Markup = "",
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
        not_checked=NOT_CHECKED,
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
    entity: dict[str, object] = {}
    try:
        entity = await gather(page, kind.create)
        created = await page.services.store.create(
            kind.entity_set, {**entity, "Pid": pid}, page.user
        )
    except DirectoryError as exc:
        errors, error = refused(exc, kind.create)
        if isinstance(exc, FormErrors):
            errors = {**exc.errors, **errors}
        if isinstance(exc, AlreadyExists) and (where := await existing(page, kind, pid, entity)):
            errors, error = {}, where
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
    done = f"{kind.title} '{kind.label_of(created)}' added."
    note = await unknown_sender_note(page, str(created["User"])) if kind is AUTHORIZED_USER else ""
    return page.redirect(page.urls.added(pid, kind, created), done + note, "warn" if note else "ok")


class FormErrors(InvalidValue):
    """Several fields of one form are wrong; each message goes next to its field."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(next(iter(errors.values())), field=next(iter(errors)))
        self.errors = errors


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
        changes = await gather(page, kind.change, current=row)
        target = changes.get("Pid")
        new_partner = isinstance(target, str) and await load_partner(store, target) is None
        if kind.upsert:
            key = {prop: row[prop] for _, prop in kind.key_params}
            await store.create(kind.entity_set, {**key, "Pid": pid, **changes}, page.user)
        else:
            await store.update(kind.entity_set, kind.key_of(row), changes, page.user)
    except DirectoryError as exc:
        errors, error = refused(exc, kind.change)
        if isinstance(exc, FormErrors):
            errors = {**exc.errors, **errors}
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
        if new_partner:
            note += f" Partner '{moved_to}' is new: it had nothing before; check the spelling."
        return page.redirect(
            page.urls.partner(moved_to, kind.slug),
            f"{kind.title} '{label}' moved here from partner '{pid}'.{note}",
            "warn" if new_partner else "ok",
        )
    return page.redirect(page.urls.added(pid, kind, row), f"{kind.title} '{label}' saved.")


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

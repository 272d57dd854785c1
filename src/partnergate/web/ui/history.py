"""A partner's change history with diffs and restore; copying entries and partners;
renaming a partner.

The history is read from the store's ``AuditEntries`` set with the same filter engine
as the API; one change (a transaction, e.g. a rename) is shown as one block.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, TypeVar

from starlette.responses import Response

from ...model.errors import DirectoryError, NotFound
from ...odata.filter import Compare, CompareOp, Literal, Or, OrderBy, PropertyRef, ValueType
from ...store import audit
from ...store.copies import COPIED_WITH_PARTNER, copy_entry, copy_partner, rename_partner
from ...store.directory import ListRequest
from ...store.restore import restore as restore_entry
from ...store.restore import restore_change
from .directory import SECTIONS, Parts, load_partner
from .entities import current_entity, kind_of, refused
from .highlight import decode
from .kinds import ALTERNATIVE, AUTHORIZED_USER, KINDS, Field, Kind
from .pages import Page, guarded

T = TypeVar("T")

PAGE_SIZE = 50
TEXT_TYPES = ("xml", "xsl", "xsd", "json", "text")
SET_KINDS: dict[str, Kind] = {k.entity_set: k for k in KINDS.values()}

NEW_PID = Field(
    "Pid",
    "New partner ID",
    help="Letters, digits and - . _ ~ < > @, at most 60.",
    max_length=60,
    mono=True,
)
TARGET_PID = Field(
    "Pid",
    "Copy to partner",
    help="An existing partner, or a new partner ID.",
    max_length=60,
    mono=True,
    picker="partners",
)
NEW_ID = Field(
    "Id",
    "ID of the copy",
    help="Alternative IDs are unique across partners.",
    max_length=255,
    mono=True,
)
COPY_ID = Field(
    "Id",
    "ID of the copy",
    help="Leave empty to keep the ID.",
    max_length=1500,
    required=False,
    mono=True,
)
NEW_USER = Field(
    "User",
    "User of the copy",
    help="A user is authorized for one partner only.",
    max_length=150,
    picker="users",
)


@dataclass
class FieldChange:
    name: str
    before: str
    after: str
    changed: bool
    lines: list[tuple[str, str]] = field(default_factory=list)
    """A unified diff of long or multi-line text: (kind, line), kind ``+``, ``-``, `` ``, ``@``."""


@dataclass
class Entry:
    row: dict[str, object]
    kind: Kind | None
    fields: list[FieldChange]

    @property
    def title(self) -> str:
        return self.kind.title if self.kind else str(self.row["EntitySet"])

    @property
    def restorable(self) -> bool:
        return self.row["Operation"] != audit.RENAME


@dataclass
class Change:
    change_id: str
    entries: list[Entry]

    @property
    def first(self) -> dict[str, object]:
        return self.entries[0].row


def _shown(name: str, value: object) -> str:
    if value is None:
        return ""
    if name == "Value" and isinstance(value, dict):
        size = value.get("size", 0)
        digest = str(value.get("sha256", ""))[:12]
        kept = "" if "base64" in value else ", content not kept"
        return f"{size} bytes, SHA-256 {digest}…{kept}"
    return str(value)


def _text_of(state: dict[str, Any] | None) -> str | None:
    """A binary value of a text content type, as text, if the history kept it."""
    if state is None:
        return None
    base = str(state.get("ContentType", "")).partition(";")[0]
    content = audit.binary_value(state.get("Value"))
    if base not in TEXT_TYPES or content is None:
        return None
    return decode(content, str(state.get("ContentType")))


def _unified(before: str, after: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=2)
    for line in list(lines)[2:]:
        out.append((line[:1] if line[:1] in "+-@" else " ", line[1:] if line[:1] != "@" else line))
    return out


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[FieldChange]:
    """Field by field; a changed text of several lines also as a unified diff."""
    names: list[str] = []
    for state in (before, after):
        for name in state or {}:
            if name not in names:
                names.append(name)
    changes: list[FieldChange] = []
    for name in names:
        old = (before or {}).get(name)
        new = (after or {}).get(name)
        change = FieldChange(name, _shown(name, old), _shown(name, new), old != new)
        if change.changed and before is not None and after is not None:
            old_text, new_text = old, new
            if name == "Value" and isinstance(old, dict):
                old_text, new_text = _text_of(before), _text_of(after)
            if isinstance(old_text, str) and isinstance(new_text, str):
                if "\n" in old_text + new_text or len(old_text) + len(new_text) > 160:
                    change.lines = _unified(old_text, new_text)
        changes.append(change)
    return changes


def _is(prop: str, value: str) -> Compare:
    return Compare(
        CompareOp.EQ, PropertyRef(prop, ValueType.STRING), Literal(value, ValueType.STRING)
    )


@guarded
async def index(page: Page) -> Response:
    """Newest first, one block per change, in pages of entries."""
    pid = page.path_param("pid")
    request = ListRequest(
        filter=Or((_is("Pid", pid), _is("PreviousPid", pid))),
        orderby=(OrderBy(PropertyRef("Id", ValueType.STRING), True),),
        top=PAGE_SIZE + 1,
        skip=(page.number - 1) * PAGE_SIZE,
    )
    rows = (await page.services.store.list("AuditEntries", request)).rows
    more = len(rows) > PAGE_SIZE
    entries = [
        Entry(
            row,
            SET_KINDS.get(str(row["EntitySet"])),
            diff(audit.parse(row["Before"]), audit.parse(row["After"])),
        )
        for row in rows[:PAGE_SIZE]
    ]
    changes = [
        Change(str(change_id), list(group))
        for change_id, group in groupby(entries, key=lambda e: e.row["ChangeId"])
    ]
    exists = await load_partner(page.services.store, pid) is not None
    return page.render(
        "history/list.html",
        section="partners",
        pid=pid,
        changes=changes,
        exists=exists,
        number=page.number,
        more=more,
        base=page.urls.partner(pid),
    )


async def _undo(page: Page, work: Callable[[Any], Awaitable[str]]) -> Response:
    """POST only: run *work* in one transaction and go back to the partner's history."""
    back = page.urls.partner(page.path_param("pid")) + "/history"
    if page.request.method != "POST":
        return page.redirect(back)
    try:
        async with page.services.store.begin(page.user) as directory:
            done = await work(directory)
    except DirectoryError as exc:
        return page.redirect(back, f"Nothing was restored: {exc.message}", "error")
    return page.redirect(back, done)


@guarded
async def restore(page: Page) -> Response:
    """POST only: change the entity back to its state before the entry's change."""
    entry_id = str(page.request.path_params["id"])

    async def work(directory: Any) -> str:
        return f"Restored: {await restore_entry(directory, entry_id, page.user)}."

    return await _undo(page, work)


@guarded
async def undo_change(page: Page) -> Response:
    """POST only: undo every entry of one change, in one transaction."""
    change_id = str(page.request.path_params["change"])

    async def work(directory: Any) -> str:
        count = await restore_change(directory, change_id, page.user)
        return f"Restored: the change of {count} entities is undone."

    return await _undo(page, work)


def _form(
    page: Page,
    template: str,
    status_code: int = 200,
    *,
    error: str = "",
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    **context: object,
) -> Response:
    return page.render(
        template,
        status_code,
        section="partners",
        error=error,
        errors=errors or {},
        values=values or {},
        **context,
    )


async def _move(
    page: Page,
    context: dict[str, Any],
    values: dict[str, str],
    work: Callable[[Any], Awaitable[T]],
    done: Callable[[T], Response],
) -> Response:
    """Run *work* in one transaction; a refusal shows the form again with what was typed."""
    try:
        async with page.services.store.begin(page.user) as directory:
            result = await work(directory)
    except DirectoryError as exc:
        errors, error = refused(exc, context["fields"])
        return _form(
            page,
            "history/move.html",
            exc.status,
            error=error,
            errors=errors,
            values=values,
            **context,
        )
    return done(result)


async def _partner(page: Page, pid: str) -> Parts:
    parts = await load_partner(page.services.store, pid)
    if parts is None:
        raise NotFound(f"Partner '{pid}' does not exist")
    return parts


@guarded
async def rename(page: Page) -> Response:
    pid = page.path_param("pid")
    parts = await _partner(page, pid)
    total = sum(len(rows) for rows in parts.values())
    context = {"pid": pid, "fields": (NEW_PID,), "total": total, "mode": "rename"}
    if page.request.method == "GET":
        return _form(page, "history/move.html", **context)
    new = page.text("Pid").strip()
    return await _move(
        page,
        context,
        {"Pid": new},
        lambda directory: rename_partner(directory, pid, new, page.user),
        lambda moved: page.redirect(
            page.urls.partner(new),
            f"Partner '{pid}' renamed to '{new}': {moved.total} "
            f"entit{'y' if moved.total == 1 else 'ies'} moved in one change.",
        ),
    )


@guarded
async def copy(page: Page) -> Response:
    pid = page.path_param("pid")
    parts = await _partner(page, pid)
    copied = sum(len(parts[k.slug]) for k in SECTIONS if k.entity_set in COPIED_WITH_PARTNER)
    left = sum(len(parts[k.slug]) for k in SECTIONS if k.entity_set not in COPIED_WITH_PARTNER)
    context = {"pid": pid, "fields": (TARGET_PID,), "total": copied, "left": left, "mode": "copy"}
    if page.request.method == "GET":
        return _form(page, "history/move.html", **context)
    target = page.text("Pid").strip()
    return await _move(
        page,
        context,
        {"Pid": target},
        lambda directory: copy_partner(directory, pid, target, page.user),
        lambda moved: page.redirect(
            page.urls.partner(target),
            f"{moved.total} parameter{'' if moved.total == 1 else 's'} of '{pid}' copied here.",
        ),
    )


def _entry_fields(kind: Kind) -> tuple[Field, ...]:
    if kind is ALTERNATIVE:
        return (TARGET_PID, NEW_ID)
    if kind is AUTHORIZED_USER:
        return (TARGET_PID, NEW_USER)
    return (TARGET_PID, COPY_ID)


@guarded
async def copy_one(page: Page) -> Response:
    """Copy one entry to another (or the same, under another ID) partner."""
    kind, pid = kind_of(page), page.path_param("pid")
    row = await current_entity(page, kind, pid)
    fields = _entry_fields(kind)
    context = {
        "pid": pid,
        "kind": kind,
        "row": row,
        "fields": fields,
        "mode": "entry",
        "action": page.request.url.path + "?" + kind.query_of(row),
    }
    if page.request.method == "GET":
        return _form(page, "history/move.html", **context)
    values = {f.name: page.text(f.name).strip() for f in fields}
    target = values.pop("Pid")
    values = {name: value for name, value in values.items() if value}
    return await _move(
        page,
        context,
        {"Pid": target, **values},
        lambda directory: copy_entry(
            directory, kind.entity_set, kind.key_of(row), target, page.user, values
        ),
        lambda created: page.redirect(
            page.urls.partner(target, kind.slug),
            f"{kind.title} '{kind.label_of(created)}' copied from partner '{pid}'.",
        ),
    )


__all__ = ["copy", "copy_one", "diff", "index", "rename", "restore"]

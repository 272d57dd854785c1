"""The partner list, a partner's page, creating a partner and deleting one.

A partner has no row of its own: it exists while any entity names its Pid. So a new
partner is created by giving its first entity, and deleting it deletes all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from markupsafe import Markup
from starlette.responses import Response

from ...model.errors import AlreadyExists, DirectoryError, NotFound
from ...model.rules import ENCODINGS
from ...odata.filter import PropertyRef, ValueType
from ...store.directory import Directory, ListRequest
from .accounts import unknown_sender_note
from .certificates import Mapping
from .directory import (
    PAGE_SIZE,
    SECTIONS,
    any_of,
    contains,
    load_partner,
    mappings_of_users,
    partner_page,
    partner_parts,
    pid_contains,
    pid_is,
)
from .entities import FormErrors, existing, gather, refused, shown_values
from .kinds import AUTHORIZED_USER, BINARY, KINDS, PID_FIELD, STRING, Kind
from .monitor import duration, recent_messages
from .pages import Page, guarded

CHIPS_SHOWN = 40
"""Entities named one by one per kind on the delete confirmation; the rest are counted."""


SEARCHED: tuple[tuple[str, str, str], ...] = (
    ("AlternativePartners", "Id", "alternative ID"),
    ("StringParameters", "Value", "parameter value"),
    ("StringParameters", "Id", "parameter ID"),
    ("AuthorizedUsers", "User", "authorized user"),
)
"""Besides the Pid, where a search of the partner list looks: (entity set, property, name)."""
SEARCH_CAP = 1000
"""Partners at most that one search collects from each place it looks."""


@dataclass
class Summary:
    """One line of the partner list: how much a partner holds and when it last changed."""

    pid: str
    counts: dict[str, int] = field(default_factory=dict)
    address: str | None = None
    changed: datetime | None = None
    changed_by: str = ""
    matched: str = ""


@dataclass
class PartnerList:
    summaries: list[Summary]
    number: int
    size: int
    total: int | None
    """Partners in the whole list; None if counting them ran past the time limit."""
    has_next: bool
    capped: bool = False

    @property
    def first(self) -> int:
        return (self.number - 1) * self.size + 1

    @property
    def last(self) -> int:
        return self.first + len(self.summaries) - 1

    @property
    def pages(self) -> int | None:
        return None if self.total is None else max(1, -(-self.total // self.size))

    @property
    def window(self) -> list[int]:
        """Page numbers to link around the current one."""
        last = self.pages or self.number + 1
        return list(range(max(1, self.number - 2), min(last, self.number + 2) + 1))


async def _count_partners(directory: Directory, search: str) -> int | None:
    request = ListRequest(filter=pid_contains(search) if search else None, top=0, count=True)
    try:
        return (await directory.list("Partners", request)).count
    except DirectoryError:  # past query_time_limit: the list shows without its total
        return None


async def _elsewhere(directory: Directory, search: str) -> tuple[dict[str, str], bool]:
    """Partners whose Pid does not contain ``search`` but another of their values does:
    Pid → where it matched; and whether a place held more than :data:`SEARCH_CAP`."""
    found: dict[str, str] = {}
    capped = False
    lowered = search.lower()
    for entity_set, prop, name in SEARCHED:
        where = contains(PropertyRef(prop, ValueType.STRING), search)
        rows = (await directory.list(entity_set, ListRequest(filter=where, top=SEARCH_CAP))).rows
        capped |= len(rows) >= SEARCH_CAP
        for r in rows:
            if lowered not in str(r["Pid"]).lower():
                found.setdefault(str(r["Pid"]), f"{name} {r[prop]}")
    return found, capped


async def _summaries(directory: Directory, pids: list[str]) -> list[Summary]:
    """Counts, ADDRESS and last change of a page of partners, in one query per kind."""
    by_pid = {pid: Summary(pid) for pid in pids}
    where = any_of(PropertyRef("Pid", ValueType.STRING), pids)
    if where is None:
        return []
    for kind in SECTIONS:
        if kind is BINARY:  # values are large: count them one partner at a time
            for pid in pids:
                request = ListRequest(filter=pid_is(pid), top=0, count=True)
                by_pid[pid].counts[kind.slug] = (
                    await directory.list(kind.entity_set, request)
                ).count or 0
            continue
        for row in (await directory.list(kind.entity_set, ListRequest(filter=where))).rows:
            summary = by_pid.get(str(row["Pid"]))
            if summary is None:
                continue
            summary.counts[kind.slug] = summary.counts.get(kind.slug, 0) + 1
            if kind is STRING and row["Id"] == "ADDRESS":
                summary.address = str(row["Value"])
            changed = row.get("LastModifiedTime")
            if isinstance(changed, datetime) and (
                summary.changed is None or changed > summary.changed
            ):
                summary.changed, summary.changed_by = changed, str(row.get("LastModifiedBy") or "")
    return [by_pid[pid] for pid in pids]


@guarded
async def index(page: Page) -> Response:
    """Searchable, sortable and paged; every state of the list is in its URL.

    A search looks at the Pid, alternative IDs (a GLN), string parameter IDs and values,
    and authorised users; each partner found says where it matched.
    """
    search = page.query.get("q", "").strip()[:200]
    descending = page.query.get("sort") == "-pid"
    number, size = page.number, PAGE_SIZE
    store = page.services.store
    capped = False
    matched: dict[str, str] = {}
    if search:
        async with store.read() as directory:
            matched, capped = await _elsewhere(directory, search)
    if matched:  # merged with the Pids that match, at most SEARCH_CAP of them
        async with store.read() as directory:
            request = ListRequest(filter=pid_contains(search), top=SEARCH_CAP)
            rows = (await directory.list("Partners", request)).rows
        capped |= len(rows) >= SEARCH_CAP
        ordered = sorted({*matched, *(str(r["Pid"]) for r in rows)}, reverse=descending)
        total: int | None = len(ordered)
        pids = ordered[(number - 1) * size : number * size]
        has_next = number * size < len(ordered)
    else:  # Pids alone: paged in SQL, however many
        result = await partner_page(store, search, descending, number)
        pids, has_next = result.pids, result.has_next
        async with store.read() as directory:
            total = await _count_partners(directory, search)
    async with store.read() as directory:
        summaries = await _summaries(directory, pids)
    for summary in summaries:
        summary.matched = matched.get(summary.pid, "")
    listing = PartnerList(summaries, number, size, total, has_next, capped)
    return page.render(
        "partners/list.html",
        section="partners",
        search=search,
        descending=descending,
        result=listing,
        kinds=SECTIONS,
    )


@guarded
async def show(page: Page) -> Response:
    """The partner whole: its entities, its users' certificates and its latest messages."""
    pid = page.path_param("pid")
    async with page.services.store.read() as directory:
        parts = await partner_parts(directory, pid)
        users = [str(r["User"]) for r in parts[AUTHORIZED_USER.slug]]
        rows = await mappings_of_users(directory, users)
        messages = await recent_messages(directory, pid)
    if not any(parts.values()):
        return page.render("partners/missing.html", 404, section="partners", pid=pid)
    now = datetime.now(UTC)
    mappings = [Mapping.of(row, pid, now) for row in rows]
    added = _added(page, parts)
    return page.render(
        "partners/show.html",
        section="partners",
        added=added,
        **({"flash_placed": True} if added else {}),
        pid=pid,
        parts=parts,
        sections=SECTIONS,
        mappings=mappings,
        users=users,
        messages=messages,
        duration=duration,
    )


def _added(page: Page, parts: dict[str, list[dict[str, object]]]) -> tuple[str, int] | None:
    """(kind slug, row index) of the entity the link says was just added or saved."""
    kind = KINDS.get(page.query.get("added", ""))
    if kind is None:
        return None
    wanted = {param: page.query.get(param) for param, _ in kind.key_params}
    for index, row in enumerate(parts[kind.slug]):
        if all(str(row[prop]) == wanted[param] for param, prop in kind.key_params):
            return kind.slug, index
    return None


def _new_form(
    page: Page,
    kind: Kind,
    status_code: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    error: str = "",
) -> Response:
    return page.render(
        "partners/new.html",
        status_code,
        section="partners",
        kind=kind,
        kinds=SECTIONS,
        pid_field=PID_FIELD,
        fields=kind.create,
        values=values or {},
        errors=errors or {},
        error=error,
        encodings=ENCODINGS,
    )


@guarded
async def new(page: Page) -> Response:
    """A partner comes into being with its first entity, of the kind the person picks."""
    source = page.query if page.request.method == "GET" else {"kind": page.text("kind")}
    kind = KINDS.get(source.get("kind") or STRING.slug, STRING)
    if page.request.method == "GET":
        return _new_form(page, kind, values={"Pid": page.query.get("pid", "")})
    pid = page.text("Pid").strip()
    store = page.services.store
    fields = (PID_FIELD, *kind.create)
    entity: dict[str, object] = {}
    try:
        entity = await gather(page, fields)
        entity["Pid"] = pid
        if await load_partner(store, pid) is not None:
            raise AlreadyExists(
                Markup(
                    'Partner <a class="mono" href="{}">{}</a> already exists; add to it on its '
                    "own page"
                ).format(page.urls.partner(pid), pid),
                field="Pid",
            )
        created = await store.create(kind.entity_set, entity, page.user)
    except DirectoryError as exc:
        errors, error = refused(exc, fields)
        if isinstance(exc, FormErrors):
            errors = {**exc.errors, **errors}
        elif isinstance(exc, AlreadyExists) and exc.field != "Pid":
            if where := await existing(page, kind, pid, entity):
                errors, error = {}, where
        values = {"Pid": pid, **shown_values(page, kind.create)}
        return _new_form(page, kind, exc.status, values, errors, error)
    done = f"Partner '{pid}' created with {kind.title.lower()} '{kind.label_of(created)}'."
    note = await unknown_sender_note(page, str(created["User"])) if kind is AUTHORIZED_USER else ""
    return page.redirect(page.urls.partner(pid), done + note, "warn" if note else "ok")


@guarded
async def delete(page: Page) -> Response:
    """A confirmation listing everything that goes with the partner, then the deletion."""
    pid = page.path_param("pid")
    store = page.services.store
    parts = await load_partner(store, pid)
    if parts is None:
        raise NotFound(f"Partner '{pid}' does not exist")
    confirmed = page.text("confirm").strip()
    if page.request.method == "GET" or confirmed != "DELETE":
        total = sum(len(rows) for rows in parts.values())
        asked = page.request.method == "POST"
        return page.render(
            "partners/delete.html",
            400 if asked else 200,
            section="partners",
            pid=pid,
            parts=parts,
            sections=SECTIONS,
            total=total,
            shown=CHIPS_SHOWN,
            confirm_error="Type DELETE in capitals; nothing was deleted." if asked else "",
        )
    await store.delete_partner(pid, (), page.user)
    return page.redirect(page.urls.partners(), f"Partner '{pid}' and all its parts deleted.")

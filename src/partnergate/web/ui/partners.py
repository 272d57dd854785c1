"""The partner list, a partner's page, creating a partner and deleting one.

A partner has no row of its own: it exists while any entity names its Pid. So a new
partner is created by giving its first entity, and deleting it deletes all of them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.responses import Response

from ...model.errors import AlreadyExists, DirectoryError, NotFound
from ...model.rules import ENCODINGS
from .certificates import Mapping
from .directory import SECTIONS, load_partner, mappings_of_users, partner_page, partner_parts
from .entities import read_values, refused, shown_values
from .kinds import AUTHORIZED_USER, KINDS, STRING, Field, Kind
from .monitor import duration, recent_messages
from .pages import Page, guarded

PID_FIELD = Field(
    "Pid",
    "Partner ID",
    help="Letters, digits and - . _ ~ < > @, at most 60.",
    max_length=60,
    mono=True,
)

CHIPS_SHOWN = 40
"""Entities named one by one per kind on the delete confirmation; the rest are counted."""


@guarded
async def index(page: Page) -> Response:
    """Searchable, sortable and paged; every state of the list is in its URL."""
    search = page.query.get("q", "").strip()[:200]
    descending = page.query.get("sort") == "-pid"
    result = await partner_page(page.services.store, search, descending, page.number)
    return page.render(
        "partners/list.html",
        section="partners",
        search=search,
        descending=descending,
        result=result,
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
    return page.render(
        "partners/show.html",
        section="partners",
        pid=pid,
        parts=parts,
        sections=SECTIONS,
        mappings=mappings,
        users=users,
        messages=messages,
        duration=duration,
    )


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
    try:
        entity = await read_values(page, kind.create)
        if pid and await load_partner(store, pid) is not None:
            raise AlreadyExists(
                f"Partner '{pid}' already exists; add to it on its own page", field="Pid"
            )
        created = await store.create(kind.entity_set, {**entity, "Pid": pid}, page.user)
    except DirectoryError as exc:
        errors, error = refused(exc, (PID_FIELD, *kind.create))
        values = {"Pid": pid, **shown_values(page, kind.create)}
        return _new_form(page, kind, exc.status, values, errors, error)
    return page.redirect(
        page.urls.partner(pid),
        f"Partner '{pid}' created with {kind.title.lower()} '{kind.label_of(created)}'.",
    )


@guarded
async def delete(page: Page) -> Response:
    """A confirmation listing everything that goes with the partner, then the deletion."""
    pid = page.path_param("pid")
    store = page.services.store
    parts = await load_partner(store, pid)
    if parts is None:
        raise NotFound(f"Partner '{pid}' does not exist")
    if page.request.method == "GET":
        total = sum(len(rows) for rows in parts.values())
        return page.render(
            "partners/delete.html",
            section="partners",
            pid=pid,
            parts=parts,
            sections=SECTIONS,
            total=total,
            shown=CHIPS_SHOWN,
        )
    await store.delete_partner(pid, (), page.user)
    return page.redirect(page.urls.partners(), f"Partner '{pid}' and all its parts deleted.")

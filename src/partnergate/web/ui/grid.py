"""The bulk grid: one entity type across all partners, filtered and sorted in SQL.

The filter is OData ``$filter`` text, parsed by :mod:`partnergate.odata.filter` and run by
the store's compiler, so it means here what it means in the API (and obeys the same
bounds and ``query_time_limit``). Selected rows can be edited in one column, copied to
another partner, deleted or exported. Each change is previewed first by running it in a
transaction that is rolled back, so the preview shows what the store would say, row by
row; confirming runs it again in one transaction, and a row that fails then changes
nothing at all.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from starlette.responses import Response

from ...model.entities import ENTITY_TYPES
from ...model.errors import DirectoryError, InvalidValue
from ...odata.errors import ODataError
from ...odata.filter import And, Expr, OrderBy, parse_filter, parse_orderby
from ...store import audit
from ...store.directory import Directory, DirectoryStore, ListRequest
from ..downloads import download_headers
from .entities import relabel
from .kinds import (
    ALTERNATIVE,
    AUTHORIZED_USER,
    BINARY,
    CREDENTIAL,
    KINDS,
    PID_FIELD,
    STRING,
    Kind,
)
from .pages import Page, guarded
from .search import any_contains

PAGE_SIZE = 100
MAX_SELECTED = 1000
MAX_FILTER = 2000

HIDDEN = {"Password", "Hexagency", "Hexscheme", "Hexid", "CreatedBy", "CreatedTime"}
"""Columns the grid leaves out: content, secrets, derived keys."""

EDITABLE: dict[str, tuple[str, ...]] = {
    STRING.slug: ("Value",),
    BINARY.slug: ("ContentType",),
    ALTERNATIVE.slug: ("Pid",),
    AUTHORIZED_USER.slug: ("Pid",),
    CREDENTIAL.slug: (),
}
"""Columns a bulk edit may set: what the store lets an update change."""

COPYABLE = {STRING.slug, BINARY.slug}
"""Kinds whose key includes the Pid, so an entry can exist at another partner too (a
credential's password is never read back, so it cannot be copied)."""

OPERATIONS = ("edit", "copy", "delete")


def columns_of(kind: Kind) -> list[str]:
    """A binary value is shown on its document page, not in a grid cell."""
    hidden = HIDDEN | ({"Value"} if kind is BINARY else set())
    names = [n for n in ENTITY_TYPES[kind.entity_set].property_names if n not in hidden]
    return sorted(names, key=lambda n: n.startswith("LastModified"))


@dataclass
class Query:
    """The grid's view as given in the URL, and what is wrong with it."""

    kind: Kind
    filter: str = ""
    q: str = ""
    sort: str = "Pid"
    descending: bool = False
    number: int = 1
    error: str = ""
    expr: Expr | None = None
    orderby: tuple[OrderBy, ...] = ()

    @classmethod
    def parse(cls, params: Mapping[str, str], number: int) -> Query:
        kind = KINDS.get(params.get("set", ""), STRING)
        sort = params.get("sort", "Pid")
        descending = sort.startswith("-")
        sort = sort.lstrip("-")
        if sort not in columns_of(kind):
            sort, descending = "Pid", False
        query = cls(
            kind,
            params.get("filter", "").strip(),
            params.get("q", "").strip()[:200],
            sort,
            descending,
            number,
        )
        entity_type = ENTITY_TYPES[kind.entity_set]
        terms: list[Expr] = []
        if len(query.filter) > MAX_FILTER:
            query.error = f"A filter may have at most {MAX_FILTER} characters."
        elif query.filter:
            try:
                terms.append(parse_filter(query.filter, entity_type))
            except ODataError as exc:
                query.error = exc.message
        if query.q:
            names = tuple(
                n for n in columns_of(kind) if entity_type.prop(n).edm_type == "Edm.String"
            )
            terms.append(any_contains(names, query.q))
        if terms:
            query.expr = terms[0] if len(terms) == 1 else And(tuple(terms))
        query.orderby = parse_orderby(f"{sort} desc" if descending else sort, entity_type)
        return query

    def link(self, **changes: object) -> dict[str, object]:
        values: dict[str, object] = {
            "set": self.kind.slug,
            "filter": self.filter,
            "q": self.q,
            "sort": ("-" if self.descending else "") + self.sort,
        }
        values.update(changes)
        return values


def key_token(kind: Kind, row: Mapping[str, object]) -> str:
    return json.dumps(kind.key_of(row), sort_keys=True, separators=(",", ":"))


def keys_from(page: Page, kind: Kind) -> list[dict[str, object]]:
    names = set(ENTITY_TYPES[kind.entity_set].keys)
    keys: list[dict[str, object]] = []
    for token in page.form.getlist("key"):
        try:
            key = json.loads(str(token))
        except ValueError:
            raise InvalidValue("A selected row is not one of this grid's rows") from None
        if (
            not isinstance(key, dict)
            or set(key) != names
            or not all(isinstance(v, str) for v in key.values())
        ):
            raise InvalidValue("A selected row is not one of this grid's rows")
        keys.append(key)
    if not keys:
        raise InvalidValue("Select at least one row")
    if len(keys) > MAX_SELECTED:
        raise InvalidValue(f"Select at most {MAX_SELECTED} rows at once")
    return list({json.dumps(k, sort_keys=True): k for k in keys}.values())


@dataclass
class Bulk:
    """One bulk change as the form gives it."""

    kind: Kind
    operation: str
    keys: list[dict[str, object]]
    column: str = ""
    value: str = ""
    target: str = ""

    @classmethod
    def from_form(cls, page: Page, kind: Kind) -> Bulk:
        operation = page.text("operation")
        if operation not in OPERATIONS:
            raise InvalidValue(f"Choose one of: {', '.join(OPERATIONS)}")
        bulk = cls(
            kind,
            operation,
            keys_from(page, kind),
            page.text("column"),
            page.text("value"),
            page.text("target").strip(),
        )
        if operation == "edit" and bulk.column not in EDITABLE[kind.slug]:
            allowed = ", ".join(EDITABLE[kind.slug]) or "no column"
            raise InvalidValue(f"{kind.titles} can change {allowed} in bulk", field="column")
        if operation == "copy":
            if kind.slug not in COPYABLE:
                raise InvalidValue(f"{kind.titles} cannot be copied to another partner")
            if not bulk.target:
                raise InvalidValue("Give the partner to copy to", field="target")
        return bulk

    def hidden(self) -> list[tuple[str, str]]:
        """The form fields that repeat this change on the confirmation form."""
        fields = [
            ("operation", self.operation),
            ("column", self.column),
            ("value", self.value),
            ("target", self.target),
        ]
        fields += [("key", json.dumps(k, sort_keys=True, separators=(",", ":"))) for k in self.keys]
        return fields


@dataclass
class Line:
    label: str
    pid: str
    before: str = ""
    after: str = ""


@dataclass
class Outcome:
    lines: list[Line] = field(default_factory=list)
    failure: str = ""


class _RollBack(Exception):
    pass


def _shown(value: object) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return "" if value is None else str(value)


async def run_bulk(directory: Directory, bulk: Bulk, actor: str, outcome: Outcome) -> None:
    """Every row's change inside ``directory``'s transaction; the first refusal raises."""
    kind = bulk.kind
    for key in bulk.keys:
        row = await directory.get(kind.entity_set, key)
        label, pid = kind.label_of(row), str(row.get("Pid", ""))
        try:
            if bulk.operation == "edit":
                await directory.update(kind.entity_set, key, {bulk.column: bulk.value}, actor)
                outcome.lines.append(Line(label, pid, _shown(row.get(bulk.column)), bulk.value))
            elif bulk.operation == "delete":
                await directory.delete(kind.entity_set, key)
                outcome.lines.append(Line(label, pid, "deleted"))
            else:
                values = {
                    n: row[n]
                    for n in ENTITY_TYPES[kind.entity_set].property_names
                    if n in row and n in ("Id", "Value", "ContentType")
                }
                directory.audit.operation = audit.COPY  # as for copies made elsewhere
                await directory.create(kind.entity_set, {**values, "Pid": bulk.target}, actor)
                outcome.lines.append(Line(label, pid, f"copy at {bulk.target}", bulk.target))
        except DirectoryError as exc:
            raise DirectoryError(
                f"{kind.title} '{label}' of partner '{pid}': "
                + relabel(exc.message, (PID_FIELD, *kind.create))
            ) from None


async def preview(store: DirectoryStore, bulk: Bulk, actor: str) -> Outcome:
    """What the change would do, found by doing it and rolling back."""
    outcome = Outcome()
    try:
        async with store.begin(actor) as directory:
            await run_bulk(directory, bulk, actor, outcome)
            await directory.flush()  # a key taken twice is found before the rollback
            raise _RollBack
    except _RollBack:
        pass
    except DirectoryError as exc:
        outcome.failure = exc.message
    return outcome


async def apply(store: DirectoryStore, bulk: Bulk, actor: str) -> Outcome:
    """The change in one transaction: every row or none."""
    outcome = Outcome()
    try:
        async with store.begin(actor) as directory:
            await run_bulk(directory, bulk, actor, outcome)
    except DirectoryError as exc:
        return Outcome([], exc.message)
    return outcome


def export(kind: Kind, rows: list[dict[str, object]], fmt: str) -> Response:
    columns = columns_of(kind)
    if kind is BINARY:
        columns.append("Value")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if fmt == "json":
        data = [{c: _json_value(r.get(c)) for c in columns} for r in rows]
        body = json.dumps(
            {"entitySet": kind.entity_set, "rows": data}, indent=2, ensure_ascii=False
        )
        return Response(
            body.encode(),
            media_type="application/json",
            headers=download_headers(f"{kind.slug}-{stamp}.json"),
        )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_json_value(r.get(c)) for c in columns])
    return Response(
        out.getvalue().encode(),
        media_type="text/csv",
        headers=download_headers(f"{kind.slug}-{stamp}.csv"),
    )


def _json_value(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return value


@guarded
async def index(page: Page) -> Response:
    query = Query.parse(page.query, page.number)
    rows: list[dict[str, object]] = []
    has_next = False
    status = 200
    if query.error:
        status = 400
    else:
        request = ListRequest(
            filter=query.expr,
            orderby=query.orderby,
            top=PAGE_SIZE + 1,
            skip=(query.number - 1) * PAGE_SIZE,
        )
        try:
            rows = (await page.services.store.list(query.kind.entity_set, request)).rows
        except DirectoryError as exc:
            query.error, status = exc.message, exc.status
        has_next = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
    return _grid(page, query, rows, has_next, status)


def _grid(
    page: Page,
    query: Query,
    rows: list[dict[str, object]],
    has_next: bool,
    status: int = 200,
    **extra: object,
) -> Response:
    context: dict[str, object] = {"bulk_error": "", "selected": set()}
    context.update(extra)
    return page.render(
        "grid/index.html",
        status,
        section="grid",
        query=query,
        kinds=KINDS,
        columns=columns_of(query.kind),
        rows=rows,
        has_next=has_next,
        key_token=key_token,
        shown=_shown,
        editable=EDITABLE[query.kind.slug],
        copyable=query.kind.slug in COPYABLE,
        page_size=PAGE_SIZE,
        **context,
    )


def _preview(
    page: Page,
    query: Query,
    status_code: int,
    change: Bulk | None,
    outcome: Outcome,
    *,
    applied: bool = False,
) -> Response:
    return page.render(
        "grid/preview.html",
        status_code,
        section="grid",
        query=query,
        bulk=change,
        outcome=outcome,
        applied=applied,
    )


@guarded
async def bulk(page: Page) -> Response:
    """Preview a bulk change (``step=preview``), run it (``step=apply``), or export."""
    query = Query.parse(page.query, page.number)
    kind = query.kind
    store = page.services.store
    try:
        if page.text("operation") == "export":
            keys = keys_from(page, kind)
            async with store.read() as directory:
                rows = [await directory.get(kind.entity_set, k) for k in keys]
            fmt = "json" if page.text("format") == "json" else "csv"
            return export(kind, rows, fmt)
        change = Bulk.from_form(page, kind)
    except DirectoryError as exc:
        return _preview(page, query, exc.status, None, Outcome([], exc.message))
    if page.text("step") == "apply":
        outcome = await apply(store, change, page.user)
        if not outcome.failure:
            verb = {
                "edit": "changed",
                "copy": f"copied to partner '{change.target}'",
                "delete": "deleted",
            }[change.operation]
            n = len(outcome.lines)
            return page.redirect(
                page.urls.base + "/grid?" + _query_string(query),
                f"{n} {kind.title.lower() if n == 1 else kind.titles.lower()} {verb}.",
            )
        return _preview(page, query, 409, change, outcome, applied=True)
    outcome = await preview(store, change, page.user)
    return _preview(page, query, 409 if outcome.failure else 200, change, outcome)


def _query_string(query: Query) -> str:
    return urlencode({k: v for k, v in query.link().items() if v not in ("", None)})

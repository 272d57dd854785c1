"""The message monitor: the message processing log, newest first, and one message whole.

Filters live in the URL (``status``, ``flow``, ``partner``, ``id`` for a message or
correlation ID, ``property`` as ``name=value`` for a custom header property, ``range`` for
the last 5 minutes … 30 days, or ``since``/``until``, and ``page``) so that a view of, say,
today's failed messages of one partner can be linked to. Times are UTC, as the log stores
them. A message's page shows its steps as a timeline, the other messages of its exchange
(same correlation ID), and, when its flow ran at ``TRACE``, each step's message before
and after it.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.responses import Response

from ...model.entities import MESSAGE_PROCESSING_LOG
from ...model.errors import DirectoryError, NotFound
from ...model.rules import prepare_key
from ...odata.filter import And, Compare, CompareOp, Expr, Literal, Or, OrderBy, PropertyRef
from ...odata.filter import ValueType as T
from ...runtime.messagelog import LOG_LEVELS
from ...store import messagelog as store
from ...store.directory import Directory, ListRequest, now
from ..downloads import download_headers
from .directory import PAGE_SIZE
from .pages import Page, guarded

LOGS = "MessageProcessingLogs"
ATTACHMENTS = "MessageProcessingLogAttachments"
STATUSES = ("FAILED", "COMPLETED", "PROCESSING")
TIME_FORMAT = "%Y-%m-%dT%H:%M"
"""What an ``<input type="datetime-local">`` sends, without seconds."""
RANGES = {
    "5m": ("Last 5 minutes", timedelta(minutes=5)),
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}
"""Quick ranges; ``since``/``until`` give a custom one."""
REFRESH_SECONDS = 15


def _eq(name: str, value: str) -> Expr:
    return Compare(CompareOp.EQ, PropertyRef(name, T.STRING), Literal(value, T.STRING))


def _at(op: CompareOp, moment: datetime) -> Expr:
    return Compare(op, PropertyRef("LogStart", T.DATETIME), Literal(moment, T.DATETIME))


@dataclass
class Filters:
    """The monitor's filters as given in the URL, and what is wrong with them."""

    status: str = ""
    flow: str = ""
    partner: str = ""
    id: str = ""
    property: str = ""
    range: str = ""
    since: str = ""
    until: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Filters:
        f = cls(**{k: query.get(k, "").strip()[:200] for k in cls.names()})
        if f.status and f.status not in STATUSES:
            f.errors["status"] = f"Status must be one of {', '.join(STATUSES)}"
        if f.range and f.range not in RANGES:
            f.errors["range"] = f"Range must be one of {', '.join(RANGES)}"
        for name in ("since", "until"):
            if getattr(f, name) and f.moment(name) is None:
                f.errors[name] = "Give a date and time as YYYY-MM-DDTHH:MM (UTC)"
        if f.property and not f.property_match():
            f.errors["property"] = "Give a custom header property as name=value (or name)"
        return f

    @staticmethod
    def names() -> tuple[str, ...]:
        return ("status", "flow", "partner", "id", "property", "range", "since", "until")

    def moment(self, name: str) -> datetime | None:
        try:
            return datetime.strptime(getattr(self, name), TIME_FORMAT)
        except ValueError:
            return None

    def property_match(self) -> store.PropertyMatch | None:
        name, equals, value = self.property.partition("=")
        if not name.strip():
            return None
        return store.PropertyMatch(name.strip(), value.strip() if equals else None)

    def having(self) -> list[store.PropertyMatch]:
        match = self.property_match() if "property" not in self.errors else None
        return [match] if match is not None else []

    def expression(self, at: datetime | None = None) -> Expr | None:
        terms: list[Expr] = []
        if self.status and "status" not in self.errors:
            terms.append(_eq("Status", self.status))
        if self.flow:
            terms.append(_eq("IntegrationFlowName", self.flow))
        if self.partner:
            terms.append(Or((_eq("Sender", self.partner), _eq("Receiver", self.partner))))
        if self.id:
            terms.append(Or((_eq("MessageGuid", self.id), _eq("CorrelationId", self.id))))
        if self.range in RANGES:
            terms.append(_at(CompareOp.GE, (at or now()) - RANGES[self.range][1]))
        else:
            since, until = self.moment("since"), self.moment("until")
            if since is not None:
                terms.append(_at(CompareOp.GE, since))
            if until is not None:
                terms.append(_at(CompareOp.LT, until))
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    @builtins.property
    def narrowed(self) -> bool:
        return self.expression() is not None or bool(self.having())

    def query(self, **changes: object) -> dict[str, object]:
        """These filters with some changed, for a link."""
        values: dict[str, object] = {k: getattr(self, k) for k in self.names()}
        values.update(changes)
        return values


RECENT = 10
"""Messages a partner's page shows; the monitor, filtered by the partner, has the rest."""

NEWEST: tuple[OrderBy, ...] = (OrderBy(PropertyRef("LogStart", T.DATETIME), descending=True),)


def newest(expression: Expr | None, top: int, skip: int = 0) -> ListRequest:
    return ListRequest(filter=expression, orderby=NEWEST, top=top, skip=skip)


async def recent_messages(directory: Directory, pid: str) -> list[dict[str, object]]:
    """The newest messages the partner sent or received."""
    request = newest(Filters(partner=pid).expression(), RECENT)
    return (await directory.list(LOGS, request)).rows


def duration(row: dict[str, object]) -> str:
    start, end = row.get("LogStart"), row.get("LogEnd")
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return ""
    return _ms((end - start).total_seconds() * 1000)


def _ms(ms: float) -> str:
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 10_000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s"


def error_summary(row: dict[str, Any]) -> str:
    """The reason a message failed, in one line, without the step (its own column)."""
    text = str(row.get("_error") or "")
    step = str(row.get("_failed_step") or "")
    if step and text.startswith(step + ": "):
        text = text[len(step) + 2 :]
    return text.splitlines()[0][:160] if text else ""


def page_numbers(number: int, last: int) -> list[int]:
    """The page numbers a pager shows: first, last, and two either side of this one."""
    shown = {1, last, *range(max(1, number - 2), min(last, number + 2) + 1)}
    return sorted(n for n in shown if n >= 1)


@guarded
async def index(page: Page) -> Response:
    filters = Filters.from_query(page.query)
    number = page.number
    await page.services.store.catch_up()
    found = await store.list_logs(
        page.services.store.engine,
        filter=filters.expression(),
        orderby=NEWEST,
        top=PAGE_SIZE,
        skip=(number - 1) * PAGE_SIZE,
        count=True,
        having=filters.having(),
    )
    total = found.count or 0
    last = max(1, -(-total // PAGE_SIZE))
    flows = sorted(flow.name for flow in page.services.runtime.deployment.flows)
    return page.render(
        "monitor/list.html",
        400 if filters.errors else 200,
        section="monitor",
        filters=filters,
        statuses=STATUSES,
        ranges=RANGES,
        flows=flows,
        rows=found.rows,
        total=total,
        number=number,
        last=last,
        pages=page_numbers(number, last),
        first=(number - 1) * PAGE_SIZE + 1,
        duration=duration,
        error_summary=error_summary,
        refresh=REFRESH_SECONDS,
    )


def split_error(text: str | None, step: str | None) -> str:
    """The error without the failing step's label that starts it."""
    if not text:
        return ""
    if step and text.startswith(step + ": "):
        return text[len(step) + 2 :]
    return text


def _guid(page: Page) -> str:
    """The message ID in the path; one no store can hold (a NUL, too long) names nothing."""
    guid = str(page.request.path_params["guid"])
    try:
        prepare_key(MESSAGE_PROCESSING_LOG, {"MessageGuid": guid})
    except DirectoryError:
        raise NotFound(
            f"MessageProcessingLog (MessageGuid='{guid[:100]}') does not exist"
        ) from None
    return guid


@guarded
async def show(page: Page) -> Response:
    guid = _guid(page)
    await page.services.store.catch_up()
    engine = page.services.store.engine
    row = await store.get_log(engine, guid)
    if row is None:
        raise NotFound(f"MessageProcessingLog (MessageGuid='{guid}') does not exist")
    kept = ListRequest(
        filter=_eq("MessageGuid", guid),
        orderby=(OrderBy(PropertyRef("TimeStamp", T.DATETIME)),),
    )
    attachments = (await page.services.store.list(ATTACHMENTS, kept)).rows
    steps = await store.read_steps(engine, guid)
    exchange = []
    correlation = row.get("CorrelationId")
    if correlation:
        related = await store.list_logs(
            engine,
            filter=_eq("CorrelationId", str(correlation)),
            orderby=(OrderBy(PropertyRef("LogStart", T.DATETIME)),),
            top=50,
        )
        if len(related.rows) > 1:
            exchange = related.rows
    flow = str(row.get("IntegrationFlowName") or "")
    levels = page.services.message_log.levels
    return page.render(
        "monitor/show.html",
        section="monitor",
        row=row,
        step=row.get("_failed_step") or "",
        error=split_error(row.get("_error"), row.get("_failed_step")),  # type: ignore[arg-type]
        duration=duration(row),
        attachments=attachments,
        steps=steps,
        timeline=_timeline(steps),
        exchange=exchange,
        custom=await store.read_properties(engine, guid, store.CUSTOM),
        adapter=await store.read_properties(engine, guid, store.ADAPTER),
        flow_level=levels.level_of(flow) if flow else "",
        flow_level_until=levels.expires(flow) if flow else None,
        log_levels=LOG_LEVELS,
    )


def _timeline(steps: list[dict[str, Any]]) -> list[dict[str, object]]:
    """Each step's offset and width in per cent of the message's steps, for the bars."""
    if not steps:
        return []
    start = min(s["step_start"] for s in steps)
    stop = max(s["step_stop"] for s in steps)
    span = max((stop - start).total_seconds(), 1e-6)
    out = []
    for s in steps:
        offset = (s["step_start"] - start).total_seconds()
        length = (s["step_stop"] - s["step_start"]).total_seconds()
        out.append(
            {
                "left": round(100 * offset / span, 2),
                "width": max(round(100 * length / span, 2), 0.5),
                "duration": _ms(length * 1000),
            }
        )
    return out


@guarded
async def log_level(page: Page) -> Response:
    """Set a flow's log level (``TRACE`` for ten minutes), from the message page."""
    flow = page.text("flow").strip()
    level = page.text("level").strip().upper()
    back = page.text("back").strip()
    target = back if back.startswith(page.urls.monitor()) else page.urls.monitor()
    known = {f.name for f in page.services.runtime.deployment.flows}
    if flow not in known or level not in LOG_LEVELS:
        return page.redirect(target, f"No deployed flow '{flow[:100]}' or level '{level}'", "error")
    until = await page.services.message_log.set_level(flow, level, page.user)
    said = f" until {until:%H:%M} UTC" if until is not None else ""
    return page.redirect(target, f"Flow '{flow}' now logs at {level}{said}.")


@guarded
async def attachment(page: Page) -> Response:
    """An attachment's bytes, as a download: what a sender sent must never run here."""
    params = page.request.path_params
    guid, attachment_id = _guid(page), str(params["attachment_id"])
    if "\x00" in attachment_id:
        raise NotFound(f"message {guid} has no such attachment")
    found = await page.services.message_log.attachment(attachment_id)
    if found is None or found.message_guid != guid:
        raise NotFound(f"message {guid} has no attachment {attachment_id}")
    headers = download_headers(found.name, found.content_type or "application/octet-stream")
    return Response(found.payload, 200, headers)

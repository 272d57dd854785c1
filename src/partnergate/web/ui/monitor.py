"""The message monitor: the message processing log, newest first, and one message whole.

Filters live in the URL (``status``, ``flow``, ``partner``, ``since``, ``until``, ``page``)
so that a view of, say, today's failed messages of one partner can be linked to. Times are
UTC, as the log stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from starlette.responses import Response

from ...model.errors import NotFound
from ...odata.filter import And, Compare, CompareOp, Expr, Literal, Or, OrderBy, PropertyRef
from ...odata.filter import ValueType as T
from ...store.directory import Directory, ListRequest
from ..downloads import download_headers
from .directory import PAGE_SIZE
from .pages import Page, guarded

LOGS = "MessageProcessingLogs"
ATTACHMENTS = "MessageProcessingLogAttachments"
STATUSES = ("FAILED", "COMPLETED", "PROCESSING")
TIME_FORMAT = "%Y-%m-%dT%H:%M"
"""What an ``<input type="datetime-local">`` sends, without seconds."""


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
    since: str = ""
    until: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Filters:
        f = cls(**{k: query.get(k, "").strip()[:200] for k in cls.names()})
        if f.status and f.status not in STATUSES:
            f.errors["status"] = f"Status must be one of {', '.join(STATUSES)}"
        for name in ("since", "until"):
            if getattr(f, name) and f.moment(name) is None:
                f.errors[name] = "Give a date and time as YYYY-MM-DDTHH:MM (UTC)"
        return f

    @staticmethod
    def names() -> tuple[str, ...]:
        return ("status", "flow", "partner", "since", "until")

    def moment(self, name: str) -> datetime | None:
        try:
            return datetime.strptime(getattr(self, name), TIME_FORMAT)
        except ValueError:
            return None

    def expression(self) -> Expr | None:
        terms: list[Expr] = []
        if self.status and "status" not in self.errors:
            terms.append(_eq("Status", self.status))
        if self.flow:
            terms.append(_eq("IntegrationFlowName", self.flow))
        if self.partner:
            terms.append(Or((_eq("Sender", self.partner), _eq("Receiver", self.partner))))
        since, until = self.moment("since"), self.moment("until")
        if since is not None:
            terms.append(_at(CompareOp.GE, since))
        if until is not None:
            terms.append(_at(CompareOp.LT, until))
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def query(self, **changes: object) -> dict[str, object]:
        """These filters with some changed, for a link."""
        values: dict[str, object] = {k: getattr(self, k) for k in self.names()}
        values.update(changes)
        return values


RECENT = 10
"""Messages a partner's page shows; the monitor, filtered by the partner, has the rest."""


def newest(expression: Expr | None, top: int, skip: int = 0) -> ListRequest:
    return ListRequest(
        filter=expression,
        orderby=(OrderBy(PropertyRef("LogStart", T.DATETIME), descending=True),),
        top=top,
        skip=skip,
    )


async def recent_messages(directory: Directory, pid: str) -> list[dict[str, object]]:
    """The newest messages the partner sent or received."""
    request = newest(Filters(partner=pid).expression(), RECENT)
    return (await directory.list(LOGS, request)).rows


def duration(row: dict[str, object]) -> str:
    start, end = row.get("LogStart"), row.get("LogEnd")
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return ""
    ms = int((end - start).total_seconds() * 1000)
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


@guarded
async def index(page: Page) -> Response:
    filters = Filters.from_query(page.query)
    number = page.number
    request = newest(filters.expression(), PAGE_SIZE + 1, (number - 1) * PAGE_SIZE)
    rows = (await page.services.store.list(LOGS, request)).rows
    flows = sorted(flow.name for flow in page.services.runtime.deployment.flows)
    return page.render(
        "monitor/list.html",
        400 if filters.errors else 200,
        section="monitor",
        filters=filters,
        statuses=STATUSES,
        flows=flows,
        rows=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        number=number,
        first=(number - 1) * PAGE_SIZE + 1,
        duration=duration,
    )


def split_error(text: str | None) -> tuple[str, str]:
    """The failing step and the error, from the log's ``step <name>: <error>`` form."""
    if not text:
        return "", ""
    if text.startswith("step ") and ": " in text:
        step, _, error = text[5:].partition(": ")
        return step, error
    return "", text


@guarded
async def show(page: Page) -> Response:
    guid = str(page.request.path_params["guid"])
    row = await page.services.store.get(LOGS, {"MessageGuid": guid})
    step, error = split_error(await page.services.message_log.error_text(guid))
    kept = ListRequest(
        filter=_eq("MessageGuid", guid),
        orderby=(OrderBy(PropertyRef("TimeStamp", T.DATETIME)),),
    )
    attachments = (await page.services.store.list(ATTACHMENTS, kept)).rows
    return page.render(
        "monitor/show.html",
        section="monitor",
        row=row,
        step=step,
        error=error,
        duration=duration(row),
        attachments=attachments,
    )


@guarded
async def attachment(page: Page) -> Response:
    """An attachment's bytes, as a download: what a sender sent must never run here."""
    params = page.request.path_params
    guid, attachment_id = str(params["guid"]), str(params["attachment_id"])
    found = await page.services.message_log.attachment(attachment_id)
    if found is None or found.message_guid != guid:
        raise NotFound(f"message {guid} has no attachment {attachment_id}")
    headers = download_headers(found.name, found.content_type or "application/octet-stream")
    return Response(found.payload, 200, headers)

"""The message processing log: one entry per message, as SAP's ``MessageProcessingLogs``.

The engine reports each message when it starts (``PROCESSING``) and when it ends
(``COMPLETED`` or ``FAILED``, with the step that failed and why); the store implements
:class:`MessageLogSink` and serves the entries. Bodies are not logged unless a flow keeps
them as attachments (``log-attachment`` steps), SAP's ``MessageProcessingLogAttachments``,
or its log level is ``TRACE`` (:class:`LogLevels`), which keeps each step's body and
headers before and after it, secrets masked, for ten minutes after it was switched on.

At ``INFO`` (the default) each step leaves a :class:`RunStep`: when it ran, how long,
its outcome and a one-line summary of what it looked up or called; at ``NONE`` only the
entry itself is written. Custom header properties (business keys a flow records) and the
sender adapter's attributes travel with the entry.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from .changes import FLOW_LOG_LEVELS, Change

NONE = "NONE"
INFO = "INFO"
TRACE = "TRACE"
LOG_LEVELS = (NONE, INFO, TRACE)
"""SAP's log levels that a flow here may have (SAP also has ``DEBUG``)."""
TRACE_MINUTES = 10
"""How long ``TRACE`` lasts once switched on, as SAP's; then the flow is back at ``INFO``."""

PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"


def utcnow() -> datetime:
    """Naive UTC at millisecond precision, the form entity values use (``model``); two
    per message, so from the clock's milliseconds at once rather than by rounding."""
    return _EPOCH + timedelta(milliseconds=time.time_ns() // 1_000_000)


_EPOCH = datetime(1970, 1, 1)


def new_attachment_id() -> str:
    """SAP's form (``sap-it-res:msg:<hex>:<uuid>``), with the hex part the time in
    nanoseconds, so that the attachments of a message sort in the order they were kept."""
    return f"sap-it-res:msg:{time.time_ns():016x}:{uuid.uuid4()}"


@dataclass(frozen=True)
class Attachment:
    """Something a flow kept of a message, e.g. the body it received or sent on."""

    name: str
    content_type: str | None
    payload: bytes
    time: datetime
    attachment_id: str = field(default_factory=new_attachment_id)


MAX_ATTACHMENT_BYTES = 1024 * 1024
"""What one attachment keeps by default: a message log is no archive."""


def keep(
    name: str,
    content_type: str | None,
    payload: bytes,
    max_bytes: int = MAX_ATTACHMENT_BYTES,
) -> Attachment:
    """An attachment as the log stores it: content beyond ``max_bytes`` cut (the name says
    so), and a content type without line breaks, since it may come from the sender and
    goes back out as a header."""
    name = name.strip() or "attachment"
    if len(payload) > max_bytes:
        payload = payload[:max_bytes]
        name = f"{name} (first {max_bytes} bytes)"
    if content_type:
        content_type = "".join(c for c in content_type if c >= " ")[:200] or None
    return Attachment(name[:200], content_type, payload, utcnow())


MASK = "********"
SECRET_HEADERS = frozenset(
    h.lower()
    for h in (
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Set-Cookie",
        "X-CSRF-Token",
        "X-API-Key",
        "SapAuthenticatedUserPassword",
    )
)
"""Headers whose values a trace never keeps."""


def mask_headers(headers: dict[str, str], secrets: tuple[str, ...] = ()) -> dict[str, str]:
    """``headers`` with credential headers masked, and any known secret value replaced."""
    out = {}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            value = MASK
        out[name] = mask_text(value, secrets)
    return out


def mask_text(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 3 and secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_bytes(body: bytes, secrets: tuple[str, ...]) -> bytes:
    for secret in secrets:
        raw = secret.encode("utf-8", "replace")
        if len(raw) >= 3 and raw in body:
            body = body.replace(raw, MASK.encode())
    return body


@dataclass(frozen=True)
class Snapshot:
    """A message as a trace keeps it: headers (masked) and the start of the body."""

    headers: dict[str, str]
    body: bytes
    truncated: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
            "truncated": self.truncated,
        }


MAX_TRACE_BODY = 256 * 1024
"""Bytes of a body one trace snapshot keeps at most (the ``trace_max_body`` setting)."""


def snapshot(
    headers: dict[str, str], body: bytes, secrets: tuple[str, ...], max_bytes: int
) -> Snapshot:
    kept = mask_bytes(body, secrets)
    return Snapshot(mask_headers(headers, secrets), kept[:max_bytes], len(kept) > max_bytes)


def mask_snapshot(taken: Snapshot, secrets: tuple[str, ...]) -> Snapshot:
    return Snapshot(
        mask_headers(taken.headers, secrets), mask_bytes(taken.body, secrets), taken.truncated
    )


@dataclass(slots=True)
class RunStep:
    """One step of one message: SAP's ``MessageProcessingLogRunStep``.

    Times are microseconds after the message's start (``base``): made for every step of
    every message, they must cost next to nothing; :attr:`start` and :attr:`end` are
    the datetimes for those who read them."""

    index: int
    step_id: str
    """The step's label in its flow (``step 3 'look up the receiver'``), SAP's ModelStepId."""
    kind: str
    base: datetime
    offset_us: int
    duration_us: int
    status: str
    """``COMPLETED`` or ``FAILED``."""
    summary: str = ""
    error: str | None = None
    before: Snapshot | None = None
    after: Snapshot | None = None

    @property
    def start(self) -> datetime:
        return self.base + timedelta(microseconds=self.offset_us)

    @property
    def end(self) -> datetime:
        return self.base + timedelta(microseconds=self.offset_us + self.duration_us)

    @property
    def duration_ms(self) -> float:
        return self.duration_us / 1000


class LogLevels:
    """Each flow's log level, changed at run time; ``TRACE`` ends by itself.

    Levels set here are the node's view; the store keeps them so that every node of a
    fleet and a restarted node learns them (:meth:`replace_all`).
    """

    def __init__(self, default: str = INFO) -> None:
        self.default = default
        self._levels: dict[str, tuple[str, datetime | None]] = {}

    def level_of(self, flow: str, at: datetime | None = None) -> str:
        found = self._levels.get(flow)
        if found is None:
            return self.default
        level, until = found
        if until is not None and (at or utcnow()) >= until:
            return INFO
        return level

    def expires(self, flow: str) -> datetime | None:
        found = self._levels.get(flow)
        if found is None or self.level_of(flow) != TRACE:
            return None
        return found[1]

    def set(self, flow: str, level: str, at: datetime | None = None) -> datetime | None:
        """Set ``flow`` to ``level``; returns when it ends (``TRACE`` only)."""
        if level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
        until = None
        if level == TRACE:
            until = (at or utcnow()) + timedelta(minutes=TRACE_MINUTES)
        self._levels[flow] = (level, until)
        return until

    def replace_all(self, levels: dict[str, tuple[str, datetime | None]]) -> None:
        self._levels = dict(levels)

    def follow(self, changes: Sequence[Change]) -> None:
        """Take the levels another process set (a :class:`Changes` subscriber)."""
        for change in changes:
            if change.entity_set != FLOW_LOG_LEVELS:
                continue
            level = str(change.key.get("LogLevel", ""))
            if level not in LOG_LEVELS:
                continue
            until = str(change.key.get("Until") or "")
            self._levels[str(change.key["Flow"])] = (
                level,
                datetime.fromisoformat(until) if until else None,
            )

    @staticmethod
    def change(flow: str, level: str, until: datetime | None) -> Change:
        """What a process that sets a level tells the others."""
        key = {"Flow": flow, "LogLevel": level, "Until": until.isoformat() if until else ""}
        return Change(FLOW_LOG_LEVELS, key, None)

    def items(self) -> dict[str, tuple[str, datetime | None]]:
        return dict(self._levels)


ADAPTER_HTTP = "HTTP Sender"


@dataclass(frozen=True)
class MessageLogEntry:
    message_guid: str
    flow: str
    endpoint: str
    status: str
    start: datetime
    end: datetime | None = None
    user: str | None = None
    sender_partner: str | None = None
    receiver_partner: str | None = None
    http_status: int | None = None
    failed_step: str | None = None
    error: str | None = None
    """SAP's ``ErrorInformation``: why the message failed, with detail the sender did not get."""
    attachments: tuple[Attachment, ...] = ()
    correlation_id: str | None = None
    """Shared by the messages of one exchange (SAP's ``SAP_MplCorrelationId``)."""
    log_level: str = INFO
    steps: tuple[RunStep, ...] = ()
    custom_properties: tuple[tuple[str, str], ...] = ()
    """SAP's ``CustomHeaderProperties``: business keys a flow recorded, in order."""
    adapter_attributes: tuple[tuple[str, str, str], ...] = ()
    """SAP's ``AdapterAttributes``: (adapter, name, value) the sender adapter saw."""


class MessageLogSink(Protocol):
    async def started(self, entry: MessageLogEntry) -> None:
        """A message began; ``entry.status`` is ``PROCESSING``."""
        ...

    async def finished(self, entry: MessageLogEntry) -> None:
        """The same message (same ``message_guid``) ended: ``COMPLETED`` or ``FAILED``."""
        ...


class MemoryMessageLog:
    """A sink that keeps the latest entries in memory (tests, and runs without a store)."""

    def __init__(self, limit: int = 1000) -> None:
        self._entries: deque[MessageLogEntry] = deque(maxlen=limit)
        self._by_guid: dict[str, MessageLogEntry] = {}

    async def started(self, entry: MessageLogEntry) -> None:
        self._put(entry)

    async def finished(self, entry: MessageLogEntry) -> None:
        self._put(entry)

    def _put(self, entry: MessageLogEntry) -> None:
        old = self._by_guid.get(entry.message_guid)
        if old is not None:
            self._entries.remove(old)
        if len(self._entries) == self._entries.maxlen:
            self._by_guid.pop(self._entries[0].message_guid, None)
        self._entries.append(entry)
        self._by_guid[entry.message_guid] = entry

    def get(self, message_guid: str) -> MessageLogEntry | None:
        return self._by_guid.get(message_guid)

    @property
    def entries(self) -> list[MessageLogEntry]:
        return list(self._entries)


__all__ = [
    "COMPLETED",
    "INFO",
    "LOG_LEVELS",
    "NONE",
    "TRACE",
    "Attachment",
    "LogLevels",
    "RunStep",
    "Snapshot",
    "FAILED",
    "PROCESSING",
    "MemoryMessageLog",
    "MessageLogEntry",
    "MessageLogSink",
    "keep",
    "utcnow",
]

"""The message processing log: one entry per message, as SAP's ``MessageProcessingLogs``.

The engine reports each message when it starts (``PROCESSING``) and when it ends
(``COMPLETED`` or ``FAILED``, with the step that failed and why); the store implements
:class:`MessageLogSink` and serves the entries. Bodies are not logged unless a flow keeps
them as attachments (``log-attachment`` steps), SAP's ``MessageProcessingLogAttachments``.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"


def utcnow() -> datetime:
    """Naive UTC at millisecond precision, the form entity values use (``model``)."""
    now = datetime.now(UTC)
    return now.replace(tzinfo=None, microsecond=now.microsecond // 1000 * 1000)


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
    "Attachment",
    "FAILED",
    "PROCESSING",
    "MemoryMessageLog",
    "MessageLogEntry",
    "MessageLogSink",
    "keep",
    "utcnow",
]

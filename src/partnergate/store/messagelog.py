"""The message processing log in the store: the runtime's ``MessageLogSink``, and retention.

Entries are served read-only as SAP's ``MessageProcessingLogs`` through the generic
entity-set reads of :mod:`partnergate.store.directory`. Bodies are never stored here.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..runtime.messagelog import MessageLogEntry
from .database import begin
from .directory import now
from .tables import message_processing_logs as mpl


def error_information(entry: MessageLogEntry) -> str | None:
    if entry.error is None and entry.failed_step is None:
        return None
    parts = [p for p in (entry.failed_step and f"step {entry.failed_step}", entry.error) if p]
    return ": ".join(parts)


def _row(entry: MessageLogEntry) -> dict[str, object]:
    return {
        "integration_flow_name": entry.flow,
        "endpoint": entry.endpoint,
        "status": entry.status,
        "custom_status": entry.status,
        "log_level": "INFO",
        "log_start": entry.start,
        "log_end": entry.end,
        "user": entry.user,
        "sender": entry.sender_partner,
        "receiver": entry.receiver_partner,
        "http_status": entry.http_status,
        "failed_step": entry.failed_step,
        "error_information": error_information(entry),
    }


class StoreMessageLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def started(self, entry: MessageLogEntry) -> None:
        row = {
            "message_guid": entry.message_guid,
            "correlation_id": entry.message_guid,
            **_row(entry),
        }
        try:
            async with begin(self.engine) as conn:
                await conn.execute(insert(mpl).values(**row))
        except IntegrityError:
            await self.finished(entry)

    async def finished(self, entry: MessageLogEntry) -> None:
        async with begin(self.engine) as conn:
            await conn.execute(
                update(mpl).where(mpl.c.message_guid == entry.message_guid).values(**_row(entry))
            )

    async def error_text(self, message_guid: str) -> str | None:
        """``ErrorInformation/$value``; None when there is no such message."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(mpl.c.error_information).where(mpl.c.message_guid == message_guid)
                )
            ).first()
        if row is None:
            return None
        return row[0] or ""

    async def purge(self, keep_days: int) -> int:
        """Delete entries that started more than ``keep_days`` ago; return how many."""
        async with begin(self.engine) as conn:
            result = await conn.execute(
                delete(mpl).where(mpl.c.log_start < now() - timedelta(days=keep_days))
            )
        return int(result.rowcount or 0)

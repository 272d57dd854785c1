"""Running a flow over one message: steps in order, the reply, the log entry.

A step that raises :class:`StepError` ends the message with its status and a plain-text
body naming the step and the reason; anything else a step raises is a fault of ours,
answered 500 without internals and logged with its traceback.
"""

from __future__ import annotations

import logging

from .. import logs, metrics
from .directory import PartnerDirectory
from .errors import StepError
from .exchange import MESSAGE_ID, Exchange, Reply
from .flows import Flow
from .messagelog import (
    COMPLETED,
    FAILED,
    PROCESSING,
    MessageLogEntry,
    MessageLogSink,
    utcnow,
)
from .receivers import ReceiverPool
from .services import Services
from .xslt import DEFAULT_TIME_LIMIT, DEFAULT_WORKERS, XsltEngine

log = logging.getLogger(__name__)

ERROR_CONTENT_TYPE = "text/plain; charset=utf-8"


class Engine:
    """Runs flows; one per process, shared by all requests."""

    def __init__(
        self,
        directory: PartnerDirectory,
        *,
        message_log: MessageLogSink | None = None,
        receivers: ReceiverPool | None = None,
        xslt: XsltEngine | None = None,
        step_time_limit: float = DEFAULT_TIME_LIMIT,
        xslt_workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.directory = directory
        self.message_log = message_log
        self.services = Services(
            directory=directory,
            xslt=xslt if xslt is not None else XsltEngine(directory, workers=xslt_workers),
            receivers=receivers if receivers is not None else ReceiverPool(),
            time_limit=step_time_limit,
        )

    async def process(self, flow: Flow, exchange: Exchange) -> Reply:
        """Run ``flow`` over ``exchange``; always returns the reply for the sender."""
        entry = MessageLogEntry(
            message_guid=exchange.message_id,
            flow=flow.name,
            endpoint=flow.endpoint,
            status=PROCESSING,
            start=utcnow(),
            user=exchange.user,
            sender_partner=exchange.sender_partner,
        )
        logs.bind_message(exchange.message_id, flow.name, exchange.sender_partner)
        await self._log("started", entry)
        failed_step: str | None = None
        error: str | None = None
        reply: Reply | None = None
        for step in flow.steps:
            try:
                reply = await metrics.run_step(step, flow.name, exchange, self.services)
            except StepError as exc:
                failed_step, error = step.label, exc.detail
                reply = _failure(exchange, exc.status, f"{step.label} failed: {exc.text}")
            except Exception:
                log.exception("%s of flow %s failed", step.label, flow.name)
                failed_step, error = step.label, "internal error (see the server log)"
                reply = _failure(exchange, 500, f"{step.label} failed: internal error")
            if reply is not None:
                break
        if reply is None:
            reply = exchange.reply()
        metrics.message_finished(flow.name, FAILED if failed_step else COMPLETED)
        if failed_step:
            log.info("message failed: %s: %s", failed_step, error)
        await self._log(
            "finished",
            MessageLogEntry(
                message_guid=entry.message_guid,
                flow=entry.flow,
                endpoint=entry.endpoint,
                status=FAILED if failed_step else COMPLETED,
                start=entry.start,
                end=utcnow(),
                user=entry.user,
                sender_partner=exchange.sender_partner,
                receiver_partner=exchange.receiver_partner,
                http_status=reply.status,
                failed_step=failed_step,
                error=error,
                attachments=tuple(exchange.attachments),
            ),
        )
        return reply

    async def _log(self, event: str, entry: MessageLogEntry) -> None:
        if self.message_log is None:
            return
        try:
            await getattr(self.message_log, event)(entry)
        except Exception:
            log.exception(
                "message processing log: %s of %s not recorded", event, entry.message_guid
            )

    async def aclose(self) -> None:
        """Close receiver connections and the XSLT workers."""
        await self.services.receivers.aclose()
        self.services.xslt.close()


def _failure(exchange: Exchange, status: int, text: str) -> Reply:
    return Reply(
        status=status,
        body=(text + "\n").encode("utf-8"),
        content_type=ERROR_CONTENT_TYPE,
        headers={MESSAGE_ID: exchange.message_id},
    )

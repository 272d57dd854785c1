"""Running a flow over one message: steps in order, the reply, the log entry.

Each step leaves a :class:`~partnergate.runtime.messagelog.RunStep` (its time, outcome and
what it noted) unless the flow's log level is ``NONE``; at ``TRACE`` the step's message
before and after it is kept too, secrets masked.

A step that raises :class:`StepError` ends the message with its status and a plain-text
body naming the step and the reason; anything else a step raises is a fault of ours,
answered 500 without internals and logged with its traceback.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from time import perf_counter

from .. import logs, metrics
from .directory import PartnerDirectory
from .errors import StepError
from .exchange import MESSAGE_ID, Exchange, Reply
from .flows import Flow
from .messagelog import (
    COMPLETED,
    FAILED,
    MAX_TRACE_BODY,
    NONE,
    PROCESSING,
    TRACE,
    LogLevels,
    MessageLogEntry,
    MessageLogSink,
    RunStep,
    Snapshot,
    mask_snapshot,
    snapshot,
    utcnow,
)
from .receivers import ReceiverPool
from .services import Services
from .steps import Step
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
        log_levels: LogLevels | None = None,
        trace_max_body: int = MAX_TRACE_BODY,
    ) -> None:
        self.directory = directory
        self.message_log = message_log
        self.log_levels = log_levels if log_levels is not None else LogLevels()
        self.trace_max_body = trace_max_body
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
            correlation_id=exchange.correlation_id,
        )
        logs.bind_message(exchange.message_id, flow.name, exchange.sender_partner)
        await self._log("started", entry)
        level = self.log_levels.level_of(flow.name, entry.start)
        failed_step: str | None = None
        error: str | None = None
        reply: Reply | None = None
        steps: list[RunStep] = []
        services, notes, traced = self.services, exchange.notes, level == TRACE
        clock = perf_counter()
        for index, step in enumerate(flow.steps, start=1):
            notes.clear()
            before = self._snapshot(exchange) if traced else None
            step_error: str | None = None
            began = perf_counter()
            try:
                reply = await step.run(exchange, services)
            except StepError as exc:
                failed_step, error = step.label, exc.detail
                step_error = exc.detail
                reply = _failure(exchange, exc.status, f"{step.label} failed: {exc.text}")
            except Exception:
                log.exception("%s of flow %s failed", step.label, flow.name)
                failed_step, error = step.label, "internal error (see the server log)"
                step_error = error
                reply = _failure(exchange, 500, f"{step.label} failed: internal error")
            except BaseException:
                metrics.step_finished(flow.name, step.label, perf_counter() - began)
                raise
            ended = perf_counter()
            metrics.step_finished(flow.name, step.label, ended - began)
            if level != NONE:
                steps.append(
                    RunStep(
                        index,
                        step.label,
                        step.kind,
                        entry.start,
                        int((began - clock) * 1_000_000),
                        int((ended - began) * 1_000_000),
                        FAILED if step_error is not None else COMPLETED,
                        "; ".join(notes)[:1000] if notes else "",
                        step_error,
                        before,
                        self._snapshot(exchange) if traced else None,
                    )
                )
            if reply is not None:
                break
        if reply is None:
            reply = exchange.reply()
        metrics.message_finished(flow.name, FAILED if failed_step else COMPLETED)
        if failed_step:
            log.info("message failed: %s: %s", failed_step, error)
        if level == TRACE and exchange.secrets:
            steps = [_masked(s, tuple(exchange.secrets)) for s in steps]
        receiver = exchange.receiver_partner or _named_receiver(flow.steps, exchange)
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
                receiver_partner=receiver,
                http_status=reply.status,
                failed_step=failed_step,
                error=error,
                attachments=tuple(exchange.attachments),
                correlation_id=exchange.correlation_id,
                log_level=level,
                steps=tuple(steps),
                custom_properties=tuple(exchange.custom_properties),
                adapter_attributes=tuple(exchange.adapter_attributes),
            ),
        )
        return reply

    def _snapshot(self, exchange: Exchange) -> Snapshot:
        return snapshot(
            dict(exchange.headers.items()),
            exchange.body,
            tuple(exchange.secrets),
            self.trace_max_body,
        )

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


def _masked(step: RunStep, secrets: tuple[str, ...]) -> RunStep:
    """A traced step with the credential values the flow learnt later masked too."""
    return replace(
        step,
        before=step.before and mask_snapshot(step.before, secrets),
        after=step.after and mask_snapshot(step.after, secrets),
    )


def _named_receiver(steps: list[Step], exchange: Exchange) -> str | None:
    """The receiver a later step would have called: a message that failed before its
    ``call`` step still shows whom it was for."""
    for step in steps:
        named = step.names_receiver(exchange)
        if named:
            return named
    return None


def _failure(exchange: Exchange, status: int, text: str) -> Reply:
    return Reply(
        status=status,
        body=(text + "\n").encode("utf-8"),
        content_type=ERROR_CONTENT_TYPE,
        headers={MESSAGE_ID: exchange.message_id},
    )

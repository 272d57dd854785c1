"""Why a message or a flow file failed, in words a sender or an admin can act on.

A step raises :class:`StepError` with the HTTP status the sender gets and a short public
text; ``detail`` may say more for the message processing log (addresses, exception
types), never for the sender. :class:`FlowError` names the file, line and step of a flow
definition that cannot be loaded.
"""

from __future__ import annotations


class StepError(Exception):
    """A step cannot go on; the message ends with ``status`` and ``text``."""

    def __init__(self, status: int, text: str, *, detail: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.detail = detail or text


def unreadable(text: str, *, detail: str | None = None) -> StepError:
    """The message lacks what the flow reads, or is not the format it expects."""
    return StepError(400, text, detail=detail)


def refused(exc: ValueError) -> StepError:
    """The body could not be read as the step needs it: 400, or the status the refusal
    names (415 for an encoding the XML door does not know)."""
    status = getattr(exc, "status", 400)
    return StepError(status if isinstance(status, int) else 400, str(exc))


def step_timeout(text: str) -> StepError:
    """A step ran past its time limit; its work was stopped."""
    return StepError(504, text)


def forbidden(text: str) -> StepError:
    """The authenticated sender may not send this message."""
    return StepError(403, text)


def missing(text: str) -> StepError:
    """A Partner Directory entry the flow needs does not exist."""
    return StepError(404, text)


def misconfigured(text: str, *, detail: str | None = None) -> StepError:
    """The flow or its Partner Directory content is wrong; the sender cannot fix it."""
    return StepError(500, text, detail=detail)


def receiver_failed(text: str, *, detail: str | None = None) -> StepError:
    return StepError(502, text, detail=detail)


def receiver_timeout(text: str, *, detail: str | None = None) -> StepError:
    return StepError(504, text, detail=detail)


class FlowError(Exception):
    """A flow definition that cannot be loaded: where, and why."""

    def __init__(
        self, message: str, *, file: str = "", line: int | None = None, step: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.step = step

    def located(self, *, file: str | None = None, step: str | None = None) -> FlowError:
        """The same error with the file or step filled in where it was unknown."""
        return FlowError(
            self.message,
            file=self.file or file or "",
            line=self.line,
            step=self.step or step,
        )

    def __str__(self) -> str:
        where = self.file or "<flow>"
        if self.line is not None:
            where += f":{self.line}"
        if self.step:
            where += f": {self.step}"
        return f"{where}: {self.message}"

"""The server's log: text for people, or one JSON object per line for log collectors.

The runtime marks what a task works on (:func:`bind_message`); every line logged while it
does carries the message ID, flow and partner, in either format. Lines say why a request
was refused or a message failed in words; nothing here adds request bodies or headers, so
a secret reaches the log only if a caller puts it there, which the code does not.

Low in the import graph: the standard library only.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = [
    "FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "bind_message",
    "configure",
]

FORMATS = ("text", "json")

_MESSAGE: ContextVar[tuple[str | None, str | None, str | None] | None] = ContextVar(
    "partnergate_message", default=None
)


def bind_message(message_id: str | None, flow: str | None, partner: str | None) -> None:
    """From here on, in this task, log lines name this message, flow and partner."""
    _MESSAGE.set((message_id, flow, partner))


def _context() -> tuple[str | None, str | None, str | None] | None:
    return _MESSAGE.get()


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message``, with ``[message … flow … partner …]`` where known."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        bound = _context()
        if bound is None:
            return line
        message_id, flow, partner = bound
        parts = [f"message {message_id}" if message_id else "", f"flow {flow}" if flow else ""]
        if partner:
            parts.append(f"partner {partner}")
        tag = ", ".join(p for p in parts if p)
        head, sep, rest = line.partition("\n")
        return f"{head} [{tag}]{sep}{rest}" if tag else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and
    message_id / flow / partner where known; a traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        bound = _context()
        if bound is not None:
            message_id, flow, partner = bound
            if message_id:
                entry["message_id"] = message_id
            if flow:
                entry["flow"] = flow
            if partner:
                entry["partner"] = partner
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class BufferedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that leaves flushing to a timer thread (every ``interval``
    seconds) and to lines at WARNING and above, so that a busy log costs no system call
    per line. At exit :mod:`logging` flushes what is left."""

    def __init__(self, stream: TextIO, interval: float = 0.5) -> None:
        super().__init__(stream)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-flush", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(text + self.terminator)
                if record.levelno >= logging.WARNING:
                    self.stream.flush()
        except Exception:
            self.handleError(record)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


def formatter(format: str) -> logging.Formatter:
    return JsonFormatter() if format == "json" else TextFormatter()


def configure(level: str, format: str = "text", stream: TextIO | None = None) -> None:
    """The root logger's one handler, in ``format`` (``text`` or ``json``). Each line is
    written when logged: a refusal is in the log by the time its answer has left."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # a warning (a flow's script, a library) as a line of this log, not raw on stderr
    logging.captureWarnings(True)
    if format == "json" and stream is None and not isinstance(sys.stdout, PrintedLines):
        sys.stdout = PrintedLines(logging.getLogger("partnergate.stdout"))


class PrintedLines:
    """``sys.stdout`` of a server that logs JSON: each line code prints (a flow's script
    debugging) becomes a line of the log, so that every line a collector reads is JSON.
    A line is complete at its newline, in the thread that printed it."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._pending = threading.local()

    def write(self, text: str) -> int:
        *lines, rest = (getattr(self._pending, "text", "") + text).split("\n")
        self._pending.text = rest
        for line in lines:
            self.logger.info("%s", line)
        return len(text)

    def flush(self) -> None:
        rest = getattr(self._pending, "text", "")
        if rest:
            self._pending.text = ""
            self.logger.info("%s", rest)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False


ACCESS = "partnergate.access"


class AccessWriter:
    """The access log: a line per request, kept in memory and written to stderr in one
    system call per half second (or per ``max_lines``), from the event loop's thread.

    It goes around :mod:`logging` on purpose: a logging handler takes a lock for each
    line and writes it at once, which cost more than the rest of routing a small message.
    The lines have the form of the server log (``format``), with the message ID, flow
    and partner where the request carried a message.
    """

    def __init__(self, format: str = "text", fd: int = 2, max_lines: int = 256) -> None:
        self.json = format == "json"
        self.fd = fd
        self.max_lines = max_lines
        self.lines: list[str] = []
        self._timer: Any = None

    def write(self, client: str | None, method: str, path: str, status: int, ms: float) -> None:
        now = datetime.now(UTC)
        bound = _MESSAGE.get()
        if self.json:
            entry: dict[str, Any] = {
                "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": "INFO",
                "logger": ACCESS,
                "message": f'{client or "-"} "{method} {path}" {status} {ms:.1f} ms',
                "client": client,
                "method": method,
                "path": path,
                "status": status,
                "ms": round(ms, 3),
            }
            if bound is not None:
                for key, value in zip(("message_id", "flow", "partner"), bound, strict=True):
                    if value:
                        entry[key] = value
            line = json.dumps(entry, ensure_ascii=False)
        else:
            tag = f" [message {bound[0]}]" if bound is not None and bound[0] else ""
            line = f'INFO {ACCESS}: {client or "-"} "{method} {path}" {status} {ms:.1f} ms{tag}'
        self.lines.append(line)
        if len(self.lines) >= self.max_lines:
            self.flush()
        elif self._timer is None:
            import asyncio

            self._timer = asyncio.get_running_loop().call_later(0.5, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines, self.lines = self.lines, []
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            pass  # the log's file is gone: the lines with it, as for any handler


def access_logger(format: str = "text", stream: TextIO | None = None) -> logging.Logger:
    """The access log's logger: its own buffered handler on stderr (block-buffered,
    flushed twice a second), so that a line per request costs no system call."""
    out = stream
    if out is None:
        out = open(sys.stderr.fileno(), "w", buffering=1 << 16, closefd=False)  # noqa: SIM115
    handler = BufferedHandler(out)
    handler.setFormatter(formatter(format))
    logger = logging.getLogger(ACCESS)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger

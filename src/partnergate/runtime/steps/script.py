"""``script``: a Python function ``process(message, pd)``, SAP's Groovy script step in Python.

``message`` is the :class:`~partnergate.runtime.exchange.Exchange` (with SAP's
``get_body``/``set_header``/``set_property`` names); ``pd`` offers the methods of SAP's
``PartnerDirectoryService`` in snake_case. A plain ``def process`` runs on a worker thread
and gets a ``pd`` whose methods block until the answer is there, as SAP's do; an
``async def process`` runs on the event loop and awaits the facade itself. To end the
message with a status of its choosing, a script raises
:class:`~partnergate.runtime.errors.StepError`.

A script has a time limit (``time-limit``, else the flow's, else the ``step_time_limit``
setting); past it the message ends with 504. A plain ``def process`` is then stopped by
an exception raised in its thread (:class:`ScriptTimeout`, a ``BaseException`` so that
``except Exception`` in the script does not swallow it). What cannot be stopped that way:
a call that waits inside C code (``time.sleep``, a socket read without a timeout, a long
regular expression) until it returns, and an ``async def process`` that computes without
awaiting, which holds the event loop; such a thread is left to finish and no longer
counts against the threads scripts run on.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import inspect
import logging
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ...security.xmldoor import XmlRefused
from ..directory import BinaryData, PartnerDirectory
from ..errors import FlowError, StepError, misconfigured, refused, step_timeout
from ..exchange import Exchange, Reply
from ..services import Services
from ..spec import Spec, line_of
from .base import LoadContext, Step, time_limit_of

SCRIPT_THREADS = 8
"""Plain scripts running at the same time; more wait for a free thread."""
STOP_GRACE = 1.0
"""Seconds a stopped script's thread gets to end before it is given up on."""


class ScriptTimeout(BaseException):
    """Raised inside a script's thread when its step ran out of time."""


_executor: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(SCRIPT_THREADS, thread_name_prefix="script")
    return _executor


def _abandon_threads() -> None:
    """A stopped script did not end: new scripts get threads of a new executor."""
    global _executor
    stuck, _executor = _executor, None
    if stuck is not None:
        stuck.shutdown(wait=False)


class _Run:
    """One call of a plain script on a thread, which :meth:`stop` can interrupt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident: int | None = None
        self._done = False

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            if self._done:  # stopped while it waited for a thread: never start
                return None
            self._ident = threading.get_ident()
        try:
            try:
                return function(*args)
            finally:
                with self._lock:
                    self._done = True
        except ScriptTimeout:
            return None

    def stop(self) -> None:
        with self._lock:
            if self._done:
                return
            if self._ident is None:
                self._done = True
                return
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._ident), ctypes.py_object(ScriptTimeout)
            )


log = logging.getLogger(__name__)


class BlockingPartnerDirectory:
    """The facade for scripts on worker threads: each call waits for the event loop."""

    def __init__(self, directory: PartnerDirectory, loop: asyncio.AbstractEventLoop) -> None:
        self._directory = directory
        self._loop = loop

    def _wait(self, call: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(call, self._loop).result()

    def get_parameter(self, parameter_id: str, partner_id: str, type: type = str) -> Any:
        return self._wait(self._directory.get_parameter(parameter_id, partner_id, type))

    def get_certificate_parameter(self, parameter_id: str, partner_id: str) -> Any:
        return self._wait(self._directory.get_certificate_parameter(parameter_id, partner_id))

    def get_partner_id(self, agency: str, scheme: str, alternative_partner_id: str) -> Any:
        return self._wait(self._directory.get_partner_id(agency, scheme, alternative_partner_id))

    def get_alternative_partner_id(self, agency: str, scheme: str, partner_id: str) -> Any:
        return self._wait(self._directory.get_alternative_partner_id(agency, scheme, partner_id))

    def get_partner_id_of_authorized_user(self, authorized_user: str) -> Any:
        return self._wait(self._directory.get_partner_id_of_authorized_user(authorized_user))

    def get_authorized_users(self, partner_id: str) -> list[str]:
        return self._wait(self._directory.get_authorized_users(partner_id))  # type: ignore[no-any-return]


SCRIPT_GLOBALS = {"StepError": StepError, "BinaryData": BinaryData}
"""Names a script finds without importing them."""


@dataclass
class ScriptStep(Step):
    kind = "script"
    file: Path
    function_name: str
    function: Callable[..., Any]
    time_limit: float | None = None

    @classmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        time_limit = context.time_limit
        if isinstance(node, yaml.ScalarNode):
            name, function_name, name_line = str(node.value), "process", line_of(node)
        else:
            spec = Spec(node, what)
            spec.only(("file", "function", "time-limit"))
            time_limit = time_limit_of(spec, context)
            name, function_name = spec.text("file"), spec.text("function", "process")
            name_line = spec.line_of("file")
        path = context.resolve(name)
        try:
            source = path.read_text(encoding="utf-8")
        except OSError:
            raise FlowError(f"{what}: script {name} not found", line=name_line) from None
        namespace: dict[str, Any] = {**SCRIPT_GLOBALS, "__name__": f"flowscript:{path.stem}"}
        try:
            exec(compile(source, str(path), "exec"), namespace)
        except SyntaxError as exc:
            raise FlowError(
                f"{what}: script {name} line {exc.lineno}: {exc.msg}", line=name_line
            ) from None
        except Exception as exc:
            raise FlowError(
                f"{what}: script {name} fails on loading: {type(exc).__name__}: {exc}",
                line=name_line,
            ) from None
        function = namespace.get(function_name)
        if not callable(function):
            raise FlowError(f"{what}: script {name} defines no {function_name}()", line=name_line)
        if len(inspect.signature(function).parameters) != 2:
            raise FlowError(
                f"{what}: {function_name}() must take two arguments (message, pd)", line=name_line
            )
        return cls(path, function_name, function, time_limit)

    async def run(self, exchange: Exchange, services: Services) -> Reply | None:
        limit = self.time_limit or services.time_limit
        try:
            if inspect.iscoroutinefunction(self.function):
                try:
                    await asyncio.wait_for(self.function(exchange, services.directory), limit)
                except TimeoutError:
                    raise self._timed_out(limit) from None
            else:
                await self._run_on_thread(exchange, services, limit)
        except StepError:
            raise
        except XmlRefused as exc:  # message.xml(): the sender's XML did not pass the door
            raise refused(exc) from None
        except Exception as exc:
            where = _script_line(exc, self.file)
            raise misconfigured(
                f"script {self.file.name} failed ({type(exc).__name__}{where})",
                detail="".join(traceback.format_exception(exc)),
            ) from None
        return None

    async def _run_on_thread(self, exchange: Exchange, services: Services, limit: float) -> None:
        loop = asyncio.get_running_loop()
        pd = BlockingPartnerDirectory(services.directory, loop)
        run = _Run()
        # in the message's context: what the script logs names the message it works on
        context = contextvars.copy_context()
        future = loop.run_in_executor(
            _threads(), context.run, run.call, self.function, exchange, pd
        )
        try:
            await asyncio.wait_for(asyncio.shield(future), limit)
        except TimeoutError:
            run.stop()
            done, _ = await asyncio.wait({future}, timeout=STOP_GRACE)
            if not done:
                log.warning("script %s did not stop; its thread is given up", self.file.name)
                _abandon_threads()
            raise self._timed_out(limit) from None

    def _timed_out(self, limit: float) -> StepError:
        return step_timeout(
            f"script {self.file.name} did not finish within {limit:g} s and was stopped"
        )


def _script_line(exc: BaseException, file: Path) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == str(file):
            return f" at line {frame.lineno}"
    return ""

"""``script``: a Python function ``process(message, pd)``, SAP's Groovy script step in Python.

``message`` is the :class:`~partnergate.runtime.exchange.Exchange` (with SAP's
``get_body``/``set_header``/``set_property`` names); ``pd`` offers the methods of SAP's
``PartnerDirectoryService`` in snake_case. A plain ``def process`` runs on a worker thread
and gets a ``pd`` whose methods block until the answer is there, as SAP's do; an
``async def process`` runs on the event loop and awaits the facade itself. To end the
message with a status of its choosing, a script raises
:class:`~partnergate.runtime.errors.StepError`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..directory import BinaryData, PartnerDirectory
from ..errors import FlowError, StepError, misconfigured
from ..exchange import Exchange, Reply
from ..services import Services
from ..spec import Spec, line_of
from .base import LoadContext, Step

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

    @classmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        if isinstance(node, yaml.ScalarNode):
            name, function_name, name_line = str(node.value), "process", line_of(node)
        else:
            spec = Spec(node, what)
            spec.only(("file", "function"))
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
        return cls(path, function_name, function)

    async def run(self, exchange: Exchange, services: Services) -> Reply | None:
        try:
            if inspect.iscoroutinefunction(self.function):
                await self.function(exchange, services.directory)
            else:
                pd = BlockingPartnerDirectory(services.directory, asyncio.get_running_loop())
                await asyncio.to_thread(self.function, exchange, pd)
        except StepError:
            raise
        except Exception as exc:
            where = _script_line(exc, self.file)
            raise misconfigured(
                f"script {self.file.name} failed ({type(exc).__name__}{where})",
                detail="".join(traceback.format_exception(exc)),
            ) from None
        return None


def _script_line(exc: BaseException, file: Path) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == str(file):
            return f" at line {frame.lineno}"
    return ""

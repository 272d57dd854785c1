"""What every step is: parsed once from YAML, then run per message."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import yaml

from ..exchange import Exchange, Reply
from ..spec import Spec

if TYPE_CHECKING:
    from ..services import Services


@dataclass(frozen=True)
class LoadContext:
    """What a step may need from its flow while it is parsed."""

    file: Path
    namespaces: dict[str, str] = field(default_factory=dict)
    time_limit: float | None = None
    """The flow's ``time-limit`` for steps that have one, if it sets one."""

    def resolve(self, relative: str) -> Path:
        """A path named in the flow, relative to the flow file's folder."""
        return (self.file.parent / relative).resolve()


def time_limit_of(spec: Spec, context: LoadContext) -> float | None:
    """A step's own ``time-limit`` (seconds), else the flow's, else None (the setting)."""
    if "time-limit" in spec:
        return spec.number("time-limit", 0.0)
    return context.time_limit


class Step(ABC):
    """One step of a flow. ``run`` returns a :class:`Reply` to end the flow early."""

    kind: ClassVar[str]
    label: str = ""
    line: int = 0

    @classmethod
    @abstractmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        """The step from the YAML under its kind key; raises ``FlowError``."""

    @abstractmethod
    async def run(self, exchange: Exchange, services: Services) -> Reply | None: ...

    @property
    def ends_flow(self) -> bool:
        return False

    def names_receiver(self, exchange: Exchange) -> str | None:
        """The receiver partner this step is about, if it names one (the ``call`` step)."""
        return None

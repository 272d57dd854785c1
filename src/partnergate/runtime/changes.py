"""Committed changes as a stream the runtime owns: what the store changed, per entity set.

Lives here: :class:`Change` (one entity a committed transaction created, changed or
deleted), :class:`ChangeSource` (a port the store implements for writes made by other
processes), and :class:`Changes`, the stream the caches subscribe to, with a generation
per entity set. Must not know: SQL, HTTP.

Writes of this process are published after their commit and before the writer's answer.
Writes of other processes (other workers, other nodes, the CLI) arrive from the sources:
pushed (PostgreSQL's ``NOTIFY``) or pulled by :meth:`Changes.catch_up`, which the runtime
runs before each message, so that no cache serves a message something older than the
last write answered before it arrived. A cache that derives something from several
entity sets keys it by :meth:`Changes.stamp` of exactly those sets: a write elsewhere
leaves it alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

PARTNERS = "Partners"
PARTNER_SETS = (
    "AlternativePartners",
    "AuthorizedUsers",
    "BinaryParameters",
    "StringParameters",
    "UserCredentialParameters",
)
"""What a partner holds: deleting a partner changes them all."""
USERS, CLIENTS, SESSIONS = "LocalUsers", "OAuthClients", "Sessions"
FLOW_LOG_LEVELS = "FlowLogLevels"
"""A flow's log level; the change's key carries the new level (``Flow``, ``LogLevel``,
``Until`` in ISO 8601 or empty), so every process follows without reading the store."""
MAPPINGS = ("CertificateUserMappings", "CertificateMappingRules")
IDENTITY_SETS = (USERS, CLIENTS, "AuthorizedUsers", *MAPPINGS)
"""What decides who a sender is and which partner it sends for: accounts, certificate
mappings and authorised users (a deleted partner counts as a change of its users)."""


@dataclass(frozen=True)
class Change:
    """An entity that a committed transaction created, changed or deleted."""

    entity_set: str
    key: Mapping[str, object]
    pid: str | None


Subscriber = Callable[[Sequence[Change]], None]


class ChangeSource(Protocol):
    """Other processes' committed changes, for a store that cannot push them."""

    def poll(self) -> Sequence[Change] | None:
        """What was committed elsewhere since the last poll; ``None`` when that cannot be
        told (everything may have changed)."""
        ...


class Changes:
    """The stream: publish what changed, subscribe to hear it, a generation per set."""

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}
        self._everything = 0
        self._sums: dict[tuple[str, ...], int] = {}
        """:meth:`generation` by the sets asked for, until the next change: a cache asks
        before every message, and nothing changes between most of them."""
        self._subscribers: list[tuple[Subscriber, Callable[[], None]]] = []
        self._sources: list[ChangeSource] = []
        self.live: Callable[[], bool] = lambda: True
        """Whether other processes' changes are being heard; while not, nothing derived
        from the store is trusted (:meth:`stamp` is None)."""

    def subscribe(self, on_changes: Subscriber, on_gap: Callable[[], None]) -> None:
        """``on_changes`` hears every batch; ``on_gap`` when changes may have been missed."""
        self._subscribers.append((on_changes, on_gap))

    def add_source(self, source: ChangeSource) -> None:
        self._sources.append(source)

    def publish(self, changes: Sequence[Change]) -> None:
        """Committed changes: advance their sets' generations, then tell every subscriber."""
        if not changes:
            return
        for change in changes:
            for entity_set in _touched(change.entity_set):
                self._generations[entity_set] = self._generations.get(entity_set, 0) + 1
        self._sums.clear()
        for on_changes, _ in self._subscribers:
            try:
                on_changes(changes)
            except Exception:
                log.exception("a cache failed to drop what changed")

    def gap(self) -> None:
        """Changes may have been missed (a lost connection, a pruned log): forget all."""
        self._everything += 1
        self._sums.clear()
        for _, on_gap in self._subscribers:
            try:
                on_gap()
            except Exception:
                log.exception("a cache failed to forget everything")

    def catch_up(self) -> None:
        """Take in what other processes committed; cheap when nothing was."""
        for source in self._sources:
            try:
                found = source.poll()
            except Exception:
                log.exception("changes of other processes could not be read")
                found = None
            if found is None:
                self.gap()
            elif found:
                self.publish(found)

    def close(self) -> None:
        for source in self._sources:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        self._sources.clear()

    def generation(self, entity_sets: Iterable[str]) -> int:
        """Advances whenever one of ``entity_sets`` changes (or everything may have)."""
        if isinstance(entity_sets, tuple):
            known = self._sums.get(entity_sets)
            if known is None:
                known = self._sums[entity_sets] = self._sum(entity_sets)
            return known
        return self._sum(entity_sets)

    def _sum(self, entity_sets: Iterable[str]) -> int:
        return self._everything + sum(self._generations.get(name, 0) for name in entity_sets)

    def stamp(self, entity_sets: Iterable[str]) -> int | None:
        """:meth:`generation`, or None while other processes' changes are not heard."""
        return self.generation(entity_sets) if self.live() else None


def _touched(entity_set: str) -> tuple[str, ...]:
    if entity_set == PARTNERS:
        return (PARTNERS, *PARTNER_SETS)
    return (entity_set,)

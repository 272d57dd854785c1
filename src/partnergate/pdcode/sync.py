"""From a directory of files to a plan against a target, partner by partner.

A target is anything that can say what it holds for a list of Pids (:class:`Target`): the
local store, or a remote ``/api/v1``. Partners are compared in chunks, so a directory of
30,000 partners never sits in memory at once.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from . import files
from .plan import Certificates, Op, Partner, diff_certificates, diff_partner

CHUNK = 500
"""Partners compared at a time."""


class Target(Protocol):
    async def partners(self, pids: list[str]) -> dict[str, Partner]:
        """What the target holds for these Pids (absent Pids are left out)."""

    async def owners(
        self, alternatives: set[tuple[str, str, str]], users: set[str]
    ) -> tuple[dict[tuple[str, str, str], str], dict[str, str]]:
        """Which Pid holds each of these alternative partners and authorised users."""

    async def certificates(self) -> Certificates | None:
        """None when the target has no certificate mappings API."""


# -- overlays ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    pid: str
    id: str
    value: str


@dataclass
class Overlay:
    """Per-stage values: ``strings: [{pid: GLOB, id: GLOB, value: TEXT}]``.

    A rule replaces the value of every string parameter whose Pid and Id match; ``{pid}``
    and ``{id}`` in the value stand for the matched ones. Rules apply in order; a value
    the directory does not have is not added.
    """

    rules: list[Rule] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Overlay:
        try:
            data = yaml.safe_load(path.read_text("utf-8")) or {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise files.LayoutError(f"overlay {path}: {exc}") from None
        items = data.get("strings") if isinstance(data, dict) else None
        if not isinstance(items, list) or set(data) - {"strings"}:
            raise files.LayoutError(
                f"overlay {path}: expected 'strings:' with a list of {{pid, id, value}}"
            )
        rules = []
        for item in items:
            if not isinstance(item, dict) or "id" not in item or "value" not in item:
                raise files.LayoutError(f"overlay {path}: each rule needs id and value")
            rules.append(Rule(str(item.get("pid", "*")), str(item["id"]), str(item["value"])))
        return cls(rules)

    def apply(self, partner: Partner) -> None:
        for rule in self.rules:
            if not fnmatch.fnmatchcase(partner.pid, rule.pid):
                continue
            for id_ in partner.strings:
                if fnmatch.fnmatchcase(id_, rule.id):
                    partner.strings[id_] = rule.value.replace("{pid}", partner.pid).replace(
                        "{id}", id_
                    )


# -- planning ----------------------------------------------------------------------------


def chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def desired_partners(
    root: Path, pids: Iterable[str], overlay: Overlay | None, references: bool = True
) -> Iterator[Partner]:
    for pid in pids:
        partner = files.read_partner(root, pid)
        if overlay is not None:
            overlay.apply(partner)
        if not references:
            for id_, cred in partner.credentials.items():
                if cred.password is not None:
                    raise files.LayoutError(
                        f"{pid}/{files.CREDENTIALS} {id_}: password references are resolved "
                        "only by the command line (pd import); leave Password out here"
                    )
        files.resolve_passwords(partner, root)
        yield partner


def _read(root: Path, pids: list[str], overlay: Overlay | None, references: bool) -> list[Partner]:
    """In a thread: reading thousands of files never stalls the event loop."""
    return list(desired_partners(root, pids, overlay, references))


@dataclass
class Claims:
    """Which partner of the files holds each authorised user and alternative partner: their
    keys are global, so two partners giving the same one is a contradiction in the files,
    refused whichever chunks the two fall in (else the later one would read as a move)."""

    users: dict[str, str] = field(default_factory=dict)
    alternatives: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def check(self, partner: Partner) -> None:
        for user in sorted(partner.users):
            owner = self.users.setdefault(user, partner.pid)
            if owner != partner.pid:
                raise files.LayoutError(
                    f"authorised user {user!r} is given to both {owner} and {partner.pid}; "
                    "a user belongs to one partner"
                )
        for alt in sorted(partner.alternatives):
            owner = self.alternatives.setdefault(alt, partner.pid)
            if owner != partner.pid:
                raise files.LayoutError(
                    f"alternative partner {' / '.join(alt)} is given to both {owner} and "
                    f"{partner.pid}; it belongs to one partner"
                )


async def plan(
    root: Path,
    target: Target,
    mode: str,
    *,
    pids: Iterable[str] | None = None,
    overlay: Overlay | None = None,
    references: bool = True,
) -> AsyncIterator[Op]:
    """The writes that make the target hold what the directory says, in apply order.

    ``references=False`` refuses ``env:``/``file:`` password references: a directory that
    arrives from a browser must not make the server read its own environment or files.
    """
    claims = Claims()
    for chunk in chunks(await asyncio.to_thread(files.list_pids, root, pids)):
        desired = await asyncio.to_thread(_read, root, chunk, overlay, references)
        for partner in desired:
            claims.check(partner)
        current = await target.partners(chunk)
        alternatives = set().union(*(p.alternatives for p in desired))
        users = set().union(*(p.users for p in desired))
        alt_owner, user_owner = await target.owners(alternatives, users)
        for partner in desired:
            here = current.get(partner.pid) or Partner(partner.pid)
            for op in diff_partner(
                partner,
                here,
                mode,
                alternative_owner={k: v for k, v in alt_owner.items() if v != partner.pid},
                user_owner={k: v for k, v in user_owner.items() if v != partner.pid},
            ):
                yield op
    wanted = await asyncio.to_thread(files.read_certificates, root) if pids is None else None
    if wanted is not None:
        current_certs = await target.certificates()
        if current_certs is None:
            raise files.LayoutError(
                "the target has no CertificateUserMappings API; remove _certificates.yaml "
                "or use --pids"
            )
        for op in diff_certificates(wanted, current_certs, mode):
            yield op

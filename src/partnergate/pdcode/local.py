"""The local store as source and target: export in one read transaction, import in one
write transaction through the store's own write functions (the rules and change events the
API uses apply to every row)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, tuple_, union
from sqlalchemy.ext.asyncio import AsyncConnection

from ..model.errors import DirectoryError
from ..security import certificates as certs
from ..store.changes import Change
from ..store.directory import Directory, DirectoryStore
from ..store.tables import ENTITY_TABLES, PARTNER_TABLES
from . import files
from .plan import (
    Binary,
    Certificates,
    Credential,
    Mapping,
    Op,
    Partner,
    password_hash,
)
from .sync import Overlay, chunks, plan

ACTOR = "pd-import"
"""Default ``CreatedBy``/``LastModifiedBy`` of what an import writes."""

_ST = ENTITY_TABLES["StringParameters"]
_BP = ENTITY_TABLES["BinaryParameters"]
_UC = ENTITY_TABLES["UserCredentialParameters"]
_AP = ENTITY_TABLES["AlternativePartners"]
_AU = ENTITY_TABLES["AuthorizedUsers"]
_CM = ENTITY_TABLES["CertificateUserMappings"]
_CR = ENTITY_TABLES["CertificateMappingRules"]


@asynccontextmanager
async def read_transaction(store: DirectoryStore) -> AsyncIterator[Directory]:
    """One consistent view of the store for a whole export."""
    await store.catch_up()
    engine = store.engine
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            if engine.dialect.name == "sqlite":
                # pysqlite opens a transaction only before a write; a read snapshot
                # needs an explicit BEGIN.
                await conn.exec_driver_sql("BEGIN")
            yield Directory(conn, store.secretbox, store.limits)


class LocalTarget:
    """What the local store holds, read inside the caller's transaction."""

    def __init__(self, directory: Directory, *, hashed_passwords: bool = True) -> None:
        self.directory = directory
        self.conn: AsyncConnection = directory.conn
        self.hashed_passwords = hashed_passwords
        self._present: set[str] | None = None

    async def all_pids(self) -> list[str]:
        pids = union(*(select(t.c.pid.label("pid")) for t in PARTNER_TABLES.values()))
        sub = pids.subquery()
        rows = await self.conn.execute(select(sub.c.pid).order_by(sub.c.pid))
        return [r.pid for r in rows]

    async def partners(self, pids: list[str]) -> dict[str, Partner]:
        await self.directory.flush()  # the transaction's own creates, as any read sees them
        if self._present is None:
            # Pids the store held before anything was written: an import writes a Pid's
            # entities only in that Pid's turn, so the others need no look (and on
            # PostgreSQL the tables' statistics know nothing of rows this transaction wrote).
            self._present = set(await self.all_pids())
        pids = [pid for pid in pids if pid in self._present]
        out: dict[str, Partner] = {}
        if not pids:
            return out

        def get(pid: str) -> Partner:
            partner = out.get(pid)
            if partner is None:
                partner = out[pid] = Partner(pid)
            return partner

        run = self.conn.execute
        for r in await run(select(_ST.c.pid, _ST.c.id, _ST.c.value).where(_ST.c.pid.in_(pids))):
            get(r.pid).strings[r.id] = r.value
        query = select(_BP.c.pid, _BP.c.id, _BP.c.content_type, _BP.c.value)
        for r in await run(query.where(_BP.c.pid.in_(pids))):
            get(r.pid).binaries[r.id] = Binary(r.content_type, bytes(r.value))
        query = select(_AP.c.pid, _AP.c.agency, _AP.c.scheme, _AP.c.id)
        for r in await run(query.where(_AP.c.pid.in_(pids))):
            get(r.pid).alternatives.add((r.agency, r.scheme, r.id))
        for r in await run(select(_AU.c.pid, _AU.c.user).where(_AU.c.pid.in_(pids))):
            get(r.pid).users.add(r.user)
        query = select(_UC.c.pid, _UC.c.id, _UC.c.user, _UC.c.password_enc)
        for r in await run(query.where(_UC.c.pid.in_(pids))):
            hashed = None
            if self.hashed_passwords:
                hashed = password_hash(self.directory.secretbox.decrypt(r.password_enc))
            get(r.pid).credentials[r.id] = Credential(r.user, hashed)
        return out

    async def owners(
        self, alternatives: set[tuple[str, str, str]], users: set[str]
    ) -> tuple[dict[tuple[str, str, str], str], dict[str, str]]:
        await self.directory.flush()
        alt_owner: dict[tuple[str, str, str], str] = {}
        for part in chunks(sorted(alternatives)):
            query = select(_AP.c.agency, _AP.c.scheme, _AP.c.id, _AP.c.pid).where(
                tuple_(_AP.c.agency, _AP.c.scheme, _AP.c.id).in_(part)
            )
            for r in await self.conn.execute(query):
                alt_owner[(r.agency, r.scheme, r.id)] = r.pid
        user_owner: dict[str, str] = {}
        for part in chunks(sorted(users)):
            for r in await self.conn.execute(select(_AU).where(_AU.c.user.in_(part))):
                user_owner[r.user] = r.pid
        return alt_owner, user_owner

    async def certificates(self) -> Certificates:
        out = Certificates()
        for r in await self.conn.execute(select(_CM).order_by(_CM.c.id)):
            pem = files.pem_text(certs.load_certificate(r.certificate))
            out.mappings[r.id] = Mapping(r.user, pem)
        for r in await self.conn.execute(select(_CR).order_by(_CR.c.id)):
            fields = {
                "Kind": r.kind,
                "User": r.user,
                "SubjectDN": r.subject_dn,
                "IssuerDN": r.issuer_dn,
                "SerialNumber": r.serial_number,
                "Thumbprint": r.thumbprint,
            }
            out.rules[r.id] = {k: v for k, v in fields.items() if v not in (None, "")}
        return out


async def export(store: DirectoryStore, root: Path, pids: Iterable[str] | None = None) -> int:
    """Write the store's partners (all, or ``pids``) under ``root``; the count written."""
    root.mkdir(parents=True, exist_ok=True)
    wanted = None if pids is None else sorted(set(pids))
    count = 0
    async with read_transaction(store) as directory:
        source = LocalTarget(directory, hashed_passwords=False)
        every = await source.all_pids()
        chosen = every if wanted is None else [p for p in every if p in set(wanted)]
        for chunk in chunks(chosen):
            found = await source.partners(chunk)
            await asyncio.to_thread(_write_partners, root, [found[pid] for pid in chunk])
            count += len(chunk)
        if wanted is None:
            await asyncio.to_thread(files.remove_stale, root, set(chosen))
            wanted_certs = await source.certificates()
            await asyncio.to_thread(files.write_certificates, root, wanted_certs)
    return count


def _write_partners(root: Path, partners: list[Partner]) -> None:
    """In a thread: an export of thousands of partners never stalls the event loop."""
    for partner in partners:
        files.write_partner(root, partner)


@dataclass
class Outcome:
    ops: list[Op] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"create": 0, "update": 0, "delete": 0})
    applied: bool = False
    error: str | None = None


async def apply_op(directory: Directory, op: Op, actor: str) -> None:
    if op.action == "delete":
        await directory.delete(op.entity_set, op.key)
    elif op.action == "create":
        # The plan read the target: the key is not there, so no upsert's look is needed.
        await directory.create(op.entity_set, _create_values(op), actor, new=True)
    elif op.entity_set in _UPSERT_SETS:
        await directory.create(op.entity_set, _create_values(op), actor)
    else:
        await directory.update(op.entity_set, op.key, dict(op.values), actor)


_UPSERT_SETS = frozenset({"UserCredentialParameters", "CertificateUserMappings"})


def _create_values(op: Op) -> dict[str, object]:
    """What a create gives the store; the store's rules copy what they keep, so the op's
    own values go as they are."""
    if op.entity_set == "CertificateUserMappings":
        return {"Id": op.key["Id"], **op.values}
    return op.values


async def import_(
    store: DirectoryStore,
    root: Path,
    *,
    mode: str = "replace",
    pids: Iterable[str] | None = None,
    overlay: Overlay | None = None,
    dry_run: bool = False,
    actor: str = ACTOR,
    on_op: Callable[[Op], None] | None = None,
    keep_ops: bool = True,
    references: bool = True,
) -> Outcome:
    """Plan, and unless ``dry_run`` apply, in one transaction: all of it or nothing.

    A refused write raises :class:`DirectoryError` after the transaction rolled back.
    """
    outcome = Outcome()
    compact_at, folded, seen = COMPACT_AT, 0, set[str]()
    context = read_transaction(store) if dry_run else store.begin(actor)
    async with _cycles_collected_after(), context as directory:
        target = LocalTarget(directory)
        async for op in plan(root, target, mode, pids=pids, overlay=overlay, references=references):
            outcome.counts[op.action] += 1
            if keep_ops:
                outcome.ops.append(op)
            if on_op is not None:
                on_op(op)
            if not dry_run:
                try:
                    await apply_op(directory, op, actor)
                except DirectoryError as exc:
                    if directory.failed_behind:
                        raise  # an earlier op's rows failed: the error names them
                    raise ImportRefused(op, exc) from None
                await directory.settle()
                if len(directory.changes) >= compact_at:
                    # Only what came since the last fold is folded: one event per partner
                    # stays, and each event is looked at once however large the import.
                    directory.changes[folded:] = compact(directory.changes[folded:], seen)
                    folded = len(directory.changes)
                    compact_at = folded + COMPACT_AT
    outcome.applied = not dry_run
    return outcome


@asynccontextmanager
async def _cycles_collected_after() -> AsyncIterator[None]:
    """Cyclic garbage collection paused while an import runs, and as it was after.

    An import makes a few objects per row and frees them by reference counting (none is
    in a cycle); with the collector on, the allocations of millions of rows start full
    collections over every object the process holds, about a sixth of an import's time.
    Memory stays flat: what an import keeps is bounded (see :func:`compact`).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


COMPACT_AT = 20_000
"""Change events kept before those of parameters are folded into one per partner."""

_PARAMETER_SETS = frozenset({"StringParameters", "BinaryParameters", "UserCredentialParameters"})


def compact(changes: list[Change], seen: set[str] | None = None) -> list[Change]:
    """One ``Partners`` change per Pid in place of its parameters' changes; none for the
    Pids in ``seen`` (folded before), to which the Pids folded here are added.

    Caches forget a whole partner on a ``Partners`` change (as after a partner's delete),
    so nothing is missed, and an import of millions of rows keeps its memory flat.
    """
    out: list[Change] = []
    seen = set() if seen is None else seen
    for change in changes:
        folds = change.entity_set in _PARAMETER_SETS or change.entity_set == "Partners"
        if folds and change.pid is not None:
            if change.pid not in seen:
                seen.add(change.pid)
                out.append(Change("Partners", {"Pid": change.pid}, change.pid))
        else:
            out.append(change)
    return out


class ImportRefused(Exception):
    """The store refused one write of an import; the transaction rolled back."""

    def __init__(self, op: Op, error: DirectoryError) -> None:
        self.op = op
        self.error = error
        message = getattr(error, "message", str(error))
        super().__init__(f"{op.describe()}: {message}; nothing was changed")

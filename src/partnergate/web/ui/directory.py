"""Reads the UI makes of the Partner Directory, each a bounded query through the store.

The partner list is a page of the store's ``Partners`` set (a UNION of the Pids of five
tables), read with LIMIT/OFFSET and one row more than shown, so that neither the page nor
the "next" link needs a count over every partner.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...odata.filter import (
    Call,
    Compare,
    CompareOp,
    Expr,
    Literal,
    Or,
    OrderBy,
    PropertyRef,
    ValueType,
)
from ...store.directory import Directory, DirectoryStore, ListRequest
from .kinds import ALTERNATIVE, AUTHORIZED_USER, BINARY, CREDENTIAL, STRING, Kind

PAGE_SIZE = 50
MAX_PAGE = 1_000_000
SECTIONS: tuple[Kind, ...] = (STRING, BINARY, CREDENTIAL, ALTERNATIVE, AUTHORIZED_USER)
"""The parts of a partner, in the order its page shows them."""

_PID = PropertyRef("Pid", ValueType.STRING)
_USER = PropertyRef("User", ValueType.STRING)


def _text(value: str) -> Literal:
    return Literal(value, ValueType.STRING)


def pid_is(pid: str) -> Expr:
    return Compare(CompareOp.EQ, _PID, _text(pid))


def contains(prop: PropertyRef, text: str) -> Expr:
    """Case-insensitive for ASCII, which ``tolower`` lowers alike on both databases."""
    return Call("substringof", (_text(text.lower()), Call("tolower", (prop,))))


def pid_contains(text: str) -> Expr:
    return contains(_PID, text)


def any_of(prop: PropertyRef, values: list[str], *, lower: bool = False) -> Expr | None:
    """``prop`` equals one of ``values`` (lower-cased first if ``lower``); None if none."""
    subject: Expr = Call("tolower", (prop,)) if lower else prop
    terms: list[Expr] = [Compare(CompareOp.EQ, subject, _text(v)) for v in values]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else Or(tuple(terms))


@dataclass(frozen=True)
class PartnerPage:
    pids: list[str]
    number: int
    size: int
    has_next: bool

    @property
    def first(self) -> int:
        return (self.number - 1) * self.size + 1

    @property
    def last(self) -> int:
        return self.first + len(self.pids) - 1


async def partner_page(
    store: DirectoryStore,
    search: str = "",
    descending: bool = False,
    number: int = 1,
    size: int = PAGE_SIZE,
) -> PartnerPage:
    """One page of partners whose Pid contains ``search``, from one query."""
    number = min(max(number, 1), MAX_PAGE)
    request = ListRequest(
        filter=pid_contains(search) if search else None,
        orderby=(OrderBy(_PID, descending),),
        top=size + 1,
        skip=(number - 1) * size,
    )
    rows = (await store.list("Partners", request)).rows
    pids = [str(r["Pid"]) for r in rows]
    return PartnerPage(pids[:size], number, size, len(pids) > size)


Parts = dict[str, list[dict[str, object]]]
"""Kind slug → the partner's entities of that kind."""


async def partner_parts(directory: Directory, pid: str) -> Parts:
    """Everything that belongs to a partner, binary values replaced by their size."""
    parts: Parts = {}
    for kind in SECTIONS:
        rows = (await directory.list(kind.entity_set, ListRequest(filter=pid_is(pid)))).rows
        if kind is BINARY:
            for row in rows:
                value = row.pop("Value")
                row["Size"] = len(value) if isinstance(value, bytes | bytearray) else 0
        parts[kind.slug] = rows
    return parts


async def load_partner(store: DirectoryStore, pid: str) -> Parts | None:
    """A partner's parts in one read transaction, or None if it has none (it does not exist)."""
    async with store.read() as directory:
        parts = await partner_parts(directory, pid)
    return parts if any(parts.values()) else None


async def partners_of_users(directory: Directory, users: list[str]) -> dict[str, str]:
    """Lower-cased user → the Pid it is an authorised user of, for the users that are one."""
    lowered = sorted({u.lower() for u in users})
    where = any_of(_USER, lowered)
    if where is None:
        return {}
    rows = (await directory.list("AuthorizedUsers", ListRequest(filter=where))).rows
    return {str(r["User"]): str(r["Pid"]) for r in rows}


async def mappings_of_users(
    directory: Directory, users: list[str], entity_set: str = "CertificateUserMappings"
) -> list[dict[str, object]]:
    """The certificate-to-user mappings (or rows of another set with a ``User``) of
    ``users``, compared as authorised users are."""
    where = any_of(_USER, [u.lower() for u in users], lower=True)
    if where is None:
        return []
    return (await directory.list(entity_set, ListRequest(filter=where))).rows

"""Search everywhere: one box that finds partners by anything they are made of.

Each kind of match is one bounded query through the store (``$filter`` expressions, the
``query_time_limit`` budget, at most :data:`PER_GROUP` rows and one more to tell that
there are more), so a search costs the same on a directory of ten partners or a million.
Certificate subjects and SHA-256 thumbprints are not columns: they are read from at most
:data:`MAX_CERTIFICATES` stored certificates, parsed off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.responses import Response

from ...model.errors import DirectoryError
from ...odata.filter import Expr, Or, OrderBy, PropertyRef, ValueType
from ...security.certificates import CertificateError, CertificateInfo, load_certificate
from ...store.directory import Directory, ListRequest
from .directory import contains
from .kinds import ALTERNATIVE, AUTHORIZED_USER, BINARY, CREDENTIAL, STRING, Kind
from .pages import Page, Urls, guarded

PER_GROUP = 20
MAX_QUERY = 200
MAX_CERTIFICATES = 2000
MAPPINGS = "CertificateUserMappings"


def _prop(name: str) -> PropertyRef:
    return PropertyRef(name, ValueType.STRING)


def any_contains(names: tuple[str, ...], text: str) -> Expr:
    terms = tuple(contains(_prop(n), text) for n in names)
    return terms[0] if len(terms) == 1 else Or(terms)


@dataclass
class Hit:
    label: str
    url: str
    detail: str = ""
    pid: str = ""


@dataclass
class Group:
    slug: str
    title: str
    hits: list[Hit] = field(default_factory=list)
    more: bool = False
    problem: str = ""


@dataclass(frozen=True)
class _Search:
    """One kind of match: which entity set, which properties contain the text."""

    slug: str
    title: str
    kind: Kind
    props: tuple[str, ...]
    detail: Callable[[dict[str, object]], str]


def _text(row: dict[str, object], name: str, limit: int = 120) -> str:
    value = str(row.get(name) or "")
    return value if len(value) <= limit else value[:limit] + "…"


SEARCHES: tuple[_Search, ...] = (
    _Search(
        "alternative-partners",
        "Alternative partners",
        ALTERNATIVE,
        ("Agency", "Scheme", "Id"),
        lambda r: "",
    ),
    _Search(
        "string-parameters",
        "String parameters (ID or value)",
        STRING,
        ("Id", "Value"),
        lambda r: _text(r, "Value"),
    ),
    _Search(
        "binary-parameters",
        "Binary parameters (ID or content type)",
        BINARY,
        ("Id", "ContentType"),
        lambda r: _text(r, "ContentType"),
    ),
    _Search(
        "credentials",
        "User credentials (ID or user)",
        CREDENTIAL,
        ("Id", "User"),
        lambda r: _text(r, "User"),
    ),
    _Search("authorized-users", "Authorized users", AUTHORIZED_USER, ("User",), lambda r: ""),
)


async def _group(
    directory: Directory, entity_set: str, where: Expr, orderby: tuple[OrderBy, ...]
) -> tuple[list[dict[str, object]], bool]:
    rows = (
        await directory.list(
            entity_set, ListRequest(filter=where, orderby=orderby, top=PER_GROUP + 1)
        )
    ).rows
    return rows[:PER_GROUP], len(rows) > PER_GROUP


async def search(directory: Directory, urls: Urls, text: str) -> list[Group]:
    """Every group of matches for ``text`` (case-insensitive for ASCII)."""
    groups: list[Group] = []
    partners = Group("partners", "Partners (ID)")
    try:
        rows, partners.more = await _group(
            directory, "Partners", contains(_prop("Pid"), text), (OrderBy(_prop("Pid")),)
        )
        partners.hits = [
            Hit(str(r["Pid"]), urls.partner(str(r["Pid"])), pid=str(r["Pid"])) for r in rows
        ]
    except DirectoryError as exc:
        partners.problem = exc.message
    groups.append(partners)
    for s in SEARCHES:
        group = Group(s.slug, s.title)
        try:
            rows, group.more = await _group(
                directory,
                s.kind.entity_set,
                any_contains(s.props, text),
                (OrderBy(_prop("Pid")),),
            )
        except DirectoryError as exc:
            group.problem = exc.message
        else:
            for row in rows:
                pid = str(row["Pid"])
                url = urls.partner(pid, s.kind.slug)
                if s.kind.change:
                    url = urls.entity(pid, s.kind, "edit", row)
                group.hits.append(Hit(s.kind.label_of(row), url, s.detail(row), pid))
        groups.append(group)
    groups.append(await _certificates(directory, urls, text))
    return groups


def _matching_certificates(
    rows: list[dict[str, object]], text: str
) -> list[tuple[dict[str, object], CertificateInfo | None]]:
    """The mappings whose user, subject, issuer, MD5 Id or SHA-256 thumbprint contain ``text``."""
    lowered = text.lower()
    squeezed = lowered.replace(":", "").replace(" ", "")
    found: list[tuple[dict[str, object], CertificateInfo | None]] = []
    for row in rows:
        try:
            info: CertificateInfo | None = CertificateInfo.from_certificate(
                load_certificate(str(row["Certificate"]))
            )
        except CertificateError:
            info = None
        haystack = [str(row.get("User") or "").lower(), str(row.get("Id") or "").lower()]
        if info is not None:
            haystack += [info.subject.lower(), info.issuer.lower()]
            thumb = info.sha256.lower().replace(":", "")
            if squeezed and squeezed in thumb:
                found.append((row, info))
                continue
        if any(lowered in h for h in haystack):
            found.append((row, info))
    return found


async def _certificates(directory: Directory, urls: Urls, text: str) -> Group:
    group = Group("certificates", "Certificates (subject, issuer, thumbprint or user)")
    try:
        rows = (
            await directory.list(
                MAPPINGS,
                ListRequest(orderby=(OrderBy(_prop("User")),), top=MAX_CERTIFICATES + 1),
            )
        ).rows
    except DirectoryError as exc:
        group.problem = exc.message
        return group
    if len(rows) > MAX_CERTIFICATES:
        rows = rows[:MAX_CERTIFICATES]
        group.problem = f"Only the first {MAX_CERTIFICATES} certificate mappings were searched."
    found = await asyncio.to_thread(_matching_certificates, rows, text)
    group.more = len(found) > PER_GROUP
    for row, info in found[:PER_GROUP]:
        label = info.subject if info is not None else str(row["Id"])
        group.hits.append(Hit(label, urls.certificate(row["Id"]), f"user {row['User']}"))
    return group


@guarded
async def index(page: Page) -> Response:
    text = page.query.get("q", "").strip()
    error = ""
    if len(text) > MAX_QUERY:
        error = f"Search for at most {MAX_QUERY} characters."
        text = text[:MAX_QUERY]
    groups: list[Group] = []
    if text and not error:
        async with page.services.store.read() as directory:
            groups = await search(directory, page.urls, text)
    return page.render(
        "search/results.html",
        400 if error else 200,
        section="search",
        q=text,
        error=error,
        groups=groups,
        total=sum(len(g.hits) for g in groups),
        per_group=PER_GROUP,
    )

"""Certificate-to-user mappings: which client certificate signs in as which user.

A sender presenting a mapped certificate acts as the mapped user, and through that user's
authorised-user entry as a partner; so each mapping is shown with the partner it leads to,
and expired or soon-expiring certificates are marked before they start refusing messages.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.serialization import Encoding
from starlette.datastructures import UploadFile
from starlette.responses import Response

from ...model.errors import Conflict, DirectoryError, InvalidValue, NotFound
from ...odata.filter import OrderBy, PropertyRef, ValueType
from ...security.certificates import (
    CertificateError,
    CertificateInfo,
    load_certificate,
    load_certificates,
)
from ...store.directory import Directory, ListRequest
from ..downloads import download_headers
from .directory import PAGE_SIZE, contains, partners_of_users
from .entities import relabel
from .kinds import Field
from .pages import Page, guarded

MAPPINGS = "CertificateUserMappings"
SOON = timedelta(days=30)
"""A certificate that expires within this time is marked as expiring soon."""

SORTS = {
    "user": ("User", ValueType.STRING),
    "valid": ("ValidUntil", ValueType.INT64),
    "changed": ("LastModifiedTime", ValueType.DATETIME),
}
USER_FIELD = Field(
    "User",
    "User",
    help="The user a sender presenting this certificate acts as.",
    max_length=150,
    picker="users",
)
CERTIFICATE_FIELD = Field("Certificate", "Certificate", widget="certificate")
PARTNER_FIELD = Field(
    "Pid",
    "Authorise this user for partner",
    help="Optional: makes the user an authorized user of this partner in the same change.",
    max_length=60,
    required=False,
    mono=True,
    picker="partners",
)


@dataclass(frozen=True)
class Mapping:
    """A stored mapping with what its certificate says and where its user leads."""

    row: dict[str, object]
    info: CertificateInfo | None
    problem: str
    partner: str | None
    state: str
    """``valid``, ``soon``, ``expired`` or ``unreadable``."""
    days_left: int

    @classmethod
    def of(cls, row: dict[str, object], partner: str | None, now: datetime) -> Mapping:
        try:
            info = CertificateInfo.from_certificate(load_certificate(str(row["Certificate"])))
        except CertificateError as exc:
            return cls(row, None, exc.message, partner, "unreadable", 0)
        left = info.not_after - now
        state = "expired" if left.total_seconds() < 0 else "soon" if left < SOON else "valid"
        return cls(row, info, "", partner, state, left.days)


def _sort(value: str | None) -> tuple[str, bool]:
    name = (value or "user").lstrip("-")
    return (name if name in SORTS else "user"), bool(value and value.startswith("-"))


@guarded
async def index(page: Page) -> Response:
    """Paged in SQL like the partners; one more query finds the partners of the page's users."""
    search = page.query.get("q", "").strip()[:150]
    sort, descending = _sort(page.query.get("sort"))
    number = page.number
    prop, kind = SORTS[sort]
    request = ListRequest(
        filter=contains(PropertyRef("User", ValueType.STRING), search) if search else None,
        orderby=(OrderBy(PropertyRef(prop, kind), descending),),
        top=PAGE_SIZE + 1,
        skip=(number - 1) * PAGE_SIZE,
    )
    async with page.services.store.read() as directory:
        rows = (await directory.list(MAPPINGS, request)).rows
        partners = await partners_of_users(directory, [str(r["User"]) for r in rows[:PAGE_SIZE]])
    now = datetime.now(UTC)
    mappings = [Mapping.of(r, partners.get(str(r["User"]).lower()), now) for r in rows[:PAGE_SIZE]]
    return page.render(
        "certificates/list.html",
        section="certificates",
        search=search,
        sort=sort,
        descending=descending,
        number=number,
        has_next=len(rows) > PAGE_SIZE,
        first=(number - 1) * PAGE_SIZE + 1,
        mappings=mappings,
    )


async def certificate_text(page: Page) -> str:
    """The certificate as the store takes it: uploaded bytes as base64 (DER or PEM alike).

    A chain file (``-chain.pem`` of ``partnergate pki``: the client's certificate, then its
    issuers) gives its first certificate, as a TLS client presents it first.
    """
    upload = page.form.get("File")
    if isinstance(upload, UploadFile) and upload.filename:
        return leaf_of(await upload.read())
    text = page.text("Text").strip()
    if not text:
        raise InvalidValue("Choose a certificate file or paste it as PEM", field="Certificate")
    return leaf_of(text.encode("ascii", "replace"))


def leaf_of(data: bytes) -> str:
    """``data`` as base64; of a chain whose certificates each issued the one before, the leaf."""
    try:
        chain = load_certificates(data)
    except CertificateError:
        return base64.b64encode(data).decode("ascii")  # the store says what is wrong
    issued = all(a.issuer == b.subject for a, b in zip(chain, chain[1:], strict=False))
    if len(chain) > 1 and issued:
        data = chain[0].public_bytes(Encoding.PEM)
    return base64.b64encode(data).decode("ascii")


@guarded
async def authorise(page: Page) -> Response:
    """Make the mapped user an authorised user of a partner, from the certificate's page."""
    mapping = await _mapping(page)
    user = str(mapping.row["User"])
    pid = page.text("Pid").strip()
    try:
        if not pid:
            raise InvalidValue("Enter the partner ID", field="Pid")
        await page.services.store.create("AuthorizedUsers", {"User": user, "Pid": pid}, page.user)
    except DirectoryError as exc:
        return await _show(page, mapping, exc.status, {"Pid": pid}, exc.message)
    return page.redirect(
        page.urls.certificate(mapping.row["Id"]),
        f"User '{user}' is now an authorized user of partner '{pid}'.",
    )


@guarded
async def new(page: Page) -> Response:
    values = {"User": page.query.get("user", "")}
    if page.request.method == "GET":
        return _form(page, values)
    values = {"User": page.text("User").strip(), "Text": page.text("Text")}
    values["Pid"] = page.text("Pid").strip()
    try:
        certificate = await certificate_text(page)
        async with page.services.store.begin(page.user) as directory:
            if values["Pid"]:
                await authorise_user(directory, values["User"], values["Pid"], page.user)
            created = await directory.create(
                MAPPINGS, {"User": values["User"], "Certificate": certificate}, page.user
            )
    except DirectoryError as exc:
        field = exc.field if exc.field in ("User", "Certificate", "Pid") else None
        message = relabel(exc.message, (USER_FIELD, CERTIFICATE_FIELD))
        errors = {field: message} if field else {}
        return _form(page, values, exc.status, errors, "" if field else message)
    replaced = created["CreatedTime"] != created["LastModifiedTime"]
    note = " (it was mapped before; the mapping now names this user)" if replaced else ""
    if values["Pid"]:
        note += f"; the user is an authorized user of partner '{values['Pid']}'"
    return page.redirect(
        page.urls.certificates(q=str(created["User"])),
        f"Certificate mapped to user '{created['User']}'{note}.",
    )


async def authorise_user(directory: Directory, user: str, pid: str, actor: str) -> None:
    """Make ``user`` an authorised user of ``pid``, unless it already is."""
    try:
        current = await directory.get("AuthorizedUsers", {"User": user})
    except NotFound:
        await directory.create("AuthorizedUsers", {"User": user, "Pid": pid}, actor)
        return
    if current["Pid"] != pid:
        raise Conflict(
            f"User '{user}' is already an authorized user of partner '{current['Pid']}'; "
            "move it there first",
            field="Pid",
        )


def _form(
    page: Page,
    values: dict[str, str],
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    error: str = "",
) -> Response:
    return page.render(
        "certificates/new.html",
        status_code,
        section="certificates",
        fields=(USER_FIELD, CERTIFICATE_FIELD, PARTNER_FIELD),
        values=values,
        errors=errors or {},
        error=error,
    )


async def _mapping(page: Page) -> Mapping:
    mapping_id = str(page.request.path_params["id"])
    async with page.services.store.read() as directory:
        row = await directory.get(MAPPINGS, {"Id": mapping_id})
        partners = await partners_of_users(directory, [str(row["User"])])
    return Mapping.of(row, partners.get(str(row["User"]).lower()), datetime.now(UTC))


@guarded
async def show(page: Page) -> Response:
    return await _show(page, await _mapping(page))


async def _show(
    page: Page,
    mapping: Mapping,
    status_code: int = 200,
    values: dict[str, str] | None = None,
    error: str = "",
) -> Response:
    pem = ""
    if mapping.info is not None:
        cert = load_certificate(str(mapping.row["Certificate"]))
        pem = cert.public_bytes(Encoding.PEM).decode("ascii")
    return page.render(
        "certificates/show.html",
        status_code,
        section="certificates",
        m=mapping,
        pem=pem,
        values=values or {},
        authorise_error=error,
    )


@guarded
async def delete(page: Page) -> Response:
    mapping = await _mapping(page)
    if page.request.method == "GET":
        return page.render("certificates/delete.html", section="certificates", m=mapping)
    await page.services.store.delete(MAPPINGS, {"Id": mapping.row["Id"]}, page.user)
    subject = mapping.info.subject if mapping.info else str(mapping.row["Id"])
    return page.redirect(
        page.urls.certificates(),
        f"Mapping of '{subject}' to user '{mapping.row['User']}' deleted.",
    )


@guarded
async def download(page: Page) -> Response:
    mapping = await _mapping(page)
    cert = load_certificate(str(mapping.row["Certificate"]))
    name = f"{mapping.row['User']}-{mapping.row['Id']}.pem"
    return Response(
        cert.public_bytes(Encoding.PEM),
        media_type="application/x-pem-file",
        headers=download_headers(name),
    )

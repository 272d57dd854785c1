"""Certificate mapping rules: certificates that sign in as a user without an exact mapping.

partnergate's own entity set, not SAP's. A certificate-to-user mapping names exactly one
certificate, so a renewed certificate is refused until it is mapped again; a rule names
what a renewal keeps (subject and issuer), or a certificate known only by issuer and
serial or by thumbprint, as a proxy log shows it. Each rule is shown with the partner
its user leads to, and its fields can be filled in from a mapped or uploaded certificate
rather than typed, since one wrong character in a DN lets nobody in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from starlette.responses import Response

from ...model.entities import CERTIFICATE_MAPPING_RULE
from ...model.errors import AlreadyExists, DirectoryError, NotFound
from ...model.rules import MAPPING_RULE_KINDS
from ...odata.filter import Or, OrderBy, PropertyRef, ValueType
from ...security.certificates import CertificateInfo, load_certificate
from ...store.directory import ListRequest
from .certificates import CERTIFICATE_FIELD, MAPPINGS, certificate_text
from .directory import PAGE_SIZE, contains, partners_of_users
from .kinds import Field
from .pages import Page, guarded

RULES = CERTIFICATE_MAPPING_RULE.entity_set
DEFAULT_KIND = "SubjectIssuer"
"""What a new rule matches on unless the person picks otherwise: what survives renewal."""

KIND_NAMES = {
    "SubjectIssuer": "Subject + issuer",
    "IssuerSerial": "Issuer + serial",
    "Thumbprint": "Thumbprint",
}
KIND_INTROS = {
    "SubjectIssuer": (
        "Every certificate with this subject DN from this issuer, so a renewed certificate "
        "keeps working. Use it only with a CA that gives each subject to one sender."
    ),
    "IssuerSerial": (
        "The one certificate with this serial number from this issuer, when you know it "
        "from a log or a proxy rather than as a file. A renewal needs a new rule."
    ),
    "Thumbprint": (
        "Exactly one certificate, by the SHA-256 of its DER encoding (what Envoy forwards "
        "as Hash). A renewal needs a new rule."
    ),
}
MATCHED = ("SubjectDN", "IssuerDN", "SerialNumber", "Thumbprint")
"""Every property a rule can match on; each kind uses some (``MAPPING_RULE_KINDS``)."""

PARAMS = {
    "id": "Id",
    "user": "User",
    "subject": "SubjectDN",
    "issuer": "IssuerDN",
    "serial": "SerialNumber",
    "thumbprint": "Thumbprint",
}
"""Query parameter → property: links that open the form filled in."""

SORTS = {
    "id": ("Id", ValueType.STRING),
    "kind": ("Kind", ValueType.STRING),
    "user": ("User", ValueType.STRING),
    "changed": ("LastModifiedTime", ValueType.DATETIME),
}
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9._~<>@-]+")


def _max(name: str) -> int | None:
    return CERTIFICATE_MAPPING_RULE.prop(name).max_length


ID_FIELD = Field(
    "Id",
    "Rule ID",
    help="Names the rule. Letters, digits and - . _ ~ < > @",
    max_length=_max("Id"),
    mono=True,
)
USER_FIELD = Field(
    "User",
    "User",
    help="A sender whose certificate matches acts as this user.",
    max_length=_max("User"),
    picker="users",
)
MATCH_FIELDS = {
    "SubjectDN": Field(
        "SubjectDN",
        "Subject DN",
        help="RFC 4514, most specific first: CN=Sender,O=Acme,C=DE (spaces after commas are fine).",
        max_length=_max("SubjectDN"),
        mono=True,
    ),
    "IssuerDN": Field(
        "IssuerDN",
        "Issuer DN",
        help="The subject DN of the CA that issues the certificate.",
        max_length=_max("IssuerDN"),
        mono=True,
    ),
    "SerialNumber": Field(
        "SerialNumber",
        "Serial number",
        help="Hexadecimal; colons, spaces and leading zeros are ignored.",
        max_length=_max("SerialNumber"),
        mono=True,
    ),
    "Thumbprint": Field(
        "Thumbprint",
        "SHA-256 thumbprint",
        help="64 hexadecimal digits: the SHA-256 of the certificate's DER encoding.",
        mono=True,
    ),
}

FormValues = dict[str, str]


@dataclass(frozen=True)
class Rule:
    """A stored rule and the partner its user is an authorised user of, if any."""

    row: dict[str, object]
    partner: str | None

    @property
    def kind(self) -> str:
        return str(self.row["Kind"])

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, self.kind)

    @property
    def matches(self) -> list[tuple[str, str]]:
        """(label, value) of each property the rule matches on."""
        used = MAPPING_RULE_KINDS.get(self.kind, ())
        return [(MATCH_FIELDS[name].label, str(self.row.get(name) or "")) for name in used]


@dataclass(frozen=True)
class Source:
    """The certificate a form was filled in from, and the user it is mapped to exactly."""

    info: CertificateInfo
    mapped_to: str | None


@dataclass
class Form:
    """What the rule form shows: its kind, its values, and why it was refused."""

    kind: str
    values: FormValues
    creating: bool
    errors: dict[str, str] = field(default_factory=dict)
    error: str = ""
    fill_errors: dict[str, str] = field(default_factory=dict)
    source: Source | None = None

    @property
    def used(self) -> tuple[str, ...]:
        return MAPPING_RULE_KINDS[self.kind]

    @property
    def blank(self) -> bool:
        """Nothing to match on yet: the form offers to start from a certificate."""
        return not any(self.values.get(name) for name in MATCHED)

    def carried(self) -> dict[str, str]:
        """The values as query parameters, for links that switch the kind."""
        names = {p: prop for p, prop in PARAMS.items() if self.creating or prop != "Id"}
        return {p: self.values[prop] for p, prop in names.items() if self.values.get(prop)}


def _kind(value: str | None) -> str:
    return value if value in MAPPING_RULE_KINDS else DEFAULT_KIND


def _sort(value: str | None) -> tuple[str, bool]:
    name = (value or "id").lstrip("-")
    return (name if name in SORTS else "id"), bool(value and value.startswith("-"))


@guarded
async def index(page: Page) -> Response:
    """Paged in SQL; one more query finds the partners of the page's users."""
    search = page.query.get("q", "").strip()[:150]
    sort, descending = _sort(page.query.get("sort"))
    number = page.number
    prop, kind = SORTS[sort]
    names = (PropertyRef("Id", ValueType.STRING), PropertyRef("User", ValueType.STRING))
    request = ListRequest(
        filter=Or(tuple(contains(name, search) for name in names)) if search else None,
        orderby=(OrderBy(PropertyRef(prop, kind), descending),),
        top=PAGE_SIZE + 1,
        skip=(number - 1) * PAGE_SIZE,
    )
    async with page.services.store.read() as directory:
        rows = (await directory.list(RULES, request)).rows
        partners = await partners_of_users(directory, [str(r["User"]) for r in rows[:PAGE_SIZE]])
    rules = [Rule(r, partners.get(str(r["User"]).lower())) for r in rows[:PAGE_SIZE]]
    return page.render(
        "rules/list.html",
        section="rules",
        search=search,
        sort=sort,
        descending=descending,
        number=number,
        has_next=len(rows) > PAGE_SIZE,
        first=(number - 1) * PAGE_SIZE + 1,
        rules=rules,
    )


def _suggested_id(user: str) -> str:
    """A rule ID from its user's name, in the characters an ID may hold."""
    return _NOT_IN_ID.sub("_", user).strip("_")[: _max("Id") or 60]


async def _from_certificate(page: Page, form: Form, cert_text: str) -> None:
    """Fill every matchable property from a certificate (the kind picks which are kept)."""
    info = CertificateInfo.from_certificate(load_certificate(cert_text))
    try:
        mapping = await page.services.store.get(MAPPINGS, {"Id": info.mapping_id})
        mapped_to: str | None = str(mapping["User"])
    except NotFound:
        mapped_to = None
    form.values.update(
        SubjectDN=info.subject,
        IssuerDN=info.issuer,
        SerialNumber=info.serial,
        Thumbprint=info.sha256,
    )
    if mapped_to and not form.values.get("User"):
        form.values["User"] = mapped_to
    if form.creating and not form.values.get("Id") and form.values.get("User"):
        form.values["Id"] = _suggested_id(form.values["User"])
    form.source = Source(info, mapped_to)


async def _opened(page: Page, values: FormValues, kind: str | None, creating: bool) -> Form:
    """The form a link opens: values from the query, or from a mapped certificate."""
    for param, prop in PARAMS.items():
        if page.query.get(param):
            values[prop] = page.query[param].strip()
    form = Form(_kind(page.query.get("kind") or kind), values, creating)
    mapping_id = page.query.get("mapping")
    if mapping_id:
        row = await page.services.store.get(MAPPINGS, {"Id": mapping_id})
        await _from_certificate(page, form, str(row["Certificate"]))
    return form


async def _filled(page: Page, form: Form) -> int:
    """Fill the form in from a posted certificate; the status of the page that shows it."""
    try:
        await _from_certificate(page, form, await certificate_text(page))
    except DirectoryError as exc:
        form.fill_errors = {"Certificate": exc.message}
        return exc.status
    return 200


def _posted(page: Page, creating: bool) -> Form:
    names = ("Id", "User", *MATCHED)
    values = {name: page.text(name).strip() for name in names if name in page.form}
    return Form(_kind(page.text("kind")), values, creating)


def _entity(form: Form) -> dict[str, object]:
    """The rule's properties; those its kind does not match on are cleared, not kept."""
    entity: dict[str, object] = {"Kind": form.kind, "User": form.values.get("User", "")}
    for name in MATCHED:
        value = form.values.get(name, "")
        entity[name] = value if name in form.used and value else None
    return entity


def _refused(form: Form, exc: DirectoryError) -> Form:
    """Put a rule's message next to its field, or above the form if no field shows it."""
    name = "Id" if form.creating and isinstance(exc, AlreadyExists) else exc.field
    shown = {"User", *form.used} | ({"Id"} if form.creating else set())
    if name in shown:
        form.errors = {str(name): exc.message}
    else:
        form.error = exc.message
    return form


async def _user_field(page: Page, user: str) -> Field:
    """The user input, telling which partner the user leads to as the form stands."""
    if not user:
        return USER_FIELD
    async with page.services.store.read() as directory:
        partner = (await partners_of_users(directory, [user])).get(user.lower())
    if partner is None:
        note = f"'{user}' is not an authorized user of any partner yet."
    else:
        note = f"'{user}' is an authorized user of partner '{partner}'."
    return replace(USER_FIELD, help=f"{USER_FIELD.help} {note}")


async def _render(
    page: Page, form: Form, rule: Rule | None = None, status_code: int = 200
) -> Response:
    user_field = await _user_field(page, form.values.get("User", ""))
    fields = (
        *((ID_FIELD,) if form.creating else ()),
        user_field,
        *(MATCH_FIELDS[name] for name in form.used),
    )
    return page.render(
        "rules/form.html",
        status_code,
        section="rules",
        form=form,
        rule=rule,
        fields=fields,
        hidden=[name for name in MATCHED if name not in form.used and form.values.get(name)],
        certificate_field=CERTIFICATE_FIELD,
        kinds=KIND_NAMES,
        intros=KIND_INTROS,
    )


@guarded
async def new(page: Page) -> Response:
    if page.request.method == "GET":
        return await _render(page, await _opened(page, {}, None, True))
    form = _posted(page, True)
    if page.text("step") == "fill":
        return await _render(page, form, status_code=await _filled(page, form))
    entity = {"Id": form.values.get("Id", ""), **_entity(form)}
    try:
        created = await page.services.store.create(RULES, entity, page.user)
    except DirectoryError as exc:
        return await _render(page, _refused(form, exc), status_code=exc.status)
    return page.redirect(
        page.urls.rules(q=str(created["Id"])),
        f"Rule '{created['Id']}' added: {KIND_NAMES[form.kind].lower()} → user "
        f"'{created['User']}'.",
    )


async def _rule(page: Page) -> Rule:
    async with page.services.store.read() as directory:
        row = await directory.get(RULES, {"Id": page.path_param("id")})
        partners = await partners_of_users(directory, [str(row["User"])])
    return Rule(row, partners.get(str(row["User"]).lower()))


@guarded
async def edit(page: Page) -> Response:
    """The rule's facts and its change form; the kind may change, the ID may not."""
    rule = await _rule(page)
    if page.request.method == "GET":
        stored = {name: str(rule.row.get(name) or "") for name in ("User", *MATCHED)}
        return await _render(page, await _opened(page, stored, rule.kind, False), rule)
    form = _posted(page, False)
    if page.text("step") == "fill":
        return await _render(page, form, rule, await _filled(page, form))
    rule_id = str(rule.row["Id"])
    try:
        await page.services.store.update(RULES, {"Id": rule_id}, _entity(form), page.user)
    except DirectoryError as exc:
        return await _render(page, _refused(form, exc), rule, exc.status)
    return page.redirect(page.urls.rules(q=rule_id), f"Rule '{rule_id}' saved.")


@guarded
async def delete(page: Page) -> Response:
    rule = await _rule(page)
    if page.request.method == "GET":
        return page.render("rules/delete.html", section="rules", r=rule)
    await page.services.store.delete(RULES, {"Id": rule.row["Id"]}, page.user)
    return page.redirect(
        page.urls.rules(),
        f"Rule '{rule.row['Id']}' deleted; certificates it matched no longer act as user "
        f"'{rule.row['User']}' unless a mapping or another rule names them.",
    )

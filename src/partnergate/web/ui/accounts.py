"""Local users and OAuth clients: who may sign in, call the API or send messages.

The pages do what ``partnergate users`` and ``partnergate clients`` do. A new password or
client secret is made here (never typed, never stored in clear) and shown once, on the
answer to the form that made it. An administrator cannot remove their own account nor
take the administrator role from it, so the UI never locks out the last person using it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from starlette.responses import JSONResponse, Response

from ...model.entities import CERTIFICATE_MAPPING_RULE
from ...model.errors import DirectoryError, InvalidValue, NotFound
from ...security.principals import (
    ESB_MESSAGING_SEND,
    PARTNER_DIRECTORY_CONFIGURATOR,
    oauth_client_user,
)
from ...store.accounts import Account, Clients, Users
from ...store.directory import DirectoryStore, ListRequest
from .directory import mappings_of_users
from .pages import Page, guarded

MAX_OTHER_ROLES = 20
PICKER_LIMIT = 500
"""Names a user picker offers at most."""

KNOWN_ROLES: tuple[tuple[str, str], ...] = (
    (PARTNER_DIRECTORY_CONFIGURATOR, "Partner Directory administrator (API and this UI)"),
    (ESB_MESSAGING_SEND, "Send messages to flows"),
    ("AuthGroup_IntegrationDeveloper", "Read the message log"),
    ("AuthGroup_BusinessExpert", "Read the message log"),
    ("AuthGroup_Administrator", "Read the message log"),
)


@dataclass(frozen=True)
class AccountKind:
    slug: str
    title: str
    secret_word: str

    def table(self, page: Page) -> Users | Clients:
        return page.services.users if self.slug == "users" else page.services.clients


USERS = AccountKind("users", "user", "password")
CLIENTS = AccountKind("clients", "OAuth client", "secret")
ACCOUNT_KINDS = {k.slug: k for k in (USERS, CLIENTS)}


def new_secret() -> str:
    return secrets.token_urlsafe(18)


def roles_of(page: Page) -> list[str]:
    """The roles a form grants: the ticked known ones and any others, space-separated."""
    chosen = [r for r, _ in KNOWN_ROLES if page.form.get(f"role-{r}") == "on"]
    others = page.text("other_roles").split()
    if len(others) > MAX_OTHER_ROLES or any(len(r) > 100 for r in others):
        raise InvalidValue(
            f"Give at most {MAX_OTHER_ROLES} other roles of at most 100 characters",
            field="other_roles",
        )
    return list(dict.fromkeys(chosen + others))


async def known_users(page: Page) -> list[str]:
    """Names a user field may offer: local users, OAuth clients' users, authorised users."""
    names = {a.name for a in await page.services.users.list()}
    names |= {oauth_client_user(a.name) for a in await page.services.clients.list()}
    rows = (await page.services.store.list("AuthorizedUsers", ListRequest(top=PICKER_LIMIT))).rows
    names |= {str(r["User"]) for r in rows}
    return sorted(names)[:PICKER_LIMIT]


async def can_send_as(page: Page, user: str) -> bool:
    """Whether anything lets a sender act as ``user``: a local user, an OAuth client, a
    certificate mapped to it or a mapping rule naming it (compared in lower case, as
    authorised users are)."""
    name = user.lower()
    if any(a.name.lower() == name for a in await page.services.users.list()):
        return True
    clients = {oauth_client_user(a.name).lower() for a in await page.services.clients.list()}
    if name in clients:
        return True
    async with page.services.store.read() as directory:
        if await mappings_of_users(directory, [name]):
            return True
        rules = CERTIFICATE_MAPPING_RULE.entity_set
        return bool(await mappings_of_users(directory, [name], rules))


async def unknown_sender_note(page: Page, user: str) -> str:
    """A warning for a flash when no sender can act as ``user`` yet (a typo, most often)."""
    if await can_send_as(page, user):
        return ""
    return (
        f" No user, OAuth client or certificate is called '{user}' yet, so no message comes"
        " from it: add one under Users or Certificates, or check the spelling."
    )


async def known_pids(store: DirectoryStore) -> list[str]:
    rows = (await store.list("Partners", ListRequest(top=PICKER_LIMIT))).rows
    return [str(r["Pid"]) for r in rows]


@guarded
async def pickers(page: Page) -> Response:
    """The names a picker offers, for ``static/pickers.js``."""
    what = str(page.request.path_params["what"])
    if what == "users":
        names = await known_users(page)
    elif what == "partners":
        names = await known_pids(page.services.store)
    else:
        raise NotFound(f"There is no picker of {what}")
    return JSONResponse(names, headers={"Cache-Control": "no-store"})


def _kind(page: Page) -> AccountKind:
    kind = ACCOUNT_KINDS.get(str(page.request.path_params["kind"]))
    if kind is None:
        raise NotFound(f"There are no accounts of kind '{page.request.path_params['kind']}'")
    return kind


async def _account(page: Page, kind: AccountKind) -> Account:
    name = page.path_param("name")
    account = await kind.table(page).get(name)
    if account is None:
        raise NotFound(f"There is no {kind.title} '{name}'")
    return account


async def _list_page(page: Page, status_code: int = 200, **extra: object) -> Response:
    """The accounts page as the store holds them now, with *extra* for a refused form."""
    users = await page.services.users.list()
    clients = await page.services.clients.list()
    context: dict[str, object] = {
        "errors": {},
        "error": "",
        "values": {},
        "new_kind": "",
        "created": None,
    }
    context.update(extra)
    return page.render(
        "accounts/list.html",
        status_code,
        section="accounts",
        users=users,
        clients=clients,
        known_roles=KNOWN_ROLES,
        kinds=ACCOUNT_KINDS,
        **context,
    )


@guarded
async def index(page: Page) -> Response:
    return await _list_page(page)


@guarded
async def new(page: Page) -> Response:
    kind = _kind(page)
    if page.request.method == "GET":
        return page.redirect(page.urls.base + "/accounts")
    name = page.text("name").strip()
    secret = new_secret()
    try:
        roles = roles_of(page)
        await kind.table(page).add(name, secret, roles, page.user)
    except DirectoryError as exc:
        return await _list_page(
            page,
            exc.status,
            errors={exc.field or "name": exc.message},
            values={"name": name, "other_roles": page.text("other_roles")},
            new_kind=kind.slug,
        )
    return page.render(
        "accounts/secret.html",
        section="accounts",
        kind=kind,
        name=name,
        secret=secret,
        roles=roles,
        created=True,
    )


@guarded
async def show(page: Page) -> Response:
    kind = _kind(page)
    account = await _account(page, kind)
    error = ""
    status = 200
    if page.request.method == "POST":
        action = page.text("action")
        table = kind.table(page)
        own = kind is USERS and account.name == page.user
        if action == "roles":
            try:
                roles = roles_of(page)
            except DirectoryError as exc:
                error, status = exc.message, exc.status
            else:
                if own and PARTNER_DIRECTORY_CONFIGURATOR not in roles:
                    error, status = (
                        "You cannot take the administrator role from your own account.",
                        409,
                    )
                else:
                    await table.set_roles(account.name, roles, page.user)
                    return page.redirect(
                        page.urls.base + "/accounts",
                        f"Roles of {kind.title} '{account.name}' saved: "
                        f"{' '.join(roles) or '(none)'}.",
                    )
        elif action == "reset":
            secret = new_secret()
            await table.set_secret(account.name, secret, page.user)
            return page.render(
                "accounts/secret.html",
                section="accounts",
                kind=kind,
                name=account.name,
                secret=secret,
                roles=account.roles,
                created=False,
            )
        elif action == "remove":
            if own:
                error, status = "You cannot remove your own account.", 409
            elif page.text("confirm") != account.name:
                error, status = f"Type the name '{account.name}' to remove it.", 400
            else:
                await table.remove(account.name, page.user)
                return page.redirect(
                    page.urls.base + "/accounts",
                    f"{kind.title.capitalize()} '{account.name}' removed.",
                )
        else:
            error, status = "Unknown action.", 400
    known = {r for r, _ in KNOWN_ROLES}
    return page.render(
        "accounts/show.html",
        status,
        section="accounts",
        kind=kind,
        account=account,
        known_roles=KNOWN_ROLES,
        other_roles=" ".join(r for r in account.roles if r not in known),
        error=error,
        own=kind is USERS and account.name == page.user,
        client_user=oauth_client_user(account.name) if kind is CLIENTS else "",
    )

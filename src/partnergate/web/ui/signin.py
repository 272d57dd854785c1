"""Signing in and out with a local user's name and password.

Signing in sets the same ``PG_SESSIONID`` cookie the API accepts. The sign-in form has a
CSRF token of its own, bound to a short-lived cookie, so that another site cannot sign a
browser in under the attacker's account.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from ...security.principals import PARTNER_DIRECTORY_CONFIGURATOR
from ..auth import SESSION_COOKIE, SESSION_LIFETIME
from .pages import Page, Urls, guarded, html, redirect

if TYPE_CHECKING:
    from ..app import Services

SIGNIN_COOKIE = "PG_SIGNIN"
SIGNIN_LIFETIME = 3600


def _next(request: Request, value: str | None) -> str:
    """Where to go after signing in: a page of the UI, never another site."""
    urls = Urls(request.scope.get("root_path", ""))
    if value and value.startswith(urls.home()) and not value.startswith("//"):
        return value
    return urls.partners()


def _form(
    request: Request, services: Services, status_code: int = 200, **context: object
) -> Response:
    urls = Urls(request.scope.get("root_path", ""))
    pending = request.cookies.get(SIGNIN_COOKIE) or services.auth.new_session()
    values = {"next": _next(request, request.query_params.get("next")), "name": "", "error": ""}
    values.update(context)
    response = html(
        request, "signin.html", status_code, csrf=services.auth.csrf_for(pending), **values
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        pending,
        max_age=SIGNIN_LIFETIME,
        path=urls.signin(),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


async def signin(request: Request) -> Response:
    services: Services = request.app.state.services
    if request.method == "GET":
        session = services.auth.read_session(request.cookies.get(SESSION_COOKIE))
        account = await services.users.get(session.user) if session else None
        if account is not None and PARTNER_DIRECTORY_CONFIGURATOR in account.roles:
            return redirect(request, _next(request, request.query_params.get("next")))
        return _form(request, services)

    form = await request.form(max_part_size=16 * 1024, max_files=0)
    name, password, token, target = (
        str(form.get(k) or "") for k in ("name", "password", "csrf", "next")
    )
    pending = request.cookies.get(SIGNIN_COOKIE)
    if not services.auth.csrf_ok(pending, token):
        return _form(
            request,
            services,
            403,
            name=name,
            next=_next(request, target),
            error="The sign-in form expired. Please sign in again.",
        )
    account, _ = await services.auth.check_password("user", name, password)
    if account is None:
        return _form(
            request,
            services,
            400,
            name=name,
            next=_next(request, target),
            error="The user name or the password is wrong.",
        )
    session_id = services.auth.new_session()
    response = redirect(request, _next(request, target))
    response.set_cookie(
        SESSION_COOKIE,
        services.auth.session_cookie(session_id, account.name),
        max_age=SESSION_LIFETIME,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(SIGNIN_COOKIE, path=Urls(request.scope.get("root_path", "")).signin())
    return response


@guarded(role=False)
async def signout(page: Page) -> Response:
    response = page.redirect(page.urls.signin(), "You are signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

"""Signing in and out with a local user's name and password.

Signing in opens a server-side session (:mod:`partnergate.security.sessions`) and sets
the ``PG_SESSIONID`` cookie the API accepts too; signing out ends the session on every
node. The sign-in form has a CSRF token of its own, bound to a short-lived cookie, so
that another site cannot sign a browser in under the attacker's account.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ...security.gate import Refused
from ...security.principals import PARTNER_DIRECTORY_CONFIGURATOR
from ...security.sessions import SESSION_COOKIE, new_session_id, well_formed
from ..auth import facts, over_https, set_session_cookie
from ..services import Services
from .pages import Page, Urls, guarded, html, redirect

SIGNIN_COOKIE = "PG_SIGNIN"
SIGNIN_LIFETIME = 3600


def _next(request: Request, value: str | None) -> str:
    """Where to go after signing in: a page of the UI, never another site."""
    urls = Urls(request.scope.get("root_path", ""))
    if value and value.startswith(urls.home()) and not value.startswith("//"):
        return value
    return urls.partners()


def _pending(request: Request) -> str | None:
    """The sign-in form's own id, from its cookie, if it is one we could have made."""
    value = request.cookies.get(SIGNIN_COOKIE)
    return value if value and well_formed(value) else None


def _form(
    request: Request, services: Services, status_code: int = 200, **context: object
) -> Response:
    urls = Urls(request.scope.get("root_path", ""))
    pending = _pending(request) or new_session_id()
    values = {"next": _next(request, request.query_params.get("next")), "name": "", "error": ""}
    values.update(context)
    response = html(
        request, "signin.html", status_code, csrf=services.gate.csrf_for(pending), **values
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        pending,
        max_age=SIGNIN_LIFETIME,
        path=urls.signin(),
        httponly=True,
        samesite="lax",
        secure=over_https(request),
    )
    return response


async def signin(request: Request) -> Response:
    services: Services = request.app.state.services
    if request.method == "GET":
        signed_in = await services.gate.ui(facts(request), PARTNER_DIRECTORY_CONFIGURATOR)
        if not isinstance(signed_in, Refused):
            return redirect(request, _next(request, request.query_params.get("next")))
        return _form(request, services)

    form = await request.form(max_part_size=16 * 1024, max_files=0)
    name, password, token, target = (
        str(form.get(k) or "") for k in ("name", "password", "csrf", "next")
    )
    if not services.gate.form_csrf_ok("sign_in", _pending(request), token):
        return _form(
            request,
            services,
            403,
            name=name,
            next=_next(request, target),
            error="The sign-in form expired. Please sign in again.",
        )
    decision = await services.gate.sign_in(facts(request), name, password)
    if isinstance(decision, Refused):
        if decision.status == 429:
            error = "Too many failed sign-ins. Please wait a few minutes and try again."
            refused = _form(
                request, services, 429, name=name, next=_next(request, target), error=error
            )
            refused.headers["Retry-After"] = str(decision.retry_after or 60)
            return refused
        return _form(
            request,
            services,
            400,
            name=name,
            next=_next(request, target),
            error="The user name or the password is wrong.",
        )
    assert decision.session_id is not None
    response = redirect(request, _next(request, target))
    set_session_cookie(response, request, decision.session_id, services.settings.session_lifetime)
    response.delete_cookie(SIGNIN_COOKIE, path=Urls(request.scope.get("root_path", "")).signin())
    return response


@guarded(role=False)
async def signout(page: Page) -> Response:
    await page.services.gate.sign_out(page.session_id)
    response = page.redirect(page.urls.signin(), "You are signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

"""What every page of the UI shares: who is signed in, CSRF, rendering and redirects.

:func:`guarded` wraps each endpoint so that no page is served to someone who is not
signed in or lacks the Partner Directory role, and no form is accepted without the
session's CSRF token. Responses carry a strict Content-Security-Policy: the pages load
nothing but their own ``/ui/static`` files.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ...model.errors import DirectoryError, NotFound
from ...security.gate import Refused
from ...security.principals import PARTNER_DIRECTORY_CONFIGURATOR
from ..auth import facts, over_https
from ..services import Services
from .kinds import CONTENT_TYPE_NAMES, Kind

WEB = Path(__file__).resolve().parent.parent
TEMPLATES = WEB / "templates"
STATIC = WEB / "static"
FLASH_COOKIE = "PG_FLASH"
FORM_OVERHEAD = 64 * 1024
"""Bytes a form may carry beyond its largest value (other fields, multipart headers)."""

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@functools.cache
def _version(name: str) -> str:
    """A digest of a static file for its URL, so a changed file is never served stale."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]


def segment(pid: str) -> str:
    """A Pid (or a mapping rule's Id, of the same characters) as a path segment.

    A Pid may consist of dots only, and browsers resolve ``.`` and ``..`` segments even
    when percent-encoded; such a Pid gets a ``!`` in front, a character no Pid contains.
    """
    if pid and not pid.strip("."):
        return "!" + pid
    return quote(pid, safe="")


def unsegment(value: str) -> str:
    if value.startswith("!") and len(value) > 1 and not value[1:].strip("."):
        return value[1:]
    return value


def _with_query(path: str, query: dict[str, object]) -> str:
    """``path`` with the query parameters that are set (empty ones and page 1 left out)."""
    shown = {k: v for k, v in query.items() if v not in (None, "", 1)}
    return path + ("?" + urlencode(shown) if shown else "")


@dataclass(frozen=True)
class Urls:
    """Links within the UI, relative to where it is mounted."""

    base: str

    def home(self) -> str:
        return self.base + "/"

    def static(self, name: str) -> str:
        return f"{self.base}/static/{name}?v={_version(name)}"

    def signin(self, next_url: str | None = None) -> str:
        return _with_query(f"{self.base}/signin", {"next": next_url})

    def signout(self) -> str:
        return f"{self.base}/signout"

    def partners(self, **query: object) -> str:
        return _with_query(f"{self.base}/partners", query)

    def new_partner(self, kind: str | None = None, pid: str | None = None) -> str:
        return _with_query(f"{self.base}/new-partner", {"kind": kind, "pid": pid})

    def partner(self, pid: str, section: str | None = None) -> str:
        return f"{self.base}/partners/{segment(pid)}" + (f"#{section}" if section else "")

    def added(self, pid: str, kind: Kind, row: dict[str, object]) -> str:
        """The partner's page at ``kind``'s section, with ``row`` marked as just added."""
        return f"{self.partner(pid)}?added={kind.slug}&{kind.query_of(row)}#{kind.slug}"

    def delete_partner(self, pid: str) -> str:
        return f"{self.partner(pid)}/delete"

    def entity(
        self, pid: str, kind: Kind, action: str, row: dict[str, object] | None = None
    ) -> str:
        """``new``, ``edit``, ``delete`` or ``download`` of one entity of a partner."""
        url = f"{self.partner(pid)}/{kind.slug}/{action}"
        return url + "?" + kind.query_of(row) if row is not None else url

    def certificates(self, **query: object) -> str:
        return _with_query(f"{self.base}/certificates", query)

    def certificate(self, mapping_id: object, action: str = "") -> str:
        return f"{self.base}/certificates/{mapping_id}" + (f"/{action}" if action else "")

    def new_certificate(self, user: str | None = None) -> str:
        return _with_query(f"{self.base}/new-certificate", {"user": user})

    def rules(self, **query: object) -> str:
        return _with_query(f"{self.base}/rules", query)

    def rule(self, rule_id: str, action: str = "", **query: object) -> str:
        """A mapping rule's page (its change form), or ``delete``; a key is any Id."""
        path = f"{self.base}/rules/{segment(rule_id)}" + (f"/{action}" if action else "")
        return _with_query(path, query)

    def new_rule(self, **query: object) -> str:
        return _with_query(f"{self.base}/new-rule", query)

    def monitor(self, **query: object) -> str:
        return _with_query(f"{self.base}/monitor", query)

    def message(self, guid: object) -> str:
        return f"{self.base}/monitor/{quote(str(guid), safe='')}"

    def attachment(self, guid: object, attachment_id: object) -> str:
        return f"{self.message(guid)}/attachments/{quote(str(attachment_id), safe='')}"

    def flows(self, name: str | None = None) -> str:
        return f"{self.base}/flows" + (f"#flow-{quote(name, safe='')}" if name else "")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.2f} MB"


def _when(t: datetime | None) -> str:
    return "" if t is None else t.strftime("%Y-%m-%d %H:%M")


def _iso(t: datetime | None) -> str:
    return "" if t is None else t.isoformat(timespec="seconds") + "Z"


templates = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=["jinja2.ext.do"],
)
templates.filters.update(size=_size, when=_when, iso=_iso)
templates.globals.update(ROLE=PARTNER_DIRECTORY_CONFIGURATOR, CONTENT_TYPE_NAMES=CONTENT_TYPE_NAMES)


def secure(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def html(request: Request, template: str, status_code: int = 200, **context: object) -> Response:
    """Render a page for anyone (sign-in, errors); signed-in pages use :meth:`Page.render`."""
    urls = Urls(request.scope.get("root_path", ""))
    flash = request.cookies.get(FLASH_COOKIE)
    values = {"urls": urls, "user": None, "csrf": "", "section": "", "flash": None}
    if flash:
        kind, _, text = unquote(flash).partition("|")
        values["flash"] = {"kind": kind, "text": text}
    values.update(context)
    response = HTMLResponse(templates.get_template(template).render(values), status_code)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=urls.home())
    return secure(response)


def redirect(request: Request, url: str, flash: str | None = None, kind: str = "ok") -> Response:
    """303 See Other (after a POST, the browser GETs the target), with an optional message."""
    response = RedirectResponse(url, status_code=303)
    if flash:
        base = Urls(request.scope.get("root_path", "")).home()
        value = quote(f"{kind}|{flash[:400]}", safe="")
        response.set_cookie(
            FLASH_COOKIE,
            value,
            path=base,
            httponly=True,
            samesite="lax",
            secure=over_https(request),
        )
    return secure(response)


@dataclass
class Page:
    """A request from a signed-in user, and how to answer it."""

    request: Request
    services: Services
    user: str
    session_id: str
    form: FormData = field(default_factory=FormData)

    @property
    def urls(self) -> Urls:
        return Urls(self.request.scope.get("root_path", ""))

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)

    @property
    def number(self) -> int:
        """The page of a paged list that the ``page`` query parameter asks for, from 1."""
        value = self.request.query_params.get("page", "")
        return int(value) if value.isdigit() and 0 < len(value) < 8 and int(value) else 1

    def path_param(self, name: str) -> str:
        return unsegment(str(self.request.path_params[name]))

    def text(self, name: str) -> str:
        value = self.form.get(name)
        return value if isinstance(value, str) else ""

    def render(self, template: str, status_code: int = 200, **context: object) -> Response:
        csrf = self.services.gate.csrf_for(self.session_id)
        return html(self.request, template, status_code, user=self.user, csrf=csrf, **context)

    def redirect(self, url: str, flash: str | None = None, kind: str = "ok") -> Response:
        return redirect(self.request, url, flash, kind)

    def not_found(self, message: str) -> Response:
        return self.render("error.html", 404, title="Not found", message=message)


_TITLES = {
    400: "Not accepted",
    403: "Not allowed",
    405: "Not possible",
    409: "Conflict",
    413: "Too large",
    503: "Busy, try again",
}
"""Headings of the error page by the status of a refusal the page did not expect."""

Handler = Callable[[Page], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(handler: Handler | None = None, *, role: bool = True) -> Callable[..., Endpoint]:
    """Serve ``handler`` only to a signed-in user (with the role, unless ``role=False``).

    A GET without a session goes to the sign-in page and comes back afterwards. A POST
    must carry the CSRF token of the session that renders the form: a missing or wrong
    token is a 403 and nothing is changed.
    """

    def wrap(handler: Handler) -> Endpoint:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            services: Services = request.app.state.services
            urls = Urls(request.scope.get("root_path", ""))
            needed = PARTNER_DIRECTORY_CONFIGURATOR if role else None
            decision = await services.gate.ui(facts(request), needed)
            if isinstance(decision, Refused):
                if decision.status != 403 or decision.principal is None or not decision.session_id:
                    return _to_signin(request, urls)
                page = Page(request, services, decision.principal.name, decision.session_id)
                roles = tuple(sorted(decision.principal.roles))
                return page.render("forbidden.html", 403, roles=roles)
            assert decision.session_id is not None
            page = Page(request, services, decision.principal.name, decision.session_id)
            try:
                if request.method == "POST" and (refused := await _read_form(page)) is not None:
                    return refused
                return await handler(page)
            except NotFound as exc:
                return page.not_found(exc.message)
            except DirectoryError as exc:  # e.g. a list past query_time_limit (503)
                return page.render(
                    "error.html",
                    exc.status,
                    title=_TITLES.get(exc.status, "Refused"),
                    message=exc.message,
                )
            finally:
                await page.form.close()

        return endpoint

    return wrap(handler) if handler is not None else wrap


def _to_signin(request: Request, urls: Urls) -> Response:
    """A page asks to sign in and come back; a form cannot be replayed, so it says so."""
    if request.method == "GET":
        query = request.url.query
        return redirect(request, urls.signin(request.url.path + (f"?{query}" if query else "")))
    return redirect(request, urls.signin(), "Please sign in again.", "error")


async def _read_form(page: Page) -> Response | None:
    """Parse the posted form into ``page.form``; a response if it must be refused."""
    request, settings = page.request, page.services.settings
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        return page.render(
            "error.html", 411, title="Length required", message="Send forms with a length."
        )
    if int(declared) > limit + FORM_OVERHEAD:
        return page.render(
            "error.html", 413, title="Too large", message=f"A form may send at most {_size(limit)}."
        )
    page.form = await request.form(max_part_size=limit)
    token = page.form.get("csrf")
    given = token if isinstance(token, str) else None
    if not page.services.gate.form_csrf_ok("ui", page.session_id, given):
        return page.render(
            "error.html",
            403,
            title="Form expired",
            message=(
                "This form did not come with a valid security token, so nothing was changed. "
                "Go back, reload the page and send it again."
            ),
        )
    return None

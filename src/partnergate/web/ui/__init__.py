"""The admin web UI at ``/ui``: server-rendered pages over the Partner Directory store.

Mounted by :func:`partnergate.web.app.create_app`; :func:`ui_routes` lists its pages.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from . import (
    accounts,
    certificates,
    documents,
    entities,
    flows,
    grid,
    history,
    monitor,
    partners,
    rules,
    search,
    signin,
    transfer,
    usage,
)
from .pages import STATIC, Urls, redirect


async def home(request: Request) -> Response:
    """``/ui/`` leads to the partner list (or to sign-in first)."""
    return redirect(request, Urls(request.scope.get("root_path", "")).partners())


async def root(request: Request) -> Response:
    """``/`` of the whole service leads to the UI."""
    return RedirectResponse(request.scope.get("root_path", "") + "/ui/", status_code=307)


def ui_routes() -> list[BaseRoute]:
    both = ["GET", "POST"]
    entity = "/partners/{pid}/{kind}"
    return [
        Route("/", home),
        Route("/signin", signin.signin, methods=both),
        Route("/signout", signin.signout, methods=["POST"]),
        Route("/partners", partners.index),
        Route("/new-partner", partners.new, methods=both),
        Route("/partners/{pid}", partners.show),
        Route("/partners/{pid}/delete", partners.delete, methods=both),
        Route("/partners/{pid}/binary-parameters/download", entities.download),
        Route(entity + "/new", entities.new, methods=both),
        Route(entity + "/edit", entities.edit, methods=both),
        Route(entity + "/delete", entities.delete, methods=both),
        Route(entity + "/copy", history.copy_one, methods=both),
        Route("/partners/{pid}/history", history.index),
        Route("/partners/{pid}/history/{id}/restore", history.restore, methods=both),
        Route("/partners/{pid}/history/changes/{change}/undo", history.undo_change, methods=both),
        Route("/partners/{pid}/rename", history.rename, methods=both),
        Route("/partners/{pid}/copy", history.copy, methods=both),
        Route("/certificates", certificates.index),
        Route("/new-certificate", certificates.new, methods=both),
        Route("/certificates/{id}", certificates.show),
        Route("/certificates/{id}/delete", certificates.delete, methods=both),
        Route("/certificates/{id}/download", certificates.download),
        Route("/certificates/{id}/authorise", certificates.authorise, methods=["POST"]),
        Route("/rules", rules.index),
        Route("/new-rule", rules.new, methods=both),
        Route("/rules/{id}", rules.edit, methods=both),
        Route("/rules/{id}/delete", rules.delete, methods=both),
        Route("/monitor", monitor.index),
        Route("/monitor/log-level", monitor.log_level, methods=["POST"]),
        Route("/monitor/{guid}", monitor.show),
        Route("/monitor/{guid}/attachments/{attachment_id}", monitor.attachment),
        Route("/flows", flows.index),
        Route("/export", transfer.export),
        Route("/import", transfer.import_page, methods=both),
        Route("/search", search.index),
        Route("/grid", grid.index),
        Route("/grid/bulk", grid.bulk, methods=["POST"]),
        Route("/usage", usage.index),
        Route("/new-document", documents.new, methods=both),
        Route("/documents/{pid}/{id}", documents.show, methods=both),
        Route("/accounts", accounts.index),
        Route("/new-account/{kind}", accounts.new, methods=both),
        Route("/accounts/{kind}/{name:path}", accounts.show, methods=both),
        Route("/pickers/{what}", accounts.pickers),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


__all__ = ["home", "root", "ui_routes"]

"""The flows deployed from the flows folder: endpoints, roles, and files that were refused."""

from __future__ import annotations

from starlette.responses import Response

from .pages import Page, guarded


@guarded
async def index(page: Page) -> Response:
    """What this node serves now; every node loads the same folder."""
    deployment = page.services.runtime.deployment
    flows = sorted(deployment.flows, key=lambda f: f.endpoint)
    return page.render(
        "flows/list.html",
        section="flows",
        folder=str(deployment.folder) if deployment.folder else "",
        flows=flows,
        errors=deployment.flows.errors,
        base=str(page.request.base_url).rstrip("/"),
    )

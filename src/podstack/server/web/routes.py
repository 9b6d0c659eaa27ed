"""Mounts the web UI on the app: static files, every page module's router, and an HTML 404.

``server/app.py`` calls ``mount(app)`` after the API routers, so ``/api/v1`` always wins.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.routing import Match, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from podstack.errors import NotFound
from podstack.server.web.core import (
    STATIC_DIR,
    ViewerPage,
    WebRoute,
    error_page,
    signed_in_principal,
)

# Page modules, each exposing ``router``. Registry pages depend on the registry service.
PAGE_MODULES = (
    "auth_pages",
    "admin_users",
    "experiments",
    "run_compare",  # before "runs": /runs/compare must not be taken for /runs/{run_id}
    "runs",
    "registry",
    "versions",
    "permissions",
    "compare",
    "approvals",
    "schedules",
    "deployments",
)
# Paths that belong to the API and operations: never answered with an HTML page.
_NOT_UI = ("/api/", "/static/", "/healthz", "/readyz", "/metrics")

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/")
def home(ctx: ViewerPage) -> Response:
    return RedirectResponse("/models", status_code=303)


_PLACEHOLDERS = {
    "approvals": (
        "Approvals",
        "Review requests for stage transitions (for example Staging → Production) will be "
        "listed here, with approve and reject actions and reviewer comments.",
    ),
    "schedules": (
        "Schedules",
        "Cron-scheduled training jobs, their execution history, and pause, resume, edit and "
        "delete controls will live here.",
    ),
    "deployments": (
        "Deployments",
        "Serving endpoints for model versions, their status and scaling settings will be "
        "listed here. Deploying from a model version will appear on its page.",
    ),
}


def _placeholder(section: str):  # type: ignore[no-untyped-def]
    title, text = _PLACEHOLDERS[section]

    def page(ctx: ViewerPage) -> Response:
        return ctx.render("placeholder.html", section=section, title=title, text=text)

    page.__name__ = f"{section}_placeholder"
    return page


class _UIPathRoute(Route):
    """Catch-all for unknown UI paths (HTML 404) that never claims API or static paths."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if scope.get("type") != "http" or path.startswith(_NOT_UI):
            return Match.NONE, {}
        return super().matches(scope)


async def _not_found(request: Request) -> Response:
    # No route ran, so nobody looked at the session yet: do it, or a signed-in user would see
    # a signed-out page (no user menu, a "Sign in" button).
    principal = await signed_in_principal(request)
    return error_page(request, NotFound("There is no page at this address."), principal)


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    taken: set[str | None] = set()
    for name in PAGE_MODULES:
        try:
            module = importlib.import_module(f"podstack.server.web.{name}")
        except ModuleNotFoundError as exc:
            # A page module whose capability has not landed yet is simply not mounted.
            if exc.name != f"podstack.server.web.{name}":
                raise
            continue
        app.include_router(module.router)
        taken.update(getattr(r, "path", None) for r in module.router.routes)
    # Placeholders only for sections whose real pages are not mounted. Paths come from the
    # modules' own routers: FastAPI wraps included routers, so app.routes has no .path.
    placeholders = APIRouter(route_class=WebRoute, include_in_schema=False)
    for section in _PLACEHOLDERS:
        if f"/{section}" not in taken:
            placeholders.add_api_route(f"/{section}", _placeholder(section), methods=["GET"])
    app.include_router(placeholders)
    app.router.routes.append(_UIPathRoute("/{path:path}", _not_found, methods=["GET"]))

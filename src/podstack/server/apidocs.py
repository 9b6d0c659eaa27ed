"""Interactive API docs at /api/v1/docs, served from vendored Swagger UI (no CDN: the server
is self-hosted and often offline, and the CSP allows only same-origin scripts)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "apidocs_static"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Podstack MLOps API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{prefix}/docs/static/swagger-ui.css">
</head><body>
<div id="swagger-ui" data-spec-url="{prefix}/openapi.json"></div>
<script src="{prefix}/docs/static/swagger-ui-bundle.js"></script>
<script src="{prefix}/docs/static/swagger-init.js"></script>
</body></html>"""


def install(app: FastAPI, prefix: str) -> None:
    router = APIRouter(include_in_schema=False)

    @router.get(f"{prefix}/docs", response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        return HTMLResponse(_PAGE.format(prefix=prefix))

    app.include_router(router)
    app.mount(f"{prefix}/docs/static", StaticFiles(directory=STATIC), name="apidocs-static")

    def openapi() -> dict:  # type: ignore[type-arg]
        # Adds the bearer scheme so "Authorize" in the docs sends the API token.
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token (pst_…) from `podstack tokens create` "
                "or the UI's API tokens page.",
            }
        }
        schema["security"] = [{"bearerAuth": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

"""Liveness, readiness and Prometheus endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from podstack.server.db import migrate
from podstack.server.errors import error_response

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
def readyz(request: Request) -> Response:
    db = request.app.state.db
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        at_head = migrate.is_at_head(db.engine)
    except Exception as exc:  # any failure means "not ready", with the reason
        return error_response(
            503, "SERVICE_UNAVAILABLE", "Database unreachable.", {"reason": type(exc).__name__}
        )
    if not at_head:
        return error_response(
            503,
            "SERVICE_UNAVAILABLE",
            "Database schema is not at the latest migration; run `podstack db upgrade`.",
            {
                "current": sorted(migrate.current_revisions(db.engine)),
                "head": sorted(migrate.head_revisions()),
            },
        )
    return Response('{"status":"ready"}', media_type="application/json")


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST
    )

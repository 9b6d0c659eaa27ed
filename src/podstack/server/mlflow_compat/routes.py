"""Mounts the MLflow-compatible API: ``mount(app)`` (called by ``server/app.py``).

- ``/api/2.0/mlflow/...``: tracking (``experiments.py``, ``tracking.py``,
  ``logged_models.py``) and the model registry (``registry.py``);
- ``/api/2.0/mlflow-artifacts/...``: proxied artifacts (``artifacts.py``);
- ``/api/3.0/mlflow/server-info``: the capability probe of MLflow 3 clients.

Every router uses ``errors.MlflowRoute`` (MLflow's error JSON). Under each prefix a last
catch-all answers MLflow's ``ENDPOINT_NOT_FOUND`` (404), which the client understands (it falls
back or reports "not supported"), instead of Podstack's 404 JSON.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from podstack.server.deps import ViewerCtx
from podstack.server.mlflow_compat import (
    artifacts,
    experiments,
    logged_models,
    registry,
    tracking,
)
from podstack.server.mlflow_compat.errors import MlflowError, MlflowRoute

# MLflow's own server also answers every endpoint under /ajax-api/2.0/mlflow, for its web UI;
# no MLflow client library calls those, and they would be a second, cookie-driven door to the
# same data: not served.
TRACKING_PREFIXES = ("/api/2.0/mlflow",)
V3_PREFIX = "/api/3.0/mlflow"
ARTIFACTS_PREFIX = "/api/2.0/mlflow-artifacts"
# Where artifact bodies are PUT (app.py lets them be as large as run artifact uploads).
ARTIFACT_UPLOADS = ARTIFACTS_PREFIX + "/artifacts/"
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _fallback() -> APIRouter:
    router = APIRouter(route_class=MlflowRoute)

    @router.api_route("/{path:path}", methods=_ALL_METHODS, include_in_schema=False)
    def endpoint_not_found(path: str) -> None:
        raise MlflowError(
            "ENDPOINT_NOT_FOUND",
            f"Podstack does not serve this MLflow endpoint ({path!r}); see the README section "
            "'Using MLflow clients' for what is supported.",
        )

    return router


def _v3() -> APIRouter:
    router = APIRouter(route_class=MlflowRoute)

    @router.get("/server-info")
    def server_info(ctx: ViewerCtx) -> dict[str, Any]:
        """What the client asks before choosing how to move artifacts: single PUT/GET
        through the proxy (no multipart, no presigned URLs), no workspaces, no gateway."""
        return {
            "store_type": None,
            "workspaces_enabled": False,
            "trace_archival_enabled": False,
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
            "presigned_upload_run_id_supported": False,
            "presigned_upload_model_id_supported": False,
            "features_enabled": {"gateway": False},
        }

    return router


def mount(app: FastAPI) -> None:
    fallback = _fallback()
    for prefix in TRACKING_PREFIXES:
        app.include_router(experiments.router, prefix=prefix, include_in_schema=False)
        app.include_router(tracking.router, prefix=prefix, include_in_schema=False)
        app.include_router(logged_models.router, prefix=prefix, include_in_schema=False)
        app.include_router(registry.router, prefix=prefix, include_in_schema=False)
        app.include_router(fallback, prefix=prefix, include_in_schema=False)
    # MLflow 3's version-3 paths: only the capability probe is served.
    app.include_router(_v3(), prefix=V3_PREFIX, include_in_schema=False)
    app.include_router(fallback, prefix=V3_PREFIX, include_in_schema=False)
    app.include_router(artifacts.router, prefix=ARTIFACTS_PREFIX, include_in_schema=False)
    app.include_router(fallback, prefix=ARTIFACTS_PREFIX, include_in_schema=False)

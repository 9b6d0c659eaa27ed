"""Who may call what: every route of the app (REST and UI) against every kind of caller.

Callers: anonymous, viewer, editor, a designated reviewer (a viewer the model's approval
policy names), admin. ``TABLE`` gives each route's rule; a route missing from it fails
``test_table_covers_every_route`` — a new endpoint cannot ship without someone deciding who may
call it. Deny means 401 for anonymous and 403 for everyone else on the API; on the UI,
anonymous is sent to the login page and others get a 403 page.

Every denied call is made first, on an untouched world, and must change nothing (the audit log
does not grow); then the allowed calls, which must not be refused with 401/403.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from podstack import MLOpsClient
from podstack.server.audit.models import AuditEvent
from podstack.server.config import Settings
from podstack.server.db.models_registry import metadata
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.reliability.conftest import record
from tests.reliability.servers import ServerSpec
from tests.reliability.world import PASSWORD, World, build, path_for

CALLERS = ("anonymous", "viewer", "editor", "reviewer", "admin")
RULES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer", "editor", "reviewer", "admin"}),
    "editor": frozenset({"editor", "admin"}),
    "admin": frozenset({"admin"}),
    # Deciding an approval request: its designated reviewers only (not even admins).
    "reviewer": frozenset({"reviewer"}),
    # Things of the editor's own (its approval request, its token): the editor or an admin.
    "owner": frozenset({"editor", "admin"}),
    # A notification: only the user it was sent to (others get 403 or 404).
    "recipient": frozenset({"reviewer"}),
    # Health, metrics, docs, sign-in/out, the HTML 404: answered to anyone, nothing to refuse.
    "anyone": frozenset(CALLERS),
}
OBSERVE = os.environ.get("PODSTACK_ACL_OBSERVE") == "1"

TABLE: dict[str, str] = {
    # REST API and operations endpoints
    "GET /api/v1/approval-policies": "viewer",
    "GET /api/v1/approval-policy": "viewer",
    "PUT /api/v1/approval-policy": "admin",
    "GET /api/v1/approval-requests": "viewer",
    "POST /api/v1/approval-requests": "editor",
    "GET /api/v1/approval-requests/{request_id}": "viewer",
    "POST /api/v1/approval-requests/{request_id}/approve": "reviewer",
    "POST /api/v1/approval-requests/{request_id}/cancel": "owner",
    "POST /api/v1/approval-requests/{request_id}/comments": "viewer",
    "POST /api/v1/approval-requests/{request_id}/reject": "reviewer",
    "GET /api/v1/audit": "admin",
    "GET /api/v1/cron/describe": "viewer",
    "GET /api/v1/deployment-targets": "viewer",
    "DELETE /api/v1/deployment-targets/{name}": "admin",
    "PUT /api/v1/deployment-targets/{name}": "admin",
    "GET /api/v1/deployments": "viewer",
    "POST /api/v1/deployments": "editor",
    "DELETE /api/v1/deployments/{name}": "editor",
    "GET /api/v1/deployments/{name}": "viewer",
    "PATCH /api/v1/deployments/{name}": "editor",
    "POST /api/v1/deployments/{name}/predict": "viewer",
    "POST /api/v1/deployments/{name}/rollback": "editor",
    "POST /api/v1/deployments/{name}/start": "editor",
    "POST /api/v1/deployments/{name}/stop": "editor",
    "GET /api/v1/docs": "anyone",
    "GET /api/v1/email-deliveries": "admin",
    "GET /api/v1/endpoints/{name}/v2": "viewer",
    "GET /api/v1/endpoints/{name}/v2/{path:path}": "viewer",
    "POST /api/v1/endpoints/{name}/v2/{path:path}": "viewer",
    "GET /api/v1/experiments": "viewer",
    "POST /api/v1/experiments": "editor",
    "DELETE /api/v1/experiments/{ref}": "editor",
    "GET /api/v1/experiments/{ref}": "viewer",
    "PATCH /api/v1/experiments/{ref}": "editor",
    # Permissions: MANAGE on the resource, which a viewer never holds (its role caps it at
    # READ); with the default permission (MANAGE) every editor holds it.
    "GET /api/v1/experiments/{ref}/permissions": "editor",
    "DELETE /api/v1/experiments/{ref}/permissions/{grantee_type}/{grantee:path}": "editor",
    "PUT /api/v1/experiments/{ref}/permissions/{grantee_type}/{grantee:path}": "editor",
    "GET /api/v1/groups": "viewer",
    "POST /api/v1/groups": "admin",
    "DELETE /api/v1/groups/{name}": "admin",
    "GET /api/v1/groups/{name}": "viewer",
    "POST /api/v1/groups/{name}/members": "admin",
    "DELETE /api/v1/groups/{name}/members/{username}": "admin",
    "GET /api/v1/me": "viewer",
    "GET /api/v1/model-versions/resolve": "viewer",
    "GET /api/v1/notifications": "viewer",
    "POST /api/v1/notifications/mark-read": "viewer",
    "GET /api/v1/notifications/unread-count": "viewer",
    "GET /api/v1/openapi.json": "anyone",
    "GET /api/v1/registered-models": "viewer",
    "POST /api/v1/registered-models": "editor",
    "DELETE /api/v1/registered-models/{name}": "editor",
    "GET /api/v1/registered-models/{name}": "viewer",
    "PATCH /api/v1/registered-models/{name}": "editor",
    "GET /api/v1/registered-models/{name}/permissions": "editor",
    "DELETE /api/v1/registered-models/{name}/permissions/{grantee_type}/{grantee:path}": "editor",
    "PUT /api/v1/registered-models/{name}/permissions/{grantee_type}/{grantee:path}": "editor",
    "GET /api/v1/registered-models/{name}/protections": "viewer",
    "PUT /api/v1/registered-models/{name}/protections/aliases/{alias}": "editor",
    "DELETE /api/v1/registered-models/{name}/protections/aliases/{alias}": "editor",
    "PUT /api/v1/registered-models/{name}/protections/stages/{stage}": "editor",
    "DELETE /api/v1/registered-models/{name}/protections/stages/{stage}": "editor",
    "GET /api/v1/registered-models/{name}/aliases": "viewer",
    "DELETE /api/v1/registered-models/{name}/aliases/{alias}": "editor",
    "GET /api/v1/registered-models/{name}/aliases/{alias}": "viewer",
    "PUT /api/v1/registered-models/{name}/aliases/{alias}": "editor",
    "POST /api/v1/registered-models/{name}/aliases/{alias}/rollback": "editor",
    "DELETE /api/v1/registered-models/{name}/approval-policy": "admin",
    "GET /api/v1/registered-models/{name}/approval-policy": "viewer",
    "PUT /api/v1/registered-models/{name}/approval-policy": "admin",
    "GET /api/v1/registered-models/{name}/compare": "viewer",
    "GET /api/v1/registered-models/{name}/history": "viewer",
    "GET /api/v1/registered-models/{name}/stages/{stage}": "viewer",
    "GET /api/v1/registered-models/{name}/versions": "viewer",
    "POST /api/v1/registered-models/{name}/versions": "editor",
    "DELETE /api/v1/registered-models/{name}/versions/{version}": "editor",
    "GET /api/v1/registered-models/{name}/versions/{version}/signatures": "viewer",
    "POST /api/v1/registered-models/{name}/versions/{version}/signatures": "editor",
    "GET /api/v1/signing-keys": "viewer",
    "GET /api/v1/registered-models/{name}/versions/{version}": "viewer",
    "PATCH /api/v1/registered-models/{name}/versions/{version}": "editor",
    "GET /api/v1/registered-models/{name}/versions/{version}/files": "viewer",
    "GET /api/v1/registered-models/{name}/versions/{version}/downloads/{path:path}": "viewer",
    "GET /api/v1/registered-models/{name}/versions/{version}/files/{path:path}": "viewer",
    "GET /api/v1/registered-models/{name}/versions/{version}/lineage": "viewer",
    "POST /api/v1/registered-models/{name}/versions/{version}/metrics": "editor",
    "POST /api/v1/registered-models/{name}/versions/{version}/stage": "editor",
    "POST /api/v1/registered-models/{name}/versions/{version}/tags": "editor",
    "DELETE /api/v1/registered-models/{name}/versions/{version}/tags/{key:path}": "editor",
    "GET /api/v1/registered-models/{name}/versions/{version}/transitions": "viewer",
    "POST /api/v1/runs": "editor",
    "POST /api/v1/runs/search": "viewer",
    "DELETE /api/v1/runs/{run_id}": "editor",
    "GET /api/v1/runs/{run_id}": "viewer",
    "PATCH /api/v1/runs/{run_id}": "editor",
    "GET /api/v1/runs/{run_id}/artifacts": "viewer",
    "GET /api/v1/runs/{run_id}/artifacts/{path:path}": "viewer",
    "PUT /api/v1/runs/{run_id}/artifacts/{path:path}": "editor",
    "POST /api/v1/runs/{run_id}/datasets": "editor",
    "GET /api/v1/runs/{run_id}/downloads/{path:path}": "viewer",
    "POST /api/v1/runs/{run_id}/execution/callback": "editor",
    "POST /api/v1/runs/{run_id}/metrics": "editor",
    "GET /api/v1/runs/{run_id}/metrics/{key:path}/history": "viewer",
    "POST /api/v1/runs/{run_id}/params": "editor",
    "POST /api/v1/runs/{run_id}/tags": "editor",
    "DELETE /api/v1/runs/{run_id}/tags/{key:path}": "editor",
    "POST /api/v1/runs/{run_id}/uploads": "editor",
    "DELETE /api/v1/runs/{run_id}/uploads/{upload_id}": "editor",
    "GET /api/v1/runs/{run_id}/uploads/{upload_id}": "editor",
    "POST /api/v1/runs/{run_id}/uploads/{upload_id}/complete": "editor",
    "POST /api/v1/runs/{run_id}/uploads/{upload_id}/parts": "editor",
    "GET /api/v1/schedule-executions/{execution_id}": "viewer",
    "POST /api/v1/schedule-executions/{execution_id}/cancel": "editor",
    "GET /api/v1/schedules": "viewer",
    "POST /api/v1/schedules": "editor",
    "DELETE /api/v1/schedules/{ref}": "editor",
    "GET /api/v1/schedules/{ref}": "viewer",
    "PATCH /api/v1/schedules/{ref}": "editor",
    "GET /api/v1/schedules/{ref}/executions": "viewer",
    "POST /api/v1/schedules/{ref}/pause": "editor",
    "POST /api/v1/schedules/{ref}/resume": "editor",
    "POST /api/v1/schedules/{ref}/trigger": "editor",
    "GET /api/v1/tokens": "viewer",
    "POST /api/v1/tokens": "viewer",
    "DELETE /api/v1/tokens/{token_id}": "owner",
    "GET /api/v1/service-accounts": "admin",
    "POST /api/v1/service-accounts": "admin",
    "GET /api/v1/service-accounts/{name}": "admin",
    "PATCH /api/v1/service-accounts/{name}": "admin",
    "POST /api/v1/service-accounts/{name}/tokens": "admin",
    "GET /api/v1/users": "admin",
    "POST /api/v1/users": "admin",
    "GET /api/v1/users/{username}": "admin",
    "PATCH /api/v1/users/{username}": "admin",
    "GET /api/v1/webhook-deliveries/{delivery_id}": "admin",
    "POST /api/v1/webhook-deliveries/{delivery_id}/redeliver": "admin",
    "GET /api/v1/webhooks": "admin",
    "POST /api/v1/webhooks": "admin",
    "DELETE /api/v1/webhooks/{webhook_id}": "admin",
    "GET /api/v1/webhooks/{webhook_id}": "admin",
    "PATCH /api/v1/webhooks/{webhook_id}": "admin",
    "GET /api/v1/webhooks/{webhook_id}/deliveries": "admin",
    "POST /api/v1/webhooks/{webhook_id}/test": "admin",
    "GET /healthz": "anyone",
    "GET /metrics": "anyone",
    "GET /readyz": "anyone",
    # Web UI
    "GET /": "viewer",
    "GET /admin/users": "admin",
    "POST /admin/users": "admin",
    "POST /admin/users/{username}/disable": "admin",
    "POST /admin/users/{username}/enable": "admin",
    "POST /admin/users/{username}/password": "admin",
    "POST /admin/users/{username}/role": "admin",
    "POST /admin/service-accounts": "admin",
    "POST /admin/service-accounts/{name}/tokens": "admin",
    "GET /approvals": "viewer",
    "POST /approvals/groups": "admin",
    "POST /approvals/groups/{name}/delete": "admin",
    "POST /approvals/groups/{name}/members": "admin",
    "POST /approvals/groups/{name}/members/{username}/delete": "admin",
    "GET /approvals/policies": "viewer",
    "POST /approvals/policies": "admin",
    "POST /approvals/policies/{model}/delete": "admin",
    "GET /approvals/{request_id}": "viewer",
    "POST /approvals/{request_id}/approve": "reviewer",
    "POST /approvals/{request_id}/cancel": "owner",
    "POST /approvals/{request_id}/comments": "viewer",
    "POST /approvals/{request_id}/reject": "reviewer",
    "GET /deployments": "viewer",
    "POST /deployments/-/deploy": "editor",
    "GET /deployments/-/deploy-form": "viewer",
    "GET /deployments/-/panel": "viewer",
    "GET /deployments/{name}": "viewer",
    "POST /deployments/{name}/delete": "editor",
    "POST /deployments/{name}/rollback": "editor",
    "POST /deployments/{name}/start": "editor",
    "GET /deployments/{name}/status": "viewer",
    "POST /deployments/{name}/stop": "editor",
    "POST /deployments/{name}/test": "viewer",
    "GET /experiments": "viewer",
    "GET /experiments/{ref}": "viewer",
    "GET /experiments/{ref}/columns": "viewer",
    # The Permissions tab: MANAGE on the resource, as over REST (a viewer's role caps it at READ).
    "GET /experiments/{ref}/permissions": "editor",
    "POST /experiments/{ref}/permissions": "editor",
    "POST /experiments/{ref}/permissions/revoke": "editor",
    "GET /login": "anyone",
    # Single sign-on: the start and the provider's callback (checked by state, not by role).
    "GET /login/oidc": "anyone",
    "GET /login/oidc/callback": "anyone",
    "POST /login": "anyone",
    "POST /logout": "anyone",
    "GET /models": "viewer",
    "POST /models": "editor",
    "GET /models/suggest": "viewer",
    "GET /models/{name}": "viewer",
    "POST /models/{name}/aliases": "editor",
    "POST /models/{name}/aliases/{alias}/delete": "editor",
    "GET /models/{name}/compare": "viewer",
    "GET /models/{name}/permissions": "editor",
    "POST /models/{name}/permissions": "editor",
    "POST /models/{name}/permissions/revoke": "editor",
    "POST /models/{name}/delete": "editor",
    "POST /models/{name}/edit": "editor",
    "GET /models/{name}/versions/{version}": "viewer",
    "POST /models/{name}/versions/{version}/delete": "editor",
    "POST /models/{name}/versions/{version}/description": "editor",
    "GET /models/{name}/versions/{version}/download": "viewer",
    "POST /models/{name}/versions/{version}/stage": "editor",
    "POST /models/{name}/versions/{version}/tags": "editor",
    "POST /models/{name}/versions/{version}/tags/{key:path}/delete": "editor",
    "GET /notifications": "viewer",
    "GET /notifications/bell": "viewer",
    "POST /notifications/read": "viewer",
    "GET /notifications/{notification_id}/open": "recipient",
    "GET /runs/compare": "viewer",
    "GET /runs/{run_id}": "viewer",
    "GET /runs/{run_id}/image/{path:path}": "viewer",
    "POST /runs/{run_id}/register": "editor",
    "GET /schedules": "viewer",
    "POST /schedules": "editor",
    "GET /schedules/-/describe": "viewer",
    "GET /schedules/{ref}": "viewer",
    "POST /schedules/{ref}/delete": "editor",
    "POST /schedules/{ref}/edit": "editor",
    "POST /schedules/{ref}/executions/{execution_id}/cancel": "editor",
    "POST /schedules/{ref}/pause": "editor",
    "POST /schedules/{ref}/resume": "editor",
    "POST /schedules/{ref}/trigger": "editor",
    "GET /settings/tokens": "viewer",
    "POST /settings/tokens": "viewer",
    "POST /settings/tokens/{token_id}/revoke": "owner",
    "GET /{path:path}": "anyone",
}

# The MLflow Model Registry API (mlflow_compat/registry.py), at MLflow's REST prefix.
_MLFLOW_REGISTRY: dict[str, str] = {
    "POST /registered-models/create": "editor",
    "GET /registered-models/get": "viewer",
    "POST /registered-models/rename": "editor",
    "PATCH /registered-models/update": "editor",
    "DELETE /registered-models/delete": "editor",
    "GET /registered-models/search": "viewer",
    "POST /registered-models/set-tag": "editor",
    "DELETE /registered-models/delete-tag": "editor",
    "POST /registered-models/alias": "editor",
    "DELETE /registered-models/alias": "editor",
    "GET /registered-models/alias": "viewer",
    "GET /registered-models/get-latest-versions": "viewer",
    "POST /registered-models/get-latest-versions": "viewer",
    "POST /model-versions/create": "editor",
    "GET /model-versions/get": "viewer",
    "PATCH /model-versions/update": "editor",
    "DELETE /model-versions/delete": "editor",
    "POST /model-versions/transition-stage": "editor",
    "GET /model-versions/search": "viewer",
    "GET /model-versions/get-download-uri": "viewer",
    "POST /model-versions/set-tag": "editor",
    "DELETE /model-versions/delete-tag": "editor",
}
for _prefix in ("/api/2.0/mlflow",):
    for _route, _rule in _MLFLOW_REGISTRY.items():
        _method, _path = _route.split(" ", 1)
        TABLE[f"{_method} {_prefix}{_path}"] = _rule

# The MLflow tracking API and MLflow 3 logged models (mlflow_compat/tracking.py,
# logged_models.py); the searches are reads (POST in MLflow's API).
_MLFLOW_TRACKING: dict[str, str] = {
    "POST /experiments/create": "editor",
    "GET /experiments/get": "viewer",
    "GET /experiments/get-by-name": "viewer",
    "POST /experiments/search": "viewer",
    "POST /experiments/update": "editor",
    "POST /experiments/delete": "editor",
    "POST /experiments/restore": "editor",
    "POST /experiments/set-experiment-tag": "editor",
    "POST /experiments/delete-experiment-tag": "editor",
    "POST /runs/create": "editor",
    "GET /runs/get": "viewer",
    "POST /runs/update": "editor",
    "POST /runs/delete": "editor",
    "POST /runs/restore": "editor",
    "POST /runs/log-parameter": "editor",
    "POST /runs/log-metric": "editor",
    "POST /runs/set-tag": "editor",
    "POST /runs/delete-tag": "editor",
    "POST /runs/log-batch": "editor",
    "POST /runs/log-inputs": "editor",
    "POST /runs/outputs": "editor",
    "POST /runs/search": "viewer",
    "GET /metrics/get-history": "viewer",
    "GET /artifacts/list": "viewer",
    "POST /logged-models": "editor",
    "POST /logged-models/search": "viewer",
    "GET /logged-models/{model_id}": "viewer",
    "PATCH /logged-models/{model_id}": "editor",
    "DELETE /logged-models/{model_id}": "editor",
    "GET /logged-models/{model_id}/artifacts/directories": "viewer",
    "POST /logged-models/{model_id}/params": "editor",
    "PATCH /logged-models/{model_id}/tags": "editor",
    "DELETE /logged-models/{model_id}/tags/{tag_key:path}": "editor",
}
for _prefix in ("/api/2.0/mlflow",):
    for _route, _rule in _MLFLOW_TRACKING.items():
        _method, _path = _route.split(" ", 1)
        TABLE[f"{_method} {_prefix}{_path}"] = _rule
# MLflow's proxied artifacts, the MLflow 3 capability probe, and under each MLflow prefix the
# catch-all that answers MLflow's ENDPOINT_NOT_FOUND (404) to anyone: nothing to refuse.
TABLE.update(
    {
        "GET /api/2.0/mlflow-artifacts/artifacts": "viewer",
        "GET /api/2.0/mlflow-artifacts/artifacts/{path:path}": "viewer",
        "PUT /api/2.0/mlflow-artifacts/artifacts/{path:path}": "editor",
        "GET /api/3.0/mlflow/server-info": "viewer",
    }
)
for _prefix in (
    "/api/2.0/mlflow",
    "/api/3.0/mlflow",
    "/api/2.0/mlflow-artifacts",
):
    for _method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        TABLE[f"{_method} {_prefix}/{{path:path}}"] = "anyone"


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the app answers."""
    try:
        from fastapi.routing import iter_route_contexts

        contexts = [(c.path, c.methods) for c in iter_route_contexts(app.routes)]
    except ImportError:  # older FastAPI: routes are flat
        contexts = [(getattr(r, "path", None), getattr(r, "methods", None)) for r in app.routes]
    out = set()
    for path, methods in contexts:
        if not path or not methods:
            continue  # mounts (static files) and the like
        for m in methods:
            if m != "HEAD":
                out.add((m, path))
    return sorted(out)


def _is_ui(path: str) -> bool:
    return not path.startswith(("/api/", "/healthz", "/readyz", "/metrics"))


@pytest.fixture
def world(live_server: LiveServer, db: Database, tmp_path: Path) -> World:
    return build(live_server.url, tmp_path)


def _ui_client(url: str) -> httpx.Client:
    """A browser-like client holding a session and that session's CSRF token."""
    c = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
    _refresh_csrf(c, "/login")
    return c


def _refresh_csrf(c: httpx.Client, page: str) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get(page).text)
    assert token, f"{page} carries no CSRF token"
    c.headers["X-CSRF-Token"] = token.group(1)


@dataclass
class Callers:
    """Per caller kind: an API client (bearer token) and a signed-in UI session."""

    world: World
    api: dict[str, httpx.Client]
    ui: dict[str, httpx.Client]
    # Kinds whose shared UI session was ended (session generation bumped): signed in again
    # before their next UI call.
    ended: set[str] = field(default_factory=set)

    def call(self, kind: str, method: str, template: str) -> httpx.Response:
        try:
            return self._call(kind, method, template)
        finally:
            if "{username}" in template:
                # Routes on {username} act on the reviewer: disabling it (or changing its role
                # or password) ends its browser sessions.
                self.ended.add("reviewer")

    def _call(self, kind: str, method: str, template: str) -> httpx.Response:
        path = path_for(method, template, self.world)
        body = {} if method in ("POST", "PUT", "PATCH") else None
        if not _is_ui(template):
            return self.api[kind].request(method, path, json=body)
        if template in ("/login", "/logout"):
            # Signing in or out would change the shared session: use a fresh one.
            c = _ui_client(self.world.url)
            try:
                if kind != "anonymous" and template == "/logout":
                    self._sign_in(c, kind)
                return c.request(method, path, data=body)
            finally:
                c.close()
                if kind != "anonymous" and template == "/logout":
                    # Signing out ends all of that user's browser sessions (session
                    # generation): the shared one signs in again before its next call.
                    self.ended.add(kind)
        if kind in self.ended:
            self.ended.discard(kind)
            # GET /login redirects a live session; an ended one is cleared and sent the form.
            if self.ui[kind].get("/login").status_code != 303:
                _refresh_csrf(self.ui[kind], "/login")
                self._sign_in(self.ui[kind], kind)
        return self.ui[kind].request(method, path, data=body)

    def _sign_in(self, c: httpx.Client, kind: str) -> None:
        secret = PASSWORD if kind != "admin" else self.world.tokens["admin"]
        r = c.post("/login", data={"username": self.world.usernames[kind], "password": secret})
        assert r.status_code == 303, (kind, r.status_code, r.text[:300])
        _refresh_csrf(c, "/settings/tokens")  # a fresh session gets a fresh token


@pytest.fixture
def callers(world: World) -> Iterator[Callers]:
    api: dict[str, httpx.Client] = {}
    ui: dict[str, httpx.Client] = {}
    result = Callers(world, api, ui)
    for kind in CALLERS:
        headers = {"Authorization": f"Bearer {world.tokens[kind]}"} if world.tokens[kind] else {}
        api[kind] = httpx.Client(base_url=world.url, headers=headers, timeout=30)
        ui[kind] = _ui_client(world.url)
        if kind != "anonymous":
            result._sign_in(ui[kind], kind)
    yield result
    for c in [*api.values(), *ui.values()]:
        c.close()


def _denied(kind: str, template: str, r: httpx.Response) -> bool:
    if TABLE.get(f"{r.request.method} {template}") == "recipient" and r.status_code == 404:
        return True  # someone else's notification: not even its existence is confirmed
    if _is_ui(template):
        if kind == "anonymous":
            target = r.headers.get("location", r.headers.get("hx-redirect", ""))
            return r.status_code in (303, 401) and target.startswith("/login")
        return r.status_code == 403
    return r.status_code == (401 if kind == "anonymous" else 403)


def _audit_count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


def test_table_covers_every_route(live_server: LiveServer) -> None:
    routes = {f"{m} {p}" for m, p in _routes(live_server.app)}
    missing = sorted(routes - set(TABLE))
    stale = sorted(set(TABLE) - routes)
    if OBSERVE:
        # Observe mode prints instead of asserting: never a pass in CI.
        assert os.environ.get("CI", "").lower() not in ("1", "true", "yes"), (
            "PODSTACK_ACL_OBSERVE=1 prints instead of asserting: refused under CI=true"
        )
        pytest.skip("observe mode")
    assert not missing, "routes without an access rule in TABLE:\n" + "\n".join(missing)
    assert not stale, "TABLE names routes that no longer exist:\n" + "\n".join(stale)
    assert set(TABLE.values()) <= set(RULES)


def test_every_route_against_every_caller(
    live_server: LiveServer, db: Database, callers: Callers
) -> None:
    routes = _routes(live_server.app)
    if OBSERVE:
        assert os.environ.get("CI", "").lower() not in ("1", "true", "yes"), (
            "PODSTACK_ACL_OBSERVE=1 prints instead of asserting: refused under CI=true"
        )
        for method, template in routes:
            row = {k: callers.call(k, method, template).status_code for k in CALLERS}
            print(f"{method} {template:70} " + " ".join(f"{k[:4]}={v}" for k, v in row.items()))
        return
    mismatches: list[str] = []
    # Phase 1: every call that must be refused, on the untouched world. Nothing may change.
    before = _audit_count(db)
    refused = 0
    for method, template in routes:
        rule = TABLE.get(f"{method} {template}")
        if rule is None or rule == "anyone":
            continue
        for kind in CALLERS:
            if kind not in RULES[rule]:
                r = callers.call(kind, method, template)
                refused += 1
                if not _denied(kind, template, r):
                    mismatches.append(
                        f"{method} {template} as {kind}: expected deny, got "
                        f"{r.status_code} {r.text[:150]}"
                    )
    assert _audit_count(db) == before, "a refused call changed something (the audit log grew)"
    # Phase 2: every allowed call gets past authorisation (any answer but a refusal or 5xx).
    # Reads first, deletions last, so each call still finds the objects it names.
    order = {"GET": 0, "PUT": 1, "PATCH": 1, "POST": 2, "DELETE": 3}
    allowed = 0
    for method, template in sorted(routes, key=lambda r: (order.get(r[0], 9), r[1])):
        rule = TABLE.get(f"{method} {template}")
        if rule is None:
            continue
        for kind in CALLERS:
            if kind not in RULES[rule]:
                continue
            r = callers.call(kind, method, template)
            allowed += 1
            # 503 is an honest "not available" (the world's deployment is not running).
            if r.status_code >= 500 and r.status_code != 503:
                mismatches.append(f"{method} {template} as {kind}: {r.status_code} {r.text[:150]}")
            elif rule != "anyone" and (_denied(kind, template, r) or r.status_code in (401, 403)):
                mismatches.append(
                    f"{method} {template} as {kind}: expected allow, got "
                    f"{r.status_code} {r.text[:150]}"
                )
    record(
        "access-control",
        {"routes": len(routes), "refused_calls": refused, "allowed_calls": allowed},
    )
    assert not mismatches, "\n".join(mismatches)


# ---------------------------------------------------------------- run-scoped job tokens


def _in_job_scope(template: str) -> bool:
    rel = template.removeprefix("/api/v1")
    return template.startswith("/api/v1/") and (
        rel == "/me" or rel == "/runs/{run_id}" or rel.startswith("/runs/{run_id}/")
    )


def test_job_token_is_refused_on_every_route_outside_its_run(
    live_server: LiveServer, db: Database, world: World
) -> None:
    """The token a scheduled job gets (scope ``run:<id>``) is refused on every UI route and
    every API route outside ``/api/v1/runs/<its run>/…``, even where a UI route has the same
    shape as its run's (``POST /runs/<its run>/register`` once registered versions with it).
    The UI client holds a session cookie and CSRF token from ``GET /login`` as an attacker's
    would, so only the scope check stands between the token and the route."""
    from podstack.server.auth import service as auth_service

    run_id = world.ids["run_id"]
    with db.session() as s:
        job = auth_service.create_token(
            s, "admin", world.usernames["editor"], "job", scope=f"run:{run_id}"
        ).value
    before = _audit_count(db)
    checked: list[str] = []
    wrong: list[str] = []
    c = _ui_client(world.url)
    c.headers["Authorization"] = f"Bearer {job}"
    try:
        for method, template in _routes(live_server.app):
            if TABLE.get(f"{method} {template}") == "anyone" or _in_job_scope(template):
                continue
            path = path_for(method, template, world)
            body = {} if method in ("POST", "PUT", "PATCH") else None
            if _is_ui(template):
                r = c.request(method, path, data=body)
            else:
                r = c.request(method, path, json=body)
            checked.append(template)
            if r.status_code != 403 or "outside that scope" not in r.text:
                wrong.append(f"{method} {template}: {r.status_code} {r.text[:120]}")
    finally:
        c.close()
    assert "/runs/{run_id}/register" in checked and "/models" in checked
    assert not wrong, "job token not refused:\n" + "\n".join(wrong)
    assert _audit_count(db) == before, "a refused call changed something"


# ---------------------------------------------------------------- secrets at rest


def test_no_raw_token_or_password_in_any_column(world: World, db: Database) -> None:
    """Tokens are stored as digests and passwords as argon2 hashes: no column of any table
    holds a secret as sent (audit entries of user and token changes included)."""
    with MLOpsClient(api_token=world.tokens["admin"], url=world.url) as admin:
        admin.update_user(world.usernames["viewer"], password="another secret phrase 42")
    secrets = [t for t in world.tokens.values() if t] + [PASSWORD, "another secret phrase 42"]
    found = []
    with db.engine.connect() as c:
        for table in metadata.sorted_tables:
            for row in c.execute(select(table)):
                text_of_row = " ".join(str(v) for v in row)
                found += [f"{table.name}: {s[:6]}…" for s in secrets if s in text_of_row]
    assert found == []


# ---------------------------------------------------------------- sign-in throttling


def _login(c: httpx.Client, username: str, password: str) -> httpx.Response:
    return c.post("/login", data={"username": username, "password": password})


def test_ui_login_locks_the_account_after_repeated_failures(
    world: World, live_server: LiveServer
) -> None:
    username = world.usernames["editor"]
    limit = live_server.settings.login_max_failures
    c = _ui_client(world.url)
    try:
        for _ in range(limit):
            r = _login(c, username, "wrong password")
            assert r.status_code == 401 and "Wrong username or password" in r.text
        # Now even the right password is refused until the lock ends, with the same answer as
        # any failure (which states the lockout rule), so the lock does not reveal a real user.
        r = _login(c, username, PASSWORD)
        assert r.status_code == 401 and "Wrong username or password" in r.text
        assert f"After {limit} failed attempts in a row an account is locked" in r.text
        assert "podstack_session" not in r.headers.get("set-cookie", "") or "uid" not in r.text
        assert c.get("/models").status_code == 303  # still signed out
        # Another account is not affected.
        assert _login(c, world.usernames["viewer"], PASSWORD).status_code == 303
    finally:
        c.close()


# ---------------------------------------------------------------- cookies, CSRF, headers


def _session_cookie(r: httpx.Response) -> str:
    cookies = [v for k, v in r.headers.multi_items() if k == "set-cookie"]
    (cookie,) = [v for v in cookies if v.startswith("podstack_session=")]
    return cookie.lower()


def test_session_cookie_is_httponly_and_samesite(world: World) -> None:
    c = _ui_client(world.url)
    try:
        cookie = _session_cookie(_login(c, world.usernames["viewer"], PASSWORD))
    finally:
        c.close()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # plain-HTTP deployment: a Secure cookie would never return


def test_session_cookie_is_secure_behind_tls(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    server = LiveServer(settings.model_copy(update={"secure_cookies": True, "home": tmp_path}))
    server.start()
    try:
        with httpx.Client(base_url=server.url, follow_redirects=False) as c:
            page = c.get("/login")
            first = _session_cookie(page)
            # A client does not send a Secure cookie over plain HTTP: hand it over the way a
            # browser behind the TLS proxy would.
            value = page.headers["set-cookie"].split(";", 1)[0]
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert csrf
            r = c.post(
                "/login",
                data={"username": "admin", "password": ADMIN_TOKEN},
                headers={"Cookie": value, "X-CSRF-Token": csrf.group(1)},
            )
            assert r.status_code == 303, r.text[:300]
            cookie = _session_cookie(r)
    finally:
        server.stop()
    assert "secure" in first
    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


def test_ui_forms_refuse_missing_or_foreign_csrf_tokens(world: World) -> None:
    editor = _ui_client(world.url)
    other = _ui_client(world.url)
    try:
        Callers(world, {}, {})._sign_in(editor, "editor")
        foreign = other.headers["X-CSRF-Token"]
        good = editor.headers.pop("X-CSRF-Token")
        form = {"name": "csrf-victim", "description": "created by a forged form"}
        for headers, data in (
            ({}, form),  # no token at all
            ({"X-CSRF-Token": foreign}, form),  # another session's token
            ({}, {**form, "csrf_token": "forged"}),  # a made-up one in the form
        ):
            r = editor.post("/models", data=data, headers=headers)
            assert r.status_code == 403, r.status_code
            assert "security token" in r.text
        # Sign-in is protected too (login CSRF).
        assert editor.post("/login", data={"username": "admin", "password": "x"}).status_code == 403
        with MLOpsClient(api_token=world.tokens["admin"], url=world.url) as admin:
            assert [m.name for m in admin.search_registered_models("csrf-victim")] == []
        # The same form with the session's token works.
        r = editor.post("/models", data=form, headers={"X-CSRF-Token": good})
        assert r.status_code in (200, 303), r.text[:300]
    finally:
        editor.close()
        other.close()


def test_every_ui_form_refuses_a_request_without_its_csrf_token(world: World, db: Database) -> None:
    """Signed in as admin (who may do everything), every state-changing UI route refuses a
    request that lacks the session's CSRF token, and changes nothing."""
    admin = _ui_client(world.url)
    try:
        Callers(world, {}, {})._sign_in(admin, "admin")
        admin.headers.pop("X-CSRF-Token")
        before = _audit_count(db)
        forms = [k.split(" ", 1)[1] for k in TABLE if k.startswith("POST ") and _is_ui(k[5:])]
        assert len(forms) >= 20
        for template in forms:
            path = path_for("POST", template, world)
            r = admin.post(path, data={"comment": "x", "name": "x"})
            assert r.status_code == 403 and "security token" in r.text, (template, r.status_code)
        assert _audit_count(db) == before
    finally:
        admin.close()


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "frame-ancestors 'none'",
}


def test_security_headers_on_api_ui_and_errors(world: World) -> None:
    token = {"Authorization": f"Bearer {world.tokens['viewer']}"}
    ui = _ui_client(world.url)
    try:
        Callers(world, {}, {})._sign_in(ui, "viewer")
        responses = {
            "API 200": httpx.get(world.url + "/api/v1/me", headers=token),
            "API 401": httpx.get(world.url + "/api/v1/me"),
            "API 404": httpx.get(world.url + "/api/v1/nope", headers=token),
            "API 422": httpx.get(world.url + "/api/v1/experiments?limit=0", headers=token),
            "API 413": httpx.post(
                world.url + "/api/v1/experiments", headers=token, content=b"x" * (2 << 20)
            ),
            "API 431": httpx.get(world.url + "/healthz", headers={"X-Big": "a" * 100_000}),
            "UI page": ui.get("/models"),
            "UI 404 page": ui.get("/no/such/page"),
            "login page": httpx.get(world.url + "/login"),
            "static": httpx.get(world.url + "/static/css/app.css"),
            "healthz": httpx.get(world.url + "/healthz"),
        }
    finally:
        ui.close()
    missing = [
        f"{what} ({r.status_code}): {name}"
        for what, r in responses.items()
        for name, must in SECURITY_HEADERS.items()
        if must not in r.headers.get(name, "")
    ]
    assert missing == []
    assert responses["API 413"].status_code == 413 and responses["API 431"].status_code == 431


# ---------------------------------------------------------------- secrets in logs


def _session_with_secrets(url: str, admin_token: str) -> list[str]:
    """Users with passwords, tokens, sign-ins that work and fail, tokens used and refused.
    Returns every secret that went over the wire."""
    secrets = {
        "alice_password": "alice-password-" + uuid.uuid4().hex,
        "bob_password": "bob-password-" + uuid.uuid4().hex,
        "bob_new_password": "bob-new-password-" + uuid.uuid4().hex,
        "wrong_password": "wrong-password-" + uuid.uuid4().hex,
        "wrong_token": "pst_wrong-" + uuid.uuid4().hex,
    }
    with MLOpsClient(api_token=admin_token, url=url) as admin:
        admin.create_user("alice", "editor", password=secrets["alice_password"])
        admin.create_user("bob", "viewer", password=secrets["bob_password"])
        admin.update_user("bob", password=secrets["bob_new_password"])
        secrets["alice_token"] = admin.create_token("laptop", username="alice").token
    with MLOpsClient(api_token=secrets["alice_token"], url=url) as alice:
        alice.create_run("logged")
        secrets["alice_own_token"] = alice.create_token("ci").token
    for password, expect in (
        (secrets["alice_password"], 303),
        (secrets["wrong_password"], 401),
        (secrets["alice_token"], 303),  # an API token pasted as the password
        (secrets["wrong_token"], 401),
    ):
        c = _ui_client(url)
        try:
            assert _login(c, "alice", password).status_code == expect
        finally:
            c.close()
    for bad in (secrets["wrong_token"], secrets["bob_password"]):
        r = httpx.get(url + "/api/v1/me", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401
        r = httpx.get(url + "/api/v1/me", headers={"Authorization": bad})  # malformed header
        assert r.status_code == 401
    return list(secrets.values())


def test_no_token_or_password_in_server_logs(spec: ServerSpec, start_server) -> None:  # type: ignore[no-untyped-def]
    """The server's whole console (stdout and stderr, uvicorn access log and application
    logging at debug level) never shows a secret. The one exception is by design: the
    first-start banner prints the generated admin token once, and only that print is
    excluded from the search."""
    server = start_server(spec, PODSTACK_ADMIN_TOKEN="", PODSTACK_LOG_LEVEL="debug")
    banner_start = server.output.index("Podstack MLOps is running")
    banner_end = server.output.index("--with-token", banner_start)
    banner = server.output[banner_start:banner_end]
    admin_token = re.search(r"^\s+(pst_\S+)\s*$", banner, re.M)
    assert admin_token, banner
    secrets = [admin_token.group(1), *_session_with_secrets(server.url, admin_token.group(1))]
    assert server.stop() == 0
    console = server.output
    assert "GET /api/v1/me" in console, "the access log was not captured"
    outside_banner = console[:banner_start] + console[banner_end:]
    leaked = [s[:12] + "…" for s in secrets if s in outside_banner]
    assert leaked == [], f"secrets in the server log: {leaked}"


def test_no_token_or_password_in_python_logging(
    live_server: LiveServer, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = _session_with_secrets(live_server.url, ADMIN_TOKEN)
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    leaked = [s[:12] + "…" for s in [*secrets, ADMIN_TOKEN] if s in logged]
    assert leaked == []

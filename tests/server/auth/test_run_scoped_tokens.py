"""A token scoped to one run (what a scheduled job gets) can do nothing beyond that run."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from podstack.errors import PermissionDenied
from podstack.server.auth import service as auth_service
from podstack.server.auth.principal import Principal
from podstack.server.db.session import Database

ClientFor = Callable[[str], httpx.Client]


@pytest.fixture
def runs(api: httpx.Client) -> tuple[str, str]:
    mine = api.post("/runs", json={"experiment_id": "e"}).json()["id"]
    other = api.post("/runs", json={"experiment_id": "e"}).json()["id"]
    return mine, other


def _scoped(db: Database, run_id: str, role: str = "editor") -> str:
    with db.session() as s:
        auth_service.create_user(s, "test", "job", role=role)
        return auth_service.create_token(s, "test", "job", "job", scope=f"run:{run_id}").value


def test_own_run_endpoints_work(
    api: httpx.Client, db: Database, client_for: ClientFor, runs: tuple[str, str]
) -> None:
    mine, _ = runs
    c = client_for(_scoped(db, mine))
    assert c.get("/me").json()["scope"] == f"run:{mine}"
    assert c.get(f"/runs/{mine}").status_code == 200
    assert c.post(f"/runs/{mine}/params", json={"params": {"lr": 1}}).status_code == 204
    assert c.post(f"/runs/{mine}/metrics", json={"metrics": {"loss": 0.5}}).status_code == 200
    assert c.get(f"/runs/{mine}/metrics/loss/history").status_code == 200
    assert c.post(f"/runs/{mine}/tags", json={"tags": {"k": "v"}}).status_code == 204
    assert c.patch(f"/runs/{mine}", json={"status": "FINISHED"}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/runs/{other}", None),
        ("POST", "/runs/{other}/metrics", {"metrics": {"x": 1}}),
        ("POST", "/runs", {"experiment_id": "e"}),
        ("POST", "/runs/search", {}),
        ("GET", "/experiments", None),
        ("POST", "/experiments", {"name": "x"}),
        ("GET", "/schedules", None),
        ("GET", "/users", None),
        ("POST", "/tokens", {"name": "escalate"}),
        ("GET", "/audit", None),
        ("GET", "/runs/{mine}x", None),
    ],
)
def test_everything_else_is_refused(
    api: httpx.Client,
    db: Database,
    client_for: ClientFor,
    runs: tuple[str, str],
    method: str,
    path: str,
    body: dict | None,
) -> None:
    mine, other = runs
    c = client_for(_scoped(db, mine))
    r = c.request(method, path.format(mine=mine, other=other), json=body)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "PERMISSION_DENIED"
    assert f"run:{mine}" in err["message"] and "outside that scope" in err["message"]
    # Nothing changed.
    assert len(api.get("/experiments").json()["items"]) == 1
    assert api.get(f"/runs/{other}").json()["metrics"] == {}


def test_rule_itself() -> None:
    p = Principal(username="job", role="editor", scope="run:run-1")
    p.require_path_in_scope("/api/v1/runs/run-1/artifacts/logs/a.txt")
    p.require_path_in_scope("/api/v1/me")
    for path in (
        "/api/v1/runs/run-1/../run-2",
        "/api/v1/runs/run-1/./x",
        "/api/v1/runs/run-10",
        "/api/v1/runs",
        "/experiments",  # the web UI
        "/runs/run-1/register",  # a UI route shaped like the run's own API path
        "/runs/run-1",
        "/me",
        "/api/v1",
        "/",
    ):
        with pytest.raises(PermissionDenied):
            p.require_path_in_scope(path)
    # An unknown kind of scope grants nothing (fail closed); no scope restricts nothing.
    with pytest.raises(PermissionDenied):
        Principal(username="x", role="admin", scope="model:m").require_path_in_scope("/api/v1/me")
    Principal(username="x", role="viewer").require_path_in_scope("/api/v1/experiments")

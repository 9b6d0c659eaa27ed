"""Helpers for approval tests: users with tokens and emails, model versions with metrics."""

from __future__ import annotations

from typing import Any

import httpx

from podstack.server.auth import service as auth_service
from podstack.server.db.session import Database


def make_user(db: Database, username: str, role: str = "editor", email: str | None = None) -> str:
    """Creates a user (with an email address) and returns an API token for them."""
    with db.session() as s:
        auth_service.create_user(s, "test", username, role=role, email=email)
        return auth_service.create_token(s, "test", username, "test").value


def make_version(
    api: httpx.Client, model: str, metrics: dict[str, float] | None = None, *, end_run: bool = True
) -> int:
    """A run with ``metrics`` and a model.pt artifact, registered as the next version (the run
    ended unless ``end_run`` is False)."""
    run = api.post("/runs", json={"experiment_id": f"{model}-exp"})
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    if metrics:
        points = [{"key": k, "value": v, "step": 0} for k, v in metrics.items()]
        r = api.post(f"/runs/{run_id}/metrics", json={"points": points})
        assert r.status_code == 200, r.text
    r = api.put(f"/runs/{run_id}/artifacts/model.pt", content=b"weights")
    assert r.status_code == 201, r.text
    if end_run:
        # Gates read run metrics only once the run has ended (nobody can change them then).
        r = api.patch(f"/runs/{run_id}", json={"status": "FINISHED"})
        assert r.status_code == 200, r.text
    r = api.post(
        f"/registered-models/{model}/versions",
        json={"source_run_id": run_id, "artifact_path": "model.pt"},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["version"])


def transition(
    api: httpx.Client, model: str, version: int, stage: str, **kw: Any
) -> httpx.Response:
    return api.post(
        f"/registered-models/{model}/versions/{version}/stage", json={"stage": stage, **kw}
    )


def stage_of(api: httpx.Client, model: str, version: int) -> str:
    r = api.get(f"/registered-models/{model}/versions/{version}")
    assert r.status_code == 200, r.text
    return str(r.json()["stage"])


def error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    assert body["message"]
    return dict(body)

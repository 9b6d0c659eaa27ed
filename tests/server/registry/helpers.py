"""Shared helpers for the registry's REST tests: runs with artifacts, error checks, and a
snapshot of a model's whole state for "nothing changed" assertions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event

from podstack.server.db.session import Database


def make_run(
    api: httpx.Client,
    files: dict[str, bytes] | None = None,
    *,
    experiment: str = "registry-exp",
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    finish: bool = True,
) -> str:
    """A run (FINISHED unless told) with artifact files, params and metrics."""
    r = api.post("/runs", json={"experiment_id": experiment})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    for path, data in (files if files is not None else {"model.pt": b"weights-v1"}).items():
        r = api.put(f"/runs/{run_id}/artifacts/{path}", content=data)
        assert r.status_code == 201, r.text
    if params:
        assert api.post(f"/runs/{run_id}/params", json={"params": params}).status_code == 204
    if metrics:
        r = api.post(f"/runs/{run_id}/metrics", json={"metrics": metrics})
        assert r.status_code == 200, r.text
    if finish:
        assert api.patch(f"/runs/{run_id}", json={"status": "FINISHED"}).status_code == 200
    return run_id


def new_version(
    api: httpx.Client,
    model: str,
    run_id: str,
    path: str = "model.pt",
    *,
    detail: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """Creates a version; the reply is the lean view unless ``detail`` (files, source run)."""
    r = api.post(
        f"/registered-models/{model}/versions",
        json={"source_run_id": run_id, "artifact_path": path, **extra},
        params={"detail": "true"} if detail else None,
    )
    assert r.status_code == 201, r.text
    return r.json()


def transition(api: httpx.Client, model: str, version: int, stage: str, **extra: Any) -> dict:
    r = api.post(
        f"/registered-models/{model}/versions/{version}/stage", json={"stage": stage, **extra}
    )
    assert r.status_code == 200, r.text
    return r.json()


def error(r: httpx.Response, status: int, code: str, *needles: str) -> dict[str, Any]:
    """Asserts the status, the error code and that the message mentions each needle."""
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    for needle in needles:
        assert needle.lower() in body["message"].lower(), body["message"]
    return body


def state(api: httpx.Client) -> dict[str, Any]:
    """Everything the registry holds, as the API shows it (for "nothing changed")."""
    out: dict[str, Any] = {}
    models = api.get("/registered-models", params={"limit": 1000}).json()["items"]
    for m in models:
        name = m["name"]
        versions = api.get(f"/registered-models/{name}/versions", params={"limit": 1000}).json()
        out[name] = {
            "model": m,
            "versions": [
                api.get(f"/registered-models/{name}/versions/{v['version']}").json()
                for v in versions["items"]
            ],
            "aliases": api.get(f"/registered-models/{name}/aliases").json(),
            "history": api.get(f"/registered-models/{name}/history").json(),
        }
    return out


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements ``db`` runs inside the block (SQLite's explicit BEGIN left out),
    for tests that pin how many a hot path costs."""
    seen: list[str] = []

    def before(_conn: object, _cur: object, stmt: str, *_args: object) -> None:
        if not stmt.lstrip().upper().startswith("BEGIN"):
            seen.append(stmt)

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", before)

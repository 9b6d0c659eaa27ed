"""Tracking over raw HTTP: wire shapes and every bad input (clear 4xx, nothing changed)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.http_errors import api_error as _error


def _run(api: httpx.Client, exp: str = "e1") -> str:
    r = api.post("/runs", json={"experiment_id": exp})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_nan_and_infinity_on_the_wire(api: httpx.Client) -> None:
    run_id = _run(api)
    r = api.post(
        f"/runs/{run_id}/metrics",
        json={
            "points": [
                {"key": "a", "value": "NaN", "step": 0},
                {"key": "b", "value": "Infinity", "step": 0},
                {"key": "c", "value": "-Infinity", "step": 0},
            ]
        },
    )
    assert r.status_code == 200 and r.json() == {"logged": 3}
    metrics = api.get(f"/runs/{run_id}").json()["metrics"]
    assert metrics == {"a": "NaN", "b": "Infinity", "c": "-Infinity"}


def test_bulk_metrics_one_request(api: httpx.Client) -> None:
    run_id = _run(api)
    points = [{"key": f"k{k}", "value": s * 0.5, "step": s} for k in range(20) for s in range(50)]
    r = api.post(f"/runs/{run_id}/metrics", json={"points": points})
    assert r.json() == {"logged": 1000}
    hist = api.get(f"/runs/{run_id}/metrics/k3/history").json()["items"]
    assert len(hist) == 50 and hist[-1]["value"] == 24.5


def test_metric_history_pages(api: httpx.Client) -> None:
    run_id = _run(api)
    api.post(
        f"/runs/{run_id}/metrics",
        json={"points": [{"key": "x", "value": i, "step": i} for i in range(25)]},
    )
    steps, token = [], None
    while True:
        r = api.get(
            f"/runs/{run_id}/metrics/x/history",
            params={"limit": 10, **({"page_token": token} if token else {})},
        )
        steps += [p["step"] for p in r.json()["items"]]
        token = r.json()["next_page_token"]
        if not token:
            break
    assert steps == list(range(25))


@pytest.mark.parametrize("name", ["", "a" * 257, "bad\x00name", "tab\tname", "slash/name"])
def test_malformed_experiment_names(api: httpx.Client, name: str) -> None:
    _error(api.post("/experiments", json={"name": name}), 422, "VALIDATION_ERROR")
    assert api.get("/experiments").json()["items"] == []


@pytest.mark.parametrize("key", ["", "k" * 251, "bad key!", "semi;colon", "nul\x00"])
def test_malformed_metric_and_param_keys(api: httpx.Client, key: str) -> None:
    run_id = _run(api)
    _error(
        api.post(f"/runs/{run_id}/metrics", json={"metrics": {key: 1.0}}), 422, "VALIDATION_ERROR"
    )
    _error(api.post(f"/runs/{run_id}/params", json={"params": {key: "v"}}), 422, "VALIDATION_ERROR")
    run = api.get(f"/runs/{run_id}").json()
    assert run["metrics"] == {} and run["params"] == {}


def test_malformed_json_is_400(api: httpx.Client) -> None:
    r = api.post("/experiments", content=b'{"name": ', headers={"content-type": "application/json"})
    body = _error(r, 400, "BAD_REQUEST")
    assert "JSON" in body["message"]


def test_wrong_types_are_422(api: httpx.Client) -> None:
    run_id = _run(api)
    body = _error(
        api.post(f"/runs/{run_id}/metrics", json={"metrics": {"a": "lots"}}),
        422,
        "VALIDATION_ERROR",
    )
    assert "metrics.a" in body["message"]
    _error(
        api.post(f"/runs/{run_id}/metrics", json={"metrics": {"a": 1}, "step": -1}),
        422,
        "VALIDATION_ERROR",
    )
    _error(
        api.post(f"/runs/{run_id}/params", json={"params": {"a": {"nested": 1}}}),
        422,
        "VALIDATION_ERROR",
    )
    _error(
        api.post("/experiments", json={"name": "x", "unknown_field": 1}), 422, "VALIDATION_ERROR"
    )
    _error(api.patch(f"/runs/{run_id}", json={"status": "DONE"}), 422, "VALIDATION_ERROR")


def test_body_over_limit_is_413_with_limit(api: httpx.Client) -> None:
    run_id = _run(api)
    big = {"metrics": {"a": 1.0}, "pad": "x" * (2 * 1024 * 1024)}
    body = _error(api.post(f"/runs/{run_id}/metrics", json=big), 413, "PAYLOAD_TOO_LARGE")
    assert "1 MiB" in body["message"] and body["details"]["limit_bytes"] == 1024 * 1024
    assert api.get(f"/runs/{run_id}").json()["metrics"] == {}


def test_changing_param_is_409_and_atomic(api: httpx.Client) -> None:
    run_id = _run(api)
    assert api.post(f"/runs/{run_id}/params", json={"params": {"lr": 0.1}}).status_code == 204
    body = _error(
        api.post(f"/runs/{run_id}/params", json={"params": {"lr": 0.2, "b": 1}}), 409, "CONFLICT"
    )
    assert body["details"]["conflicts"]["lr"] == {"logged": "0.1", "new": "0.2"}
    assert api.get(f"/runs/{run_id}").json()["params"] == {"lr": "0.1"}


def test_logging_to_finished_run_is_409(api: httpx.Client) -> None:
    run_id = _run(api)
    api.patch(f"/runs/{run_id}", json={"status": "FINISHED"})
    _error(api.post(f"/runs/{run_id}/metrics", json={"metrics": {"a": 1}}), 409, "CONFLICT")
    _error(api.post(f"/runs/{run_id}/datasets", json={"name": "d"}), 409, "CONFLICT")
    _error(api.patch(f"/runs/{run_id}", json={"status": "RUNNING"}), 409, "CONFLICT")


def test_unknown_ids_are_404(api: httpx.Client) -> None:
    _error(api.get("/runs/run-0000"), 404, "NOT_FOUND")
    _error(api.get("/experiments/nope"), 404, "NOT_FOUND")
    run_id = _run(api)
    _error(api.get(f"/runs/{run_id}/metrics/nope/history"), 404, "NOT_FOUND")
    _error(api.delete(f"/runs/{run_id}/tags/nope"), 404, "NOT_FOUND")


def test_auth_required_and_viewer_cannot_write(
    anon: httpx.Client,
    make_token: Callable[..., str],
    client_for: Callable[[str], httpx.Client],
    api: httpx.Client,
) -> None:
    body = _error(anon.get("/experiments"), 401, "UNAUTHENTICATED")
    assert "Bearer" in body["message"]
    _error(anon.post("/runs", json={"experiment_id": "x"}), 401, "UNAUTHENTICATED")
    bad = client_for("pst_wrong")
    _error(bad.get("/experiments"), 401, "UNAUTHENTICATED")
    viewer = client_for(make_token("viewer"))
    assert viewer.get("/experiments").status_code == 200
    body = _error(viewer.post("/runs", json={"experiment_id": "x"}), 403, "PERMISSION_DENIED")
    assert "editor" in body["message"]
    assert api.get("/experiments").json()["items"] == []
    editor = client_for(make_token("editor"))
    assert editor.post("/runs", json={"experiment_id": "x"}).status_code == 201


def test_bad_page_token_and_limit(api: httpx.Client) -> None:
    _error(api.get("/experiments", params={"page_token": "!!!"}), 400, "BAD_REQUEST")
    _error(api.get("/experiments", params={"limit": 100000}), 422, "VALIDATION_ERROR")
    _error(api.post("/runs/search", json={"limit": 0}), 422, "VALIDATION_ERROR")


def test_sql_metacharacters_in_search_are_data(api: httpx.Client) -> None:
    run_id = _run(api, "meta")
    api.post(f"/runs/{run_id}/tags", json={"tags": {"note": "it's 100%_done"}})
    r = api.post("/runs/search", json={"filter": "tags.note contains '100%_'"})
    assert [x["id"] for x in r.json()["items"]] == [run_id]
    r = api.post("/runs/search", json={"filter": "tags.note = \"x' OR '1'='1\""})
    assert r.status_code == 200 and r.json()["items"] == []
    r = api.get("/experiments", params={"q": "%"})
    assert r.json()["items"] == []


def test_audit_records_mutations(api: httpx.Client, db) -> None:
    from sqlalchemy import select

    from podstack.server.audit.models import AuditEvent

    run_id = _run(api)
    api.post(f"/runs/{run_id}/params", json={"params": {"a": 1}})
    with db.session(readonly=True) as s:
        actions = [(e.actor, e.action, e.target_id) for e in s.scalars(select(AuditEvent))]
    assert ("admin", "run.create", run_id) in actions
    assert ("admin", "run.log_params", run_id) in actions
    assert any(a[1] == "experiment.create" for a in actions)

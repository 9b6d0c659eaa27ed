"""MLflow's error shape and status codes, authentication and roles on the MLflow paths: with
the real client where it reports them, and raw HTTP for the answers themselves. Every refused
request changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from podstack.server.audit.models import AuditEvent
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer

pytestmark = pytest.mark.one_db


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as c:
        yield c


def _audit_count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


def test_client_sees_mlflow_error_codes(mlflow_json: Callable[..., Any]) -> None:
    out = mlflow_json(
        """
        import mlflow
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
        c = MlflowClient()

        def code(fn):
            try:
                fn()
            except MlflowException as exc:
                return [exc.error_code, exc.get_http_status_code(), exc.message]
            return None

        exp = c.create_experiment("errors")
        run = c.create_run(exp)
        c.log_param(run.info.run_id, "lr", "0.1")
        emit({
            "missing_run": code(lambda: c.get_run("f" * 32)),
            "missing_exp": code(lambda: c.get_experiment("exp-0000")),
            "by_name": c.get_experiment_by_name("no such experiment"),
            "duplicate": code(lambda: c.create_experiment("errors")),
            "param": code(lambda: c.log_param(run.info.run_id, "lr", "0.2")),
            "same_param": code(lambda: c.log_param(run.info.run_id, "lr", "0.1")),
            "status": code(lambda: c.set_terminated(run.info.run_id, "SCHEDULED")),
            "restore": code(lambda: c.restore_run("f" * 32)),
            "default": code(lambda: c.delete_experiment("0")),
        })
        """
    )
    assert out["missing_run"][:2] == ["RESOURCE_DOES_NOT_EXIST", 404]
    assert out["missing_exp"][:2] == ["RESOURCE_DOES_NOT_EXIST", 404]
    assert out["by_name"] is None  # the client reads MLflow's 404 as "none"
    assert out["duplicate"][:2] == ["RESOURCE_ALREADY_EXISTS", 400]
    assert out["param"][:2] == ["INVALID_PARAMETER_VALUE", 400]
    assert "Changing param values is not allowed" in out["param"][2]
    assert "old value='0.1', new value='0.2'" in out["param"][2]
    assert out["same_param"] is None  # logging the same value again is fine, as in MLflow
    assert out["status"][:2] == ["INVALID_PARAMETER_VALUE", 400]
    assert "SCHEDULED" in out["status"][2]
    assert out["restore"][0] == "RESOURCE_DOES_NOT_EXIST" and "permanently" in out["restore"][2]
    assert out["default"][:2] == ["INVALID_PARAMETER_VALUE", 400]


def test_viewer_reads_but_cannot_write_and_no_token_is_refused(
    mlflow_json: Callable[..., Any],
    make_token: Callable[..., str],
    http: httpx.Client,
    live_server: LiveServer,
    db: Database,
) -> None:
    exp = http.post("/api/2.0/mlflow/experiments/create", json={"name": "acl"}).json()
    run = http.post(
        "/api/2.0/mlflow/runs/create", json={"experiment_id": exp["experiment_id"]}
    ).json()["run"]
    viewer = make_token("viewer")
    before = _audit_count(db)
    script = f"""
        import os, tempfile
        import mlflow
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
        c = MlflowClient()

        def code(fn):
            try:
                fn()
            except MlflowException as exc:
                return [exc.error_code, exc.get_http_status_code()]
            except Exception as exc:  # the artifact proxy reports HTTP errors as text
                return ["HTTP", str(exc)[:300]]
            return None

        path = os.path.join(tempfile.mkdtemp(), "f.txt")
        with open(path, "w") as f:
            f.write("x")
        emit({{
            "read": code(lambda: c.get_run("{run["info"]["run_id"]}")),
            "create": code(lambda: c.create_experiment("nope")),
            "metric": code(lambda: c.log_metric("{run["info"]["run_id"]}", "m", 1.0)),
            "artifact": code(lambda: c.log_artifact("{run["info"]["run_id"]}", path)),
        }})
        """
    out = mlflow_json(script, token=viewer)
    assert out["read"] is None
    assert out["create"] == ["PERMISSION_DENIED", 403]
    assert out["metric"] == ["PERMISSION_DENIED", 403]
    assert out["artifact"][0] == "HTTP" and "403" in out["artifact"][1]
    anonymous = mlflow_json(script, token=None)
    assert anonymous["read"] == ["UNAUTHENTICATED", 401]
    assert anonymous["create"] == ["UNAUTHENTICATED", 401]
    # A viewer reading MLflow's default experiment does not create it (an editor's would).
    r = httpx.get(
        f"{live_server.url}/api/2.0/mlflow/experiments/get",
        params={"experiment_id": "0"},
        headers={"Authorization": f"Bearer {viewer}"},
    )
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert _audit_count(db) == before  # nothing was changed by the refused calls


def test_raw_answers_are_mlflow_shaped_and_change_nothing(
    http: httpx.Client, live_server: LiveServer, db: Database
) -> None:
    exp_id = http.post("/api/2.0/mlflow/experiments/create", json={"name": "raw"}).json()[
        "experiment_id"
    ]
    run = http.post("/api/2.0/mlflow/runs/create", json={"experiment_id": exp_id}).json()["run"]
    run_id = run["info"]["run_id"]
    before = _audit_count(db)
    bad: list[tuple[str, str, Any, int, str, str]] = [
        ("POST", "/api/2.0/mlflow/runs/no-such", {}, 404, "ENDPOINT_NOT_FOUND", "does not serve"),
        ("GET", "/api/2.0/mlflow/runs/get", None, 400, "INVALID_PARAMETER_VALUE", "'run_id'"),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            {"run_id": run_id, "params": [{"key": f"p{i}", "value": "v"} for i in range(101)]},
            400,
            "INVALID_PARAMETER_VALUE",
            "at most 1000 metrics, 100 params",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            {"run_id": run_id, "params": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]},
            400,
            "INVALID_PARAMETER_VALUE",
            "Duplicate parameter keys",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-metric",
            {"run_id": run_id, "key": "m", "value": "not a number"},
            400,
            "INVALID_PARAMETER_VALUE",
            "value",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-metric",
            {"run_id": run_id, "key": "bad\nkey", "value": 1},
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid value",
        ),
        (
            "POST",
            "/api/2.0/mlflow/experiments/create",
            {"name": "x", "artifact_location": "s3://bucket/x"},
            400,
            "INVALID_PARAMETER_VALUE",
            "artifact_location is not supported",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/create",
            {"experiment_id": exp_id, "tags": [{"key": "mlflow.parentRunId", "value": "f" * 32}]},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "not found",
        ),
        (
            "PUT",
            f"/api/2.0/mlflow-artifacts/artifacts/{exp_id}/f.txt",
            b"x",
            400,
            "INVALID_PARAMETER_VALUE",
            "is not inside a run",
        ),
        (
            "PUT",
            f"/api/2.0/mlflow-artifacts/artifacts/exp-other/{run_id}/artifacts/f.txt",
            b"x",
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "not found in experiment",
        ),
        (
            "PUT",
            f"/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/../f.txt",
            b"x",
            400,
            "INVALID_PARAMETER_VALUE",
            "",
        ),
        (
            "GET",
            f"/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/missing.txt",
            None,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "no artifact",
        ),
        (
            "POST",
            "/api/2.0/mlflow/logged-models",
            {"experiment_id": exp_id, "source_run_id": "f" * 32},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "not found",
        ),
        (
            "PATCH",
            "/api/2.0/mlflow/logged-models/m-" + "0" * 32,
            {"status": "LOGGED_MODEL_READY"},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "not found",
        ),
    ]
    for method, path, body, status, code, fragment in bad:
        if isinstance(body, bytes):
            r = http.request(method, path, content=body)
        else:
            r = http.request(method, path, json=body)
        assert r.status_code == status, (path, r.text)
        doc = r.json()
        assert set(doc) == {"error_code", "message"}, doc
        assert doc["error_code"] == code and fragment in doc["message"], (path, doc)
    r = http.post(
        "/api/2.0/mlflow/runs/log-metric",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert _audit_count(db) == before
    # The artifact PUT above that was refused stored nothing.
    listing = http.get(
        "/api/2.0/mlflow-artifacts/artifacts", params={"path": f"{exp_id}/{run_id}/artifacts"}
    )
    assert listing.json() == {"files": []}
    # MLflow 3's capability probe: single PUT/GET artifact transfers; other v3 paths are not
    # served, in MLflow's shape.
    info = http.get("/api/3.0/mlflow/server-info").json()
    assert info["multipart_uploads_enabled"] is False
    traces = http.post("/api/3.0/mlflow/traces", json={})
    assert traces.status_code == 404 and traces.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    # Podstack's own API keeps its own error shape.
    assert "error" in http.get("/api/v1/runs/run-0000000000000000").json()


def test_audit_names_the_mlflow_caller(
    make_token: Callable[..., str], live_server: LiveServer, db: Database
) -> None:
    token = make_token("editor", username="mlflow-editor")
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}) as c:
        exp = c.post("/api/2.0/mlflow/experiments/create", json={"name": "audited"}).json()
        run = c.post(
            "/api/2.0/mlflow/runs/create", json={"experiment_id": exp["experiment_id"]}
        ).json()["run"]
        assert run["info"]["user_id"] == "mlflow-editor"
        c.post(
            "/api/2.0/mlflow/runs/log-parameter",
            json={"run_id": run["info"]["run_id"], "key": "k", "value": "v"},
        ).raise_for_status()
    with db.session(readonly=True) as s:
        actions = {
            (e.actor, e.action)
            for e in s.scalars(select(AuditEvent).where(AuditEvent.actor == "mlflow-editor"))
        }
    assert {
        ("mlflow-editor", "experiment.create"),
        ("mlflow-editor", "run.create"),
        ("mlflow-editor", "run.log_params"),
    } <= actions

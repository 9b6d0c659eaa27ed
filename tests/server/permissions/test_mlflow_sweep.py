"""Every endpoint of the MLflow-compatible API that names a model, a version, an experiment or a
run, called by an editor who holds no grant on them (default permission NONE): the answer is
the answer for objects that do not exist (same status, same MLflow error code, the same search
results), so the MLflow client cannot tell that they exist; and nothing changes.

Compared call by call with the same request naming objects that do not exist, rather than with
an expected status per endpoint: what matters is that the two cannot be told apart."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from podstack.server.audit.models import AuditEvent
from podstack.server.db.session import Database
from podstack.server.mlflow_compat.ids import run_to_mlflow
from tests.conftest import LiveServer
from tests.server.permissions.conftest import EXPERIMENT, MODEL, World

# The rules here are decided in Python; the read filter's SQL is checked on both databases by
# test_matrix.py, test_every_route.py and test_search_at_scale.py. One pass is enough.
pytestmark = pytest.mark.one_db

MLFLOW = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
GHOST_MODEL = "ghost-model"
GHOST_EXPERIMENT = "ghost-exp"

# (method, path, query, json body); {model}, {exp}, {exp_name}, {run} are filled per world.
CALLS: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = [
    ("GET", "/experiments/get", {"experiment_id": "{exp}"}, None),
    ("GET", "/experiments/get-by-name", {"experiment_name": "{exp_name}"}, None),
    ("POST", "/experiments/search", None, {"max_results": 1000}),
    ("POST", "/experiments/update", None, {"experiment_id": "{exp}", "new_name": "renamed"}),
    (
        "POST",
        "/experiments/set-experiment-tag",
        None,
        {"experiment_id": "{exp}", "key": "k", "value": "v"},
    ),
    ("POST", "/experiments/delete-experiment-tag", None, {"experiment_id": "{exp}", "key": "k"}),
    ("POST", "/experiments/delete", None, {"experiment_id": "{exp}"}),
    ("POST", "/experiments/restore", None, {"experiment_id": "{exp}"}),
    ("POST", "/runs/create", None, {"experiment_id": "{exp}"}),
    ("GET", "/runs/get", {"run_id": "{run}"}, None),
    ("POST", "/runs/search", None, {"experiment_ids": ["{exp}"]}),
    ("POST", "/runs/update", None, {"run_id": "{run}", "status": "FINISHED"}),
    ("POST", "/runs/log-parameter", None, {"run_id": "{run}", "key": "p", "value": "1"}),
    (
        "POST",
        "/runs/log-metric",
        None,
        {"run_id": "{run}", "key": "m", "value": 1, "timestamp": 0, "step": 0},
    ),
    ("POST", "/runs/set-tag", None, {"run_id": "{run}", "key": "k", "value": "v"}),
    ("POST", "/runs/delete-tag", None, {"run_id": "{run}", "key": "k"}),
    ("POST", "/runs/log-batch", None, {"run_id": "{run}", "params": [{"key": "b", "value": "1"}]}),
    ("POST", "/runs/log-inputs", None, {"run_id": "{run}", "datasets": []}),
    ("POST", "/runs/delete", None, {"run_id": "{run}"}),
    ("POST", "/runs/restore", None, {"run_id": "{run}"}),
    ("GET", "/metrics/get-history", {"run_id": "{run}", "metric_key": "loss"}, None),
    ("GET", "/artifacts/list", {"run_id": "{run}"}, None),
    ("GET", "/registered-models/get", {"name": "{model}"}, None),
    ("GET", "/registered-models/search", {"filter": "name = '{model}'"}, None),
    ("GET", "/registered-models/get-latest-versions", {"name": "{model}"}, None),
    ("PATCH", "/registered-models/update", None, {"name": "{model}", "description": "x"}),
    ("POST", "/registered-models/set-tag", None, {"name": "{model}", "key": "k", "value": "v"}),
    ("DELETE", "/registered-models/delete-tag", None, {"name": "{model}", "key": "k"}),
    (
        "POST",
        "/registered-models/alias",
        None,
        {"name": "{model}", "alias": "champion", "version": "1"},
    ),
    ("GET", "/registered-models/alias", {"name": "{model}", "alias": "champion"}, None),
    ("DELETE", "/registered-models/alias", None, {"name": "{model}", "alias": "champion"}),
    ("POST", "/registered-models/rename", None, {"name": "{model}", "new_name": "renamed"}),
    ("GET", "/model-versions/get", {"name": "{model}", "version": "1"}, None),
    ("GET", "/model-versions/search", {"filter": "name = '{model}'"}, None),
    ("GET", "/model-versions/get-download-uri", {"name": "{model}", "version": "1"}, None),
    (
        "PATCH",
        "/model-versions/update",
        None,
        {"name": "{model}", "version": "1", "description": "x"},
    ),
    (
        "POST",
        "/model-versions/set-tag",
        None,
        {"name": "{model}", "version": "1", "key": "k", "value": "v"},
    ),
    ("DELETE", "/model-versions/delete-tag", None, {"name": "{model}", "version": "1", "key": "k"}),
    (
        "POST",
        "/model-versions/transition-stage",
        None,
        {"name": "{model}", "version": "1", "stage": "Staging", "archive_existing_versions": False},
    ),
    (
        "POST",
        "/model-versions/create",
        None,
        {"name": "{model}", "source": "runs:/{run}/model.pt", "run_id": "{run}"},
    ),
    ("DELETE", "/model-versions/delete", None, {"name": "{model}", "version": "1"}),
    ("DELETE", "/registered-models/delete", None, {"name": "{model}"}),
]


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, real in names.items():
            value = value.replace("{" + key + "}", real)
        return value
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def _audit_count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


def _answer(r: httpx.Response) -> tuple[int, Any]:
    """What a client learns: the status, and the MLflow error code or the whole body."""
    try:
        body = r.json()
    except ValueError:
        return r.status_code, r.text
    if r.status_code >= 400 and isinstance(body, dict):
        return r.status_code, body.get("error_code")
    return r.status_code, body


@pytest.fixture
def other(world: World) -> httpx.Client:
    return world.client("other", "")


def test_mlflow_api_cannot_tell_an_unreadable_model_from_a_missing_one(
    world: World, perm_server: tuple[LiveServer, Database], other: httpx.Client
) -> None:
    _server, db = perm_server
    real = {
        "model": MODEL,
        "exp": world.experiment_id,
        "exp_name": EXPERIMENT,
        "run": run_to_mlflow(world.run_id),
    }
    ghost = {
        "model": GHOST_MODEL,
        "exp": "exp-" + "0" * 16,
        "exp_name": GHOST_EXPERIMENT,
        "run": "0" * 31 + "1",
    }
    before = _audit_count(db)
    wrong: list[str] = []
    for method, path, query, body in CALLS:
        answers = []
        for names in (real, ghost):
            r = other.request(
                method, MLFLOW + path, params=_fill(query, names), json=_fill(body, names)
            )
            answers.append(_answer(r))
        if answers[0] != answers[1]:
            wrong.append(f"{method} {path}: {answers[0]} but {answers[1]} for missing objects")
        elif 200 <= answers[0][0] < 300 and method != "GET" and "search" not in path:
            wrong.append(f"{method} {path}: {answers[0][0]} (allowed)")
        after = _audit_count(db)
        if after != before:
            wrong.append(f"{method} {path}: changed something (audit log {before} -> {after})")
            before = after
    # Proxied artifacts: listing, downloading and uploading under the run's artifact root.
    for names in (real,):
        root = f"{names['exp']}/{names['run']}/artifacts"
        missing = f"{ghost['exp']}/{ghost['run']}/artifacts"
        for method, a, b, content in (
            ("GET", f"{ARTIFACTS}?path={root}", f"{ARTIFACTS}?path={missing}", None),
            ("GET", f"{ARTIFACTS}/{root}/model.pt", f"{ARTIFACTS}/{missing}/model.pt", None),
            ("PUT", f"{ARTIFACTS}/{root}/x.txt", f"{ARTIFACTS}/{missing}/x.txt", b"x"),
        ):
            ra, rb = (other.request(method, u, content=content) for u in (a, b))
            if _answer(ra) != _answer(rb):
                wrong.append(f"{method} {a}: {_answer(ra)} but {_answer(rb)} for missing objects")
    assert not wrong, f"{len(wrong)} calls:\n" + "\n".join(wrong)
    assert _audit_count(db) == before
    # The owner still sees everything as it was.
    owner = world.client("owner")
    assert owner.get(f"/registered-models/{MODEL}").status_code == 200
    assert owner.get(f"/runs/{world.run_id}").status_code == 200

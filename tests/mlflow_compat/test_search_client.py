"""``search_runs`` and ``search_experiments`` in MLflow's grammar with the real client: each
feature compiles to SQL (experiment tags are JSON, read differently by each database; SQLite's
LIKE ignores case and MLflow's does not), so this runs on both databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN, LiveServer

SEED = """
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
c = MlflowClient()
exp = c.create_experiment("search")
other = c.create_experiment("search-other")
rows = [
    ("bert-a", "0.01", "nlp", 0.95, "FINISHED"),
    ("bert-b", "0.1", "NLP", 0.85, "FINISHED"),
    ("resnet", "0.01", "vision", 0.91, "FAILED"),
    ("gpt", "0.001", "nlp", None, "FINISHED"),
]
ids = {}
for i, (name, lr, team, acc, status) in enumerate(rows):
    r = c.create_run(exp, run_name=name, tags={"team": team}, start_time=1_000_000 + i)
    metrics = [] if acc is None else [Metric("acc", acc, 0, 0)]
    c.log_batch(r.info.run_id, metrics=metrics, params=[Param("lr", lr)])
    c.set_terminated(r.info.run_id, status)
    ids[name] = r.info.run_id
c.create_run(other, run_name="elsewhere")


def names(filter_string="", order_by=None, **kw):
    found = c.search_runs([exp], filter_string, order_by=order_by, **kw)
    return [r.info.run_name for r in found]
"""


def test_search_runs_grammar_order_and_pages(mlflow_json: Callable[..., Any]) -> None:
    out = mlflow_json(
        SEED
        + """
pages, token = [], None
while True:
    page = c.search_runs([exp], "", order_by=["attributes.run_name ASC"], max_results=3,
                         page_token=token)
    pages.append([r.info.run_name for r in page])
    token = page.token
    if not token:
        break
frame = mlflow.search_runs([exp], "metrics.acc > 0.9", order_by=["metrics.acc DESC"])
emit({
    "combined": names("metrics.acc > 0.9 and params.lr = '0.01' and tags.team = 'nlp'"),
    "metric_order": names("", ["metrics.acc DESC"]),
    "param_order": names("", ["params.lr ASC", "attributes.run_name DESC"]),
    "like": names("attributes.run_name LIKE 'bert%'", ["run_name"]),
    "like_case": names("tags.team LIKE 'nl%'", ["run_name"]),
    "ilike": names("tags.team ILIKE 'NL%'", ["run_name"]),
    "in": names("attributes.status IN ('FAILED')"),
    "not_in": names("tags.team NOT IN ('nlp', 'NLP')"),
    "run_id_in": names(f"attributes.run_id IN ('{ids['gpt']}', '{ids['resnet']}')", ["run_name"]),
    "no_metric": names("metrics.acc IS NULL"),
    "neq": names("params.lr != '0.01'", ["run_name"]),
    "status": names("attributes.status = 'FINISHED' and metrics.acc <= 0.9"),
    "start": names("attributes.start_time >= 1000002", ["start_time"]),
    "quoted": names('tags.`team` = "vision"'),
    "pages": pages,
    "frame": frame["tags.mlflow.runName"].tolist(),
    "all_exps": len(c.search_runs([exp, other])),
})
"""
    )
    assert out["combined"] == ["bert-a"]
    assert out["metric_order"] == ["bert-a", "resnet", "bert-b", "gpt"]  # no value: last
    assert out["param_order"] == ["gpt", "resnet", "bert-a", "bert-b"]
    assert out["like"] == ["bert-a", "bert-b"]
    assert out["like_case"] == ["bert-a", "gpt"]  # LIKE is case-sensitive on both databases
    assert out["ilike"] == ["bert-a", "bert-b", "gpt"]
    assert out["in"] == ["resnet"]
    assert out["not_in"] == ["resnet"]
    assert out["run_id_in"] == ["gpt", "resnet"]
    assert out["no_metric"] == ["gpt"]
    assert out["neq"] == ["bert-b", "gpt"]
    assert out["status"] == ["bert-b"]
    assert out["start"] == ["resnet", "gpt"]
    assert out["quoted"] == ["resnet"]
    assert out["pages"] == [["bert-a", "bert-b", "gpt"], ["resnet"]]
    assert out["frame"] == ["bert-a", "resnet"]
    assert out["all_exps"] == 5


def test_experiments_lifecycle_and_default_experiment(mlflow_json: Callable[..., Any]) -> None:
    out = mlflow_json(
        """
        import mlflow
        from mlflow import MlflowClient
        from mlflow.entities import ViewType
        c = MlflowClient()
        a = c.create_experiment("exp-a", tags={"team": "nlp", "mlflow.note.content": "about a"})
        b = c.create_experiment("exp-b")
        c.set_experiment_tag(b, "team", "vision")
        c.rename_experiment(b, "exp-b2")
        c.delete_experiment(a)
        deleted = [e.name for e in c.search_experiments(view_type=ViewType.DELETED_ONLY)]
        active = [e.name for e in c.search_experiments(filter_string="name LIKE 'exp-%'")]
        c.restore_experiment(a)
        # No experiment set: runs go to MLflow's default experiment "0".
        with mlflow.start_run() as r:
            pass
        ea = c.get_experiment(a)
        emit({
            "deleted": deleted, "active": active,
            "by_tag": [e.name for e in c.search_experiments(filter_string="tags.team = 'vision'")],
            "restored": ea.lifecycle_stage, "note": ea.tags.get("mlflow.note.content"),
            "default": r.info.experiment_id, "default_name": c.get_experiment("0").name,
            "page1": [e.name for e in c.search_experiments(max_results=1, order_by=["name ASC"])],
        })
        """
    )
    assert out["deleted"] == ["exp-a"]
    assert out["active"] == ["exp-b2"]
    assert out["by_tag"] == ["exp-b2"]
    assert out["restored"] == "active" and out["note"] == "about a"
    assert out["default"] == "0" and out["default_name"] == "Default"
    assert out["page1"] == ["Default"]


def test_bad_search_is_a_clear_400_in_mlflow_shape(live_server: LiveServer) -> None:
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as http:
        exp = http.post("/api/2.0/mlflow/experiments/create", json={"name": "s"}).json()
        cases = [
            ({"filter": "metrics.acc > 'x'"}, "must be compared with a number"),
            ({"filter": "metrics.acc > 1 or metrics.acc < 0"}, "OR is not supported"),
            ({"order_by": ["tags"]}, "unknown run attribute"),
            ({"max_results": 0}, "max_results must be between 1 and 50000"),
            ({"page_token": "garbage"}, "Invalid page_token"),
        ]
        for extra, fragment in cases:
            r = http.post(
                "/api/2.0/mlflow/runs/search",
                json={"experiment_ids": [exp["experiment_id"]], **extra},
            )
            assert r.status_code == 400, (extra, r.text)
            body = r.json()
            assert body["error_code"] == "INVALID_PARAMETER_VALUE", body
            assert fragment in body["message"], (fragment, body)
        r = http.post("/api/2.0/mlflow/runs/search", json={"experiment_ids": ["exp-missing"]})
        assert r.status_code == 404
        assert r.json() == {
            "error_code": "RESOURCE_DOES_NOT_EXIST",
            "message": "No Experiment with id=exp-missing exists",
        }

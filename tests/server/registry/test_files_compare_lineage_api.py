"""Version files (listing and verified download), comparison and lineage over REST."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session

from podstack.schemas.registry import LineageEdge, LineageNode
from podstack.server.registry import hooks
from podstack.server.registry import service as registry
from podstack.server.registry.views import higher_is_better
from tests.server.registry.helpers import error, make_run, new_version


def test_files_listing_and_download(api: httpx.Client) -> None:
    data = {"model/weights.bin": b"\x00\x01" * 5000, "model/config.json": b'{"a": 1}'}
    run = make_run(api, data)
    new_version(api, "files", run, "model")
    base = "/registered-models/files/versions/1/files"
    listing = api.get(base).json()
    assert listing == [
        {"path": "config.json", "size": 8, "sha256": hashlib.sha256(b'{"a": 1}').hexdigest()},
        {
            "path": "weights.bin",
            "size": 10000,
            "sha256": hashlib.sha256(data["model/weights.bin"]).hexdigest(),
        },
    ]
    r = api.get(base + "/weights.bin")
    assert r.status_code == 200
    assert r.content == data["model/weights.bin"]
    assert r.headers["content-length"] == "10000"
    assert r.headers["x-content-sha256"] == listing[1]["sha256"]
    assert r.headers["etag"] == f'"{listing[1]["sha256"]}"'
    r = api.get(base + "/weights.bin", headers={"If-None-Match": f'"{listing[1]["sha256"]}"'})
    assert r.status_code == 304
    error(api.get(base + "/nope.bin"), 404, "NOT_FOUND", "no file 'nope.bin'", "config.json")
    error(api.get(base + "/a//b"), 422, "VALIDATION_ERROR", "empty segment")


def test_higher_is_better_heuristics() -> None:
    for key in ["accuracy", "f1", "auc", "val_accuracy", "precision@5", "r2", "maestro_score"]:
        assert higher_is_better(key), key
    for key in [
        "loss",
        "val_loss",
        "train/loss",
        "error_rate",
        "mse",
        "val_mae",
        "rmse",
        "p95_latency_ms",
        "inference_time",
        "perplexity",
        "wer",
        "logloss",
    ]:
        assert not higher_is_better(key), key
    assert higher_is_better("loss", {"loss": True})
    assert not higher_is_better("accuracy", {"accuracy": False})


def _history(api: httpx.Client, run: str, key: str, values: list[float]) -> None:
    pts = [{"key": key, "value": v, "step": i} for i, v in enumerate(values)]
    api.post(f"/runs/{run}/metrics", json={"points": pts})


def test_compare_versions(api: httpx.Client) -> None:
    r1 = make_run(api, params={"lr": 0.01, "epochs": 10, "arch": "bert"}, finish=False)
    _history(api, r1, "accuracy", [0.5, 0.7, 0.8])
    _history(api, r1, "loss", [1.0, 0.6, 0.4])
    api.patch(f"/runs/{r1}", json={"status": "FINISHED"})
    r2 = make_run(api, params={"lr": 0.001, "epochs": 10, "warmup": 100}, finish=False)
    _history(api, r2, "accuracy", [0.6, 0.9])
    _history(api, r2, "loss", [0.9, 0.5])
    _history(api, r2, "custom_score", [3.0])
    api.patch(f"/runs/{r2}", json={"status": "FINISHED"})
    new_version(api, "cmp", r1)
    new_version(api, "cmp", r2)
    api.post("/registered-models/cmp/versions/1/metrics", json={"metrics": {"val_f1": 0.7}})
    api.post("/registered-models/cmp/versions/2/metrics", json={"metrics": {"val_f1": 0.75}})
    r = api.get("/registered-models/cmp/compare", params={"versions": "1, 2"})
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["baseline"] == 1 and [v["version"] for v in c["versions"]] == [1, 2]
    metrics = {(m["source"], m["key"]): m for m in c["metrics"]}
    acc = metrics[("training", "accuracy")]
    assert acc["values"] == {"1": 0.8, "2": 0.9} and acc["best_version"] == 2
    assert math.isclose(acc["differences"]["2"], 0.1) and acc["differences"]["1"] == 0
    loss = metrics[("training", "loss")]
    assert loss["higher_is_better"] is False and loss["best_version"] == 1  # 0.4 < 0.5
    custom = metrics[("training", "custom_score")]
    assert custom["values"] == {"1": None, "2": 3.0} and custom["differences"]["2"] is None
    assert metrics[("validation", "val_f1")]["best_version"] == 2
    changed = {p["key"]: p["values"] for p in c["changed_params"]}
    assert changed == {
        "lr": {"1": "0.01", "2": "0.001"},
        "arch": {"1": "bert", "2": None},
        "warmup": {"1": None, "2": "100"},
    }
    assert c["unchanged_params"] == {"epochs": "10"}
    assert c["histories"]["accuracy"]["1"] == {"steps": [0, 1, 2], "values": [0.5, 0.7, 0.8]}
    assert c["histories"]["loss"]["2"]["values"] == [0.9, 0.5]
    # Overrides, downsampling, URIs.
    r = api.get(
        "/registered-models/cmp/compare",
        params={"versions": "models:/cmp/2,1", "higher_is_better": "loss", "max_points": 2},
    )
    c = r.json()
    assert c["baseline"] == 2
    loss = next(m for m in c["metrics"] if m["key"] == "loss")
    assert loss["higher_is_better"] is True and loss["best_version"] == 2
    assert c["histories"]["accuracy"]["1"] == {"steps": [0, 2], "values": [0.5, 0.8]}


def test_compare_bad_input(api: httpx.Client) -> None:
    run = make_run(api)
    new_version(api, "cmpbad", run)
    error(
        api.get("/registered-models/cmpbad/compare", params={"versions": ""}),
        422,
        "VALIDATION_ERROR",
        "at least one",
    )
    error(
        api.get("/registered-models/cmpbad/compare", params={"versions": "1,x"}),
        422,
        "VALIDATION_ERROR",
        "positive integer",
    )
    error(
        api.get("/registered-models/cmpbad/compare", params={"versions": "1,5"}),
        404,
        "NOT_FOUND",
        "no version 5",
    )
    error(
        api.get("/registered-models/cmpbad/compare", params={"versions": "1", "max_points": 1}),
        422,
        "VALIDATION_ERROR",
        "max_points",
    )
    new_version(api, "elsewhere", run)
    error(
        api.get("/registered-models/cmpbad/compare", params={"versions": "1,models:/elsewhere/1"}),
        422,
        "VALIDATION_ERROR",
        "version of model 'elsewhere'",
    )


@pytest.fixture
def deployments_contributor() -> Iterator[None]:
    def contribute(s: Session, model, mv):  # type: ignore[no-untyped-def]
        node = LineageNode(
            id="deployment:sentiment-api",
            type="deployment",
            label="sentiment-api",
            data={"status": "ready"},
        )
        edge = LineageEdge(
            source=f"model_version:{model.name}/{mv.version}",
            target=node.id,
            relation="deployed_as",
        )
        return [node], [edge]

    registry.register_lineage_contributor(contribute)
    yield
    hooks.LINEAGE_CONTRIBUTORS.remove(contribute)


def test_lineage_graph(api: httpx.Client, deployments_contributor: None) -> None:
    base_run = make_run(api, experiment="pretrain", params={"lr": 0.1})
    new_version(api, "base", base_run)
    run = make_run(api, experiment="finetune", params={"lr": 0.001, "epochs": 3}, finish=False)
    api.post(
        f"/runs/{run}/datasets",
        json={
            "name": "reviews-v2",
            "digest": "sha256:abc",
            "source_uri": "s3://data/reviews",
            "context": "training",
        },
    )
    api.post(
        f"/runs/{run}/datasets", json={"name": "holdout", "digest": "d2", "context": "validation"}
    )
    api.patch(f"/runs/{run}", json={"status": "FINISHED"})
    new_version(api, "tuned", run, parent="models:/base/1")
    child_run = make_run(api)
    new_version(api, "distilled", child_run, parent="models:/tuned/latest")

    g = api.get("/registered-models/tuned/versions/1/lineage").json()
    nodes = {n["id"]: n for n in g["nodes"]}
    edges = {(e["source"], e["target"], e["relation"]) for e in g["edges"]}
    assert g["root"] == "model_version:tuned/1"
    exp = next(n for n in g["nodes"] if n["type"] == "experiment")
    assert exp["label"] == "finetune"
    assert nodes[f"run:{run}"]["type"] == "run"
    assert nodes[f"params:{run}"]["data"]["params"] == {"lr": "0.001", "epochs": "3"}
    datasets = [n for n in g["nodes"] if n["type"] == "dataset"]
    assert {(d["label"], d["data"]["digest"], d["data"]["context"]) for d in datasets} == {
        ("reviews-v2", "sha256:abc", "training"),
        ("holdout", "d2", "validation"),
    }
    assert (f"run:{run}", "model_version:tuned/1", "produced") in edges
    assert (exp["id"], f"run:{run}", "contains") in edges
    assert ("model_version:base/1", "model_version:tuned/1", "fine_tuned_into") in edges
    assert ("model_version:tuned/1", "model_version:distilled/1", "fine_tuned_into") in edges
    assert ("model_version:tuned/1", "deployment:sentiment-api", "deployed_as") in edges
    # The parent and child show up on the versions themselves too.
    assert api.get("/registered-models/tuned/versions/1").json()["parent"] == {
        "model_name": "base",
        "version": 1,
    }
    # Grand-parents are walked up the chain.
    g2 = api.get("/registered-models/distilled/versions/1/lineage").json()
    e2 = {(e["source"], e["target"]) for e in g2["edges"]}
    assert ("model_version:base/1", "model_version:tuned/1") in e2
    assert ("model_version:tuned/1", "model_version:distilled/1") in e2
    # Deleting the parent leaves the child without a parent (not a dangling link).
    api.delete("/registered-models/base/versions/1")
    assert api.get("/registered-models/tuned/versions/1").json()["parent"] is None

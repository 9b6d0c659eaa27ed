"""Model versions over REST: creation from run artifacts (file, directory, whole run),
immutable snapshots, numbering, run details, tags, validation metrics, deletion rules and
every bad input."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.server.registry.helpers import error, make_run, new_version, state, transition


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_version_from_a_file_shows_run_params_metrics_and_snapshot(api: httpx.Client) -> None:
    run = make_run(
        api,
        {"model.pt": b"weights", "other.txt": b"x"},
        params={"lr": 0.001, "epochs": 10},
        metrics={"accuracy": 0.94, "f1": 0.92},
    )
    api.post("/registered-models", json={"name": "sentiment-classifier"})
    v = new_version(
        api,
        "sentiment-classifier",
        run,
        "model.pt",
        description="Fine-tuned on customer reviews dataset",
        tags={"team": "nlp"},
        detail=True,
    )
    assert v["version"] == 1 and isinstance(v["version"], int)
    assert v["stage"] == "None"
    assert v["source_run_id"] == run and v["artifact_path"] == "model.pt"
    assert v["description"] == "Fine-tuned on customer reviews dataset"
    assert v["created_by"] == "admin"
    assert v["tags"] == {"team": "nlp"}
    assert v["files"] == [{"path": "model.pt", "size": 7, "sha256": _sha(b"weights")}]
    assert v["source_run"]["params"] == {"lr": "0.001", "epochs": "10"}
    assert v["source_run"]["metrics"] == {"accuracy": 0.94, "f1": 0.92}
    assert v["source_run"]["experiment_name"] == "registry-exp"
    assert v["source_run"]["status"] == "FINISHED"
    assert api.get("/registered-models/sentiment-classifier/versions/1").json() == v
    # Lists carry the summary only.
    listed = api.get("/registered-models/sentiment-classifier/versions").json()["items"]
    assert listed[0]["files"] is None and listed[0]["source_run"] is None


def test_create_answers_the_lean_view_unless_detail_is_asked(api: httpx.Client) -> None:
    run = make_run(api, {"model.pt": b"weights"}, params={"lr": 0.1}, metrics={"acc": 0.9})
    base = new_version(api, "base-model", run)
    lean = new_version(
        api,
        "lean-model",  # auto-registered
        run,
        description="d",
        tags={"team": "nlp", "b": "2"},
        parent="models:/base-model/1",
    )
    # What list entries carry, built without reading the version back: the same as a read.
    assert lean["files"] is None and lean["source_run"] is None
    assert lean["tags"] == {"team": "nlp", "b": "2"} and lean["parent"] == {
        "model_name": "base-model",
        "version": 1,
    }
    assert lean["validation_metrics"] == {} and lean["aliases"] == []
    listed = api.get("/registered-models/lean-model/versions").json()["items"]
    assert listed == [lean]
    full = api.get("/registered-models/lean-model/versions/1").json()
    assert full | {"files": None, "source_run": None} == lean
    assert full["files"] == [{"path": "model.pt", "size": 7, "sha256": _sha(b"weights")}]
    assert full["source_run"]["params"] == {"lr": "0.1"}
    assert base["files"] is None and base["version"] == 1
    detailed = new_version(api, "lean-model", run, detail=True)
    assert detailed["version"] == 2 and detailed["files"] == full["files"]
    assert detailed["source_run"] == full["source_run"]
    assert api.get("/registered-models/lean-model/versions/2").json() == detailed


@pytest.mark.parametrize("bad", ["maybe", "2", ""])
def test_detail_must_be_a_boolean(api: httpx.Client, bad: str) -> None:
    run = make_run(api, {"model.pt": b"weights"})
    new_version(api, "detail-model", run)
    api.put(
        "/registered-models/detail-model/aliases/champion", json={"version": 1}
    ).raise_for_status()
    before = state(api)
    r = api.post(
        "/registered-models/detail-model/versions",
        params={"detail": bad},
        json={"source_run_id": run, "artifact_path": "model.pt"},
    )
    error(r, 422, "VALIDATION_ERROR", "detail")
    assert state(api) == before  # no version 2
    r = api.get("/registered-models/detail-model/aliases/champion", params={"detail": bad})
    error(r, 422, "VALIDATION_ERROR", "detail")


def test_directory_and_whole_run_artifacts(api: httpx.Client) -> None:
    files = {
        "checkpoints/best_model.pt": b"best",
        "checkpoints/config/params.json": b"{}",
        "checkpoints2/x": b"not me",
        "README": b"r",
    }
    run = make_run(api, files)
    v = new_version(api, "dir-model", run, "checkpoints/", detail=True)
    assert v["artifact_path"] == "checkpoints"
    assert [f["path"] for f in v["files"]] == ["best_model.pt", "config/params.json"]
    single = new_version(api, "dir-model", run, "checkpoints/best_model.pt", detail=True)
    assert [f["path"] for f in single["files"]] == ["best_model.pt"]
    whole = new_version(api, "dir-model", run, "", detail=True)
    assert sorted(f["path"] for f in whole["files"]) == sorted(files)


def test_snapshot_is_immutable_when_the_run_changes(api: httpx.Client) -> None:
    run = make_run(api, {"model.pt": b"v1"}, finish=False)
    v = new_version(api, "snap", run, detail=True)
    # The run is still RUNNING, so its artifact can be overwritten — the version must not move.
    assert api.put(f"/runs/{run}/artifacts/model.pt", content=b"v2-changed").status_code == 201
    assert api.put(f"/runs/{run}/artifacts/extra.bin", content=b"new").status_code == 201
    again = api.get("/registered-models/snap/versions/1").json()
    assert again["files"] == v["files"] == [{"path": "model.pt", "size": 2, "sha256": _sha(b"v1")}]
    r = api.get("/registered-models/snap/versions/1/files/model.pt")
    assert r.content == b"v1" and r.headers["x-content-sha256"] == _sha(b"v1")


def test_numbers_are_sequential_and_never_reused(api: httpx.Client) -> None:
    run = make_run(api)
    assert [new_version(api, "seq", run)["version"] for _ in range(3)] == [1, 2, 3]
    assert api.delete("/registered-models/seq/versions/3").status_code == 204
    assert new_version(api, "seq", run)["version"] == 4
    assert api.delete("/registered-models/seq/versions/1").status_code == 204
    versions = api.get("/registered-models/seq/versions").json()["items"]
    assert [v["version"] for v in versions] == [4, 2]  # newest first


def test_create_version_auto_registers_the_model(api: httpx.Client) -> None:
    run = make_run(api)
    v = new_version(api, "brand-new", run)
    assert v["version"] == 1
    m = api.get("/registered-models/brand-new").json()
    assert m["latest_version"]["version"] == 1 and m["created_by"] == "admin"


def test_list_filter_and_pagination(api: httpx.Client) -> None:
    run = make_run(api)
    for _ in range(5):
        new_version(api, "pages", run)
    transition(api, "pages", 2, "staging")
    transition(api, "pages", 4, "Staging")
    r = api.get("/registered-models/pages/versions", params={"stage": "STAGING"})
    assert [v["version"] for v in r.json()["items"]] == [4, 2]
    seen, token = [], None
    while True:
        params: dict = {"limit": 2}
        if token:
            params["page_token"] = token
        page = api.get("/registered-models/pages/versions", params=params).json()
        seen += [v["version"] for v in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == [5, 4, 3, 2, 1]


def test_update_tags_and_validation_metrics(api: httpx.Client) -> None:
    run = make_run(api, metrics={"accuracy": 0.9})
    new_version(api, "tagged", run)
    base = "/registered-models/tagged/versions/1"
    r = api.patch(base, json={"description": "validated"})
    assert r.status_code == 200 and r.json()["description"] == "validated"
    assert (
        api.post(base + "/tags", json={"key": "validated_by", "value": "ml-team"}).status_code
        == 204
    )
    assert api.post(base + "/tags", json={"key": "validated_by", "value": "qa"}).status_code == 204
    assert api.get(base).json()["tags"] == {"validated_by": "qa"}
    assert api.delete(base + "/tags/validated_by").status_code == 204
    error(api.delete(base + "/tags/validated_by"), 404, "NOT_FOUND", "no tag")
    r = api.post(base + "/metrics", json={"metrics": {"val_accuracy": 0.93, "val_loss": "NaN"}})
    assert r.status_code == 200, r.text
    got = api.get(base).json()
    assert got["validation_metrics"]["val_accuracy"] == 0.93
    assert got["validation_metrics"]["val_loss"] == "NaN"
    assert got["source_run"]["metrics"] == {"accuracy": 0.9}  # the run's stay separate
    api.post(base + "/metrics", json={"metrics": {"val_accuracy": 0.95}})
    assert api.get(base).json()["validation_metrics"]["val_accuracy"] == 0.95


def test_deleting_a_production_version_is_refused(api: httpx.Client) -> None:
    run = make_run(api)
    new_version(api, "prod-model", run)
    transition(api, "prod-model", 1, "Production")
    before = state(api)
    error(
        api.delete("/registered-models/prod-model/versions/1"),
        409,
        "CONFLICT",
        "Production",
        "Archived first",
    )
    assert state(api) == before
    transition(api, "prod-model", 1, "Archived")
    assert api.delete("/registered-models/prod-model/versions/1").status_code == 204


def test_runs_backing_versions_cannot_be_deleted(api: httpx.Client) -> None:
    run = make_run(api)
    new_version(api, "backed", run)
    error(api.delete(f"/runs/{run}"), 409, "CONFLICT", "backed v1", "delete those versions")
    exp = api.get(f"/runs/{run}").json()["experiment_id"]
    error(api.delete(f"/experiments/{exp}"), 409, "CONFLICT", "backed v1")
    assert api.get(f"/runs/{run}").status_code == 200
    api.delete("/registered-models/backed/versions/1")
    assert api.delete(f"/runs/{run}").status_code == 204


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "1.5", "²", "99999999999", "Production"])
def test_version_must_be_a_positive_integer(api: httpx.Client, bad: str) -> None:
    run = make_run(api)
    new_version(api, "numbers", run)
    before = state(api)
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"description": "x"}),
        ("DELETE", "", None),
        ("POST", "/stage", {"stage": "Staging"}),
        ("POST", "/tags", {"key": "k", "value": "v"}),
    ]:
        r = api.request(method, f"/registered-models/numbers/versions/{bad}{suffix}", json=body)
        error(r, 422, "VALIDATION_ERROR", "positive integer")
    assert state(api) == before


def test_unknown_version_is_404(api: httpx.Client) -> None:
    run = make_run(api)
    new_version(api, "few", run)
    error(
        api.get("/registered-models/few/versions/7"),
        404,
        "NOT_FOUND",
        "no version 7",
        "highest version is 1",
    )
    error(api.delete("/registered-models/few/versions/7"), 404, "NOT_FOUND")


def test_unknown_run_or_artifact_path(api: httpx.Client) -> None:
    run = make_run(api, {"model.pt": b"w"})
    api.post("/registered-models", json={"name": "strict"})
    before = state(api)
    cases = [
        (
            {"source_run_id": "run-doesnotexist", "artifact_path": "model.pt"},
            404,
            "NOT_FOUND",
            "run-doesnotexist",
        ),
        ({"source_run_id": run, "artifact_path": "missing.pt"}, 404, "NOT_FOUND", "model.pt"),
        ({"source_run_id": run, "artifact_path": "../etc/passwd"}, 422, "VALIDATION_ERROR", ".."),
        ({"source_run_id": run, "artifact_path": "/abs"}, 422, "VALIDATION_ERROR", "absolute"),
        (
            {"source_run_id": run, "artifact_path": "model.pt", "tags": ["a"]},
            422,
            "VALIDATION_ERROR",
            "tags",
        ),
        (
            {"source_run_id": run, "artifact_path": "model.pt", "parent": "models:/nope/1"},
            404,
            "NOT_FOUND",
            "nope",
        ),
        (
            {"source_run_id": run, "artifact_path": "model.pt", "parent": "nope/1"},
            422,
            "VALIDATION_ERROR",
            "models:/",
        ),
    ]
    for body, status, code, needle in cases:
        error(api.post("/registered-models/strict/versions", json=body), status, code, needle)
    # Nothing registered for a model that did not exist either (no auto-registration on failure).
    error(api.post("/registered-models/newbie/versions", json=cases[1][0]), 404, "NOT_FOUND")
    error(
        api.post(
            "/registered-models/bad name/versions",
            json={"source_run_id": run, "artifact_path": "model.pt"},
        ),
        422,
        "VALIDATION_ERROR",
        "invalid model name",
    )
    assert state(api) == before
    assert api.get("/registered-models/strict").json()["latest_version"] is None
    # The failed attempts did not consume version numbers.
    assert new_version(api, "strict", run)["version"] == 1


def test_empty_run_artifacts(api: httpx.Client) -> None:
    run = make_run(api, {})
    error(
        api.post(
            "/registered-models/empty/versions", json={"source_run_id": run, "artifact_path": ""}
        ),
        404,
        "NOT_FOUND",
        "no artifacts",
    )

"""The registry through the SDK, on both backends (embedded and a live server): typed
results, models:/ references wherever a version is taken, downloads, compare, lineage and
typed errors."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from podstack import MLOpsClient
from podstack.errors import Conflict, NotFound, ValidationFailed
from podstack.schemas.registry import ModelVersion, RegisteredModel


def _run(client: MLOpsClient, tmp: Path, files: dict[str, bytes], **metrics: float) -> str:
    src = tmp / f"src-{time.monotonic_ns()}"
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    with client.start_run(experiment_id="sdk-registry") as run:
        run.log_params({"lr": 0.01})
        if metrics:
            run.log_metrics(metrics)
        run.log_artifacts(str(src))  # the directory's contents, at the run's root
    return run.id


def test_full_flow_typed(client: MLOpsClient, tmp_path: Path) -> None:
    m = client.register_model("sdk-model", "desc", tags=("nlp", "sentiment"))
    assert isinstance(m, RegisteredModel) and m.tags == ["nlp", "sentiment"] == m.labels
    run_id = _run(client, tmp_path, {"model.pt": b"w1"}, accuracy=0.9)
    v = client.create_model_version("sdk-model", run_id, "model.pt", tags={"n": 1})
    assert isinstance(v, ModelVersion)
    assert v.version == 1 and isinstance(v.version, int) and v.tags == {"n": "1"}
    assert v.uri == "models:/sdk-model/1" and v.run_id == run_id
    assert v.source_run is None and v.files is None  # lean unless detail=True
    v2 = client.create_model_version("sdk-model", run_id, "model.pt", parent=v, detail=True)
    assert v2.version == 2 and v2.parent is not None and v2.parent.version == 1
    assert v2.source_run is not None and v2.source_run.metrics == {"accuracy": 0.9}

    assert client.transition_model_version_stage("sdk-model", 1, "staging").stage == "Staging"
    v = client.transition_model_version_stage(
        "sdk-model", 2, "production", note="go", archive_existing=True
    )
    assert v.stage == "Production" and v.pending_request is None
    hist = client.get_model_version_stage_history("sdk-model", 2)
    assert [(t.from_stage, t.to_stage, t.note) for t in hist] == [("None", "Production", "go")]
    assert client.get_model_version_by_stage("sdk-model", "Production").version == 2

    client.set_model_version_tag("sdk-model", 2, "validated_by", "ml-team")
    client.log_model_version_metrics("sdk-model", 2, {"val_acc": 0.95, "val_loss": float("nan")})
    got = client.get_model_version("sdk-model", 2)
    assert got.tags == {"validated_by": "ml-team"}
    assert got.validation_metrics["val_acc"] == 0.95
    assert got.validation_metrics["val_loss"] != got.validation_metrics["val_loss"]  # NaN
    client.delete_model_version_tag("sdk-model", 2, "validated_by")
    assert client.update_model_version("sdk-model", 2, description="d2").description == "d2"

    models = client.search_registered_models(query="sdk", stage="production", labels=["nlp"])
    assert [x.name for x in models] == ["sdk-model"] and models.next_page_token is None
    assert models[0].production_version is not None
    assert models[0].production_version.version == 2
    assert [x.version for x in client.list_model_versions("sdk-model")] == [2, 1]
    assert [x.version for x in client.list_model_versions("sdk-model", stage="Staging")] == [1]
    upd = client.update_registered_model("sdk-model", tags=["x"])
    assert upd.tags == ["x"] and upd.description == "desc"
    assert [e.type for e in client.get_model_history("sdk-model")] == ["stage", "stage"]


def test_models_uris_work_wherever_a_version_is_taken(client: MLOpsClient, tmp_path: Path) -> None:
    run_id = _run(client, tmp_path, {"model.pt": b"w"})
    for _ in range(3):
        client.create_model_version("uri-model", run_id, "model.pt")
    client.transition_model_version_stage("uri-model", 2, "Production")
    client.set_model_alias("uri-model", "champion", "models:/uri-model/Production")
    assert client.get_model_by_alias("uri-model", "champion").version == 2
    assert client.get_model_version("uri-model", "models:/uri-model@champion").version == 2
    assert client.get_model_version("models:/uri-model/latest").version == 3
    assert client.get_model_version("uri-model", "3").version == 3
    assert client.resolve_model_uri("models:/uri-model@v1").version == 1
    client.set_model_version_tag("uri-model", "models:/uri-model/Production", "k", "v")
    assert client.get_model_version("uri-model", 2).tags == {"k": "v"}
    v = client.transition_model_version_stage("models:/uri-model/3", None, "Staging")
    assert (v.version, v.stage) == (3, "Staging")
    g = client.get_model_version_lineage("models:/uri-model@champion")
    assert g.root == "model_version:uri-model/2"
    client.register_model("other")
    with pytest.raises(ValidationFailed, match="version of model 'uri-model'"):
        client.get_model_version("other", "models:/uri-model/1")
    with pytest.raises(ValidationFailed, match="positive integer"):
        client.get_model_version("uri-model", 0)
    with pytest.raises(NotFound, match="no alias"):
        client.get_model_version("uri-model", "models:/uri-model@nope")


def test_alias_and_create_are_lean_unless_detail(client: MLOpsClient, tmp_path: Path) -> None:
    run_id = _run(client, tmp_path, {"model.pt": b"w1"}, accuracy=0.5)
    v = client.create_model_version("lean-sdk", run_id, "model.pt", tags={"k": "v"})
    assert (v.version, v.tags, v.aliases) == (1, {"k": "v"}, [])
    assert v.files is None and v.source_run is None
    full = client.create_model_version("lean-sdk", run_id, "model.pt", detail=True)
    assert full.version == 2 and [f.path for f in full.files or []] == ["model.pt"]
    assert full.source_run is not None and full.source_run.metrics == {"accuracy": 0.5}
    client.set_model_alias("lean-sdk", "champion", 1)
    client.log_model_version_metrics("lean-sdk", 1, {"val_acc": 0.8})
    got = client.get_model_by_alias("lean-sdk", "champion")
    assert (got.version, got.tags, got.aliases) == (1, {"k": "v"}, ["champion"])
    assert got.validation_metrics == {"val_acc": 0.8}
    assert got.files is None and got.source_run is None
    detailed = client.get_model_by_alias("lean-sdk", "champion", detail=True)
    assert detailed == client.get_model_version("lean-sdk", 1)
    assert detailed.model_copy(update={"files": None, "source_run": None}) == got
    assert detailed.source_run is not None and detailed.source_run.id == run_id
    # Reserved aliases and past dates take the same switch.
    assert client.get_model_by_alias("lean-sdk", "latest").files is None
    assert client.get_model_by_alias("lean-sdk", "v2", detail=True).files == full.files
    with pytest.raises(NotFound, match="no alias 'nope'"):
        client.get_model_by_alias("lean-sdk", "nope")
    with pytest.raises(NotFound, match="'missing-model' does not exist"):
        client.get_model_by_alias("missing-model", "champion")


def test_aliases_history_and_rollback(client: MLOpsClient, tmp_path: Path) -> None:
    run_id = _run(client, tmp_path, {"model.pt": b"w"})
    for _ in range(2):
        client.create_model_version("alias-model", run_id, "model.pt")
    a = client.set_model_alias("alias-model", "latest-prod", 1)
    assert (a.alias, a.version) == ("latest-prod", 1)
    time.sleep(0.02)
    between = datetime.now(UTC)
    time.sleep(0.02)
    client.set_model_alias("alias-model", "latest-prod", 2)
    assert client.get_model_by_alias("alias-model", "latest-prod").version == 2
    assert client.get_model_by_alias("alias-model", "latest-prod", at=between).version == 1
    # A naive datetime is the caller's local time.
    local_naive = between.astimezone().replace(tzinfo=None)
    assert client.get_model_by_alias("alias-model", "latest-prod", at=local_naive).version == 1
    assert [(x.alias, x.version) for x in client.list_model_aliases("alias-model")] == [
        ("latest-prod", 2)
    ]
    assert client.rollback_model_alias("alias-model", "latest-prod").version == 1
    client.delete_model_alias("alias-model", "latest-prod")
    assert client.list_model_aliases("alias-model") == []
    with pytest.raises(ValidationFailed, match="reserved"):
        client.set_model_alias("alias-model", "latest", 1)


def test_download_selected_and_all_files(client: MLOpsClient, tmp_path: Path) -> None:
    files = {
        "model/weights.bin": os.urandom(200_000),
        "model/config.json": b"{}",
        "model/tokenizer/vocab.txt": b"a\nb\n",
    }
    run_id = _run(client, tmp_path, files)
    v = client.create_model_version("dl-model", run_id, "model")
    dest = tmp_path / "out"
    out = client.download_model_version("dl-model", v.version, dest)
    assert out == str(dest)
    for rel, data in files.items():
        assert (dest / rel.removeprefix("model/")).read_bytes() == data
    assert not list(dest.rglob("*.part"))
    # Already present with the right digest: skipped (mtime untouched).
    weights = dest / "weights.bin"
    before = weights.stat().st_mtime_ns
    time.sleep(0.01)
    client.download_model_version("dl-model", "models:/dl-model/latest", dest)
    assert weights.stat().st_mtime_ns == before
    # A corrupted local copy is replaced.
    weights.write_bytes(b"tampered")
    client.download_model_version("dl-model", 1, dest)
    assert (
        hashlib.sha256(weights.read_bytes()).digest()
        == hashlib.sha256(files["model/weights.bin"]).digest()
    )
    # Only some paths (a file and a directory).
    sel = tmp_path / "sel"
    client.download_model_version("dl-model", 1, sel, paths=["config.json", "tokenizer"])
    assert sorted(str(p.relative_to(sel)) for p in sel.rglob("*") if p.is_file()) == [
        "config.json",
        "tokenizer/vocab.txt",
    ]
    with pytest.raises(NotFound, match="no file or directory 'nope'"):
        client.download_model_version("dl-model", 1, sel, paths=["nope"])


def test_compare_and_errors_are_typed(client: MLOpsClient, tmp_path: Path) -> None:
    r1 = _run(client, tmp_path, {"m.pt": b"1"}, accuracy=0.8, loss=0.5)
    r2 = _run(client, tmp_path, {"m.pt": b"2"}, accuracy=0.85, loss=0.6)
    client.create_model_version("cmp-sdk", r1, "")
    client.create_model_version("cmp-sdk", r2, "")
    c = client.compare_model_versions("cmp-sdk", [1, 2])
    by_key = {m.key: m for m in c.metrics}
    assert by_key["accuracy"].best_version == 2 and by_key["loss"].best_version == 1
    assert c.histories["accuracy"][1].values == [0.8]
    c = client.compare_model_versions("cmp-sdk", [1, "models:/cmp-sdk/2"], {"loss": True})
    assert {m.key: m.best_version for m in c.metrics}["loss"] == 2

    client.transition_model_version_stage("cmp-sdk", 1, "Production")
    with pytest.raises(Conflict, match="Archived first"):
        client.delete_model_version("cmp-sdk", 1)
    with pytest.raises(Conflict, match="Production"):
        client.delete_registered_model("cmp-sdk")
    with pytest.raises(Conflict, match="already exists"):
        client.register_model("cmp-sdk")
    with pytest.raises(ValidationFailed, match="Unknown stage"):
        client.transition_model_version_stage("cmp-sdk", 2, "Live")
    with pytest.raises(NotFound):
        client.get_registered_model("nope")
    with pytest.raises(ValidationFailed, match="Invalid model name"):
        client.register_model("bad name")
    client.transition_model_version_stage("cmp-sdk", 1, "Archived")
    client.delete_registered_model("cmp-sdk")
    assert client.list_registered_models() == []


def test_list_registered_models_follows_pages(client: MLOpsClient) -> None:
    for i in range(12):
        client.register_model(f"page-{i:02d}")
    page = client.search_registered_models(max_results=5)
    assert len(page) == 5 and page.next_page_token
    nxt = client.search_registered_models(max_results=5, page_token=page.next_page_token)
    assert nxt[0].name == "page-05"
    assert len(client.list_registered_models()) == 12
    assert len(client.list_registered_models(max_results=7)) == 7
    assert client.list_registered_models(order_by="updated")[0].name == "page-11"

"""The unmodified MLflow 3.17 client (its own venv) against a live Podstack server: the fluent
tracking API, log_batch, tags, nested runs, run status on exceptions, artifacts of each kind,
MLflow 3 logged models and sklearn autologging -- and the same data through Podstack's SDK.

The database plays no part in what these check (the tracking service is tested on both under
tests/server/tracking): SQLite pass only. Search, whose grammar compiles to SQL, runs on both
(test_search_client.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from podstack import MLOpsClient
from podstack.server.mlflow_compat import ids
from tests.conftest import ADMIN_TOKEN, LiveServer

pytestmark = pytest.mark.one_db


@pytest.fixture
def sdk(live_server: LiveServer) -> Iterator[MLOpsClient]:
    """Podstack's own SDK over HTTP to the same server (what the UI and CLI also read)."""
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url)
    yield c
    c.close()


def test_fluent_api_nested_runs_batch_and_status(
    mlflow_json: Callable[..., Any], sdk: MLOpsClient
) -> None:
    out = mlflow_json(
        """
        import time
        import mlflow
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param, RunTag

        exp_id = mlflow.set_experiment("fluent").experiment_id
        t0 = int(time.time() * 1000) - 60_000
        with mlflow.start_run(run_name="parent") as parent:
            mlflow.log_param("lr", 0.01)
            mlflow.log_params({"layers": 3, "opt": "adam"})
            mlflow.log_metric("loss", 0.9, step=0, timestamp=t0)
            mlflow.log_metric("loss", 0.5, step=1, timestamp=t0 + 1000)
            mlflow.log_metrics({"loss": 0.2, "acc": 0.93}, step=2)
            mlflow.set_tag("team", "nlp")
            mlflow.set_tags({"stage": "dev", "owner": "ana"})
            with mlflow.start_run(run_name="child", nested=True) as child:
                mlflow.log_metric("child_metric", 1.0)
            client = MlflowClient()
            client.log_batch(
                parent.info.run_id,
                metrics=[Metric("b", float(i), t0 + i, i) for i in range(5)],
                params=[Param("batch_param", "x")],
                tags=[RunTag("batch_tag", "y")],
            )
        client.delete_tag(parent.info.run_id, "owner")  # tags may change after the end
        try:
            client.log_metric(parent.info.run_id, "late", 1.0)
            late = None
        except mlflow.exceptions.RestException as exc:
            late = [exc.error_code, exc.message]
        try:
            with mlflow.start_run(run_name="boom") as failed:
                raise ValueError("training diverged")
        except ValueError:
            pass
        history = client.get_metric_history(parent.info.run_id, "loss")
        p = client.get_run(parent.info.run_id)
        c = client.get_run(child.info.run_id)
        emit({
            "exp_id": exp_id,
            "parent": p.info.run_id,
            "child": c.info.run_id,
            "child_parent_tag": c.data.tags.get("mlflow.parentRunId"),
            "failed": client.get_run(failed.info.run_id).info.status,
            "status": p.info.status,
            "params": p.data.params,
            "metrics": p.data.metrics,
            "tags": p.data.tags,
            "history": [(m.step, m.value, m.timestamp) for m in history],
            "artifact_uri": p.info.artifact_uri,
            "t0": t0,
            "name": p.info.run_name,
            "late": late,
        })
        """
    )
    assert len(out["parent"]) == 32 and out["child_parent_tag"] == out["parent"]
    assert out["status"] == "FINISHED" and out["failed"] == "FAILED"
    assert out["params"] == {
        "lr": "0.01",
        "layers": "3",
        "opt": "adam",
        "batch_param": "x",
    }
    assert out["metrics"]["loss"] == 0.2 and out["metrics"]["b"] == 4.0
    assert out["tags"]["team"] == "nlp" and "owner" not in out["tags"]
    # Podstack's rule: nothing more is logged to a finished run (MLflow would accept it).
    assert out["late"][0] == "RESOURCE_CONFLICT" and "FINISHED" in out["late"][1]
    assert [h[:2] for h in out["history"]] == [[0, 0.9], [1, 0.5], [2, 0.2]]
    assert out["history"][0][2] == out["t0"]
    assert out["artifact_uri"] == (f"mlflow-artifacts:/{out['exp_id']}/{out['parent']}/artifacts")
    # The same run, through Podstack's SDK: one store.
    run = sdk.get_run(ids.run_from_mlflow(out["parent"]))
    assert run.id == ids.run_from_mlflow(out["parent"]) and run.name == "parent"
    assert run.experiment_id == out["exp_id"]
    assert run.params == out["params"] and run.tags["batch_tag"] == "y"
    assert [p.value for p in sdk.get_metric_history(run.id, "b")] == [0, 1, 2, 3, 4]
    assert sdk.get_experiment(out["exp_id"]).name == "fluent"


def test_what_the_sdk_writes_shows_to_mlflow(
    mlflow_json: Callable[..., Any], sdk: MLOpsClient
) -> None:
    with sdk.start_run("from-sdk", run_name="sdk-run", tags={"team": "vision"}) as run:
        run.log_params({"lr": "0.1"})
        run.log_metrics({"acc": 0.7}, step=3)
    run_id = run.info.id
    out = mlflow_json(
        f"""
        from mlflow import MlflowClient
        c = MlflowClient()
        r = c.get_run("{ids.run_to_mlflow(run_id)}")
        exp = c.get_experiment_by_name("from-sdk")
        emit({{"name": r.info.run_name, "params": r.data.params, "metrics": r.data.metrics,
              "team": r.data.tags.get("team"), "status": r.info.status,
              "exp": exp.experiment_id, "runs": len(c.search_runs([exp.experiment_id]))}})
        """
    )
    assert out == {
        "name": "sdk-run",
        "params": {"lr": "0.1"},
        "metrics": {"acc": 0.7},
        "team": "vision",
        "status": "FINISHED",
        "exp": sdk.get_experiment("from-sdk").id,
        "runs": 1,
    }


def test_artifacts_of_each_kind_round_trip_and_are_sha256_addressed(
    mlflow_json: Callable[..., Any], sdk: MLOpsClient
) -> None:
    out = mlflow_json(
        """
        import os, tempfile
        import mlflow
        import matplotlib.pyplot as plt
        from mlflow import MlflowClient
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "a.txt"), "w") as f:
            f.write("hello")
        os.makedirs(os.path.join(d, "sub"))
        with open(os.path.join(d, "sub", "b.bin"), "wb") as f:
            # 2 MB: above the server's JSON body limit (1 MB in tests), within the artifact one.
            f.write(bytes(range(256)) * 8000)
        mlflow.set_experiment("artifacts")
        with mlflow.start_run() as run:
            mlflow.log_artifact(os.path.join(d, "a.txt"))
            mlflow.log_artifacts(d, artifact_path="dir")
            mlflow.log_text("some text", "notes/t.txt")
            mlflow.log_dict({"k": 1}, "cfg.json")
            fig, ax = plt.subplots()
            ax.plot([1, 2, 3])
            mlflow.log_figure(fig, "plots/fig.png")
        c = MlflowClient()
        rid = run.info.run_id
        top = [(f.path, f.is_dir, f.file_size) for f in c.list_artifacts(rid)]
        sub = [(f.path, f.is_dir, f.file_size) for f in c.list_artifacts(rid, "dir")]
        local = mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="dir")
        with open(os.path.join(local, "sub", "b.bin"), "rb") as f:
            same = f.read() == bytes(range(256)) * 8000
        emit({
            "run": rid, "top": top, "sub": sub, "same": same,
            "text": mlflow.artifacts.load_text(f"runs:/{rid}/notes/t.txt"),
            "dict": mlflow.artifacts.load_dict(f"runs:/{rid}/cfg.json"),
        })
        """
    )
    assert out["top"] == [
        ["a.txt", False, 5],
        ["cfg.json", False, 12],
        ["dir", True, None],
        ["notes", True, None],
        ["plots", True, None],
    ]
    assert out["sub"] == [["dir/a.txt", False, 5], ["dir/sub", True, None]]
    assert out["same"] is True
    assert out["text"] == "some text" and out["dict"] == {"k": 1}
    # Stored as run artifacts, content-addressed: the SDK sees the same files and digests.
    run_id = ids.run_from_mlflow(out["run"])
    files = {e.path: e for e in sdk.list_artifacts(run_id, recursive=True)}
    assert set(files) == {
        "a.txt",
        "cfg.json",
        "dir/a.txt",
        "dir/sub/b.bin",
        "notes/t.txt",
        "plots/fig.png",
    }
    assert files["a.txt"].sha256 == hashlib.sha256(b"hello").hexdigest()
    assert files["dir/sub/b.bin"].sha256 == hashlib.sha256(bytes(range(256)) * 8000).hexdigest()


def test_logged_model_with_signature_loads_back_and_autolog(
    mlflow_json: Callable[..., Any], sdk: MLOpsClient
) -> None:
    out = mlflow_json(
        """
        import mlflow
        import numpy as np
        from mlflow import MlflowClient
        from mlflow.models import infer_signature
        from sklearn.linear_model import LogisticRegression

        X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.8], [0.9, 0.1]])
        y = np.array([0, 1, 0, 1])
        mlflow.set_experiment("models")
        with mlflow.start_run() as run:
            clf = LogisticRegression().fit(X, y)
            info = mlflow.sklearn.log_model(
                clf, name="model", signature=infer_signature(X, clf.predict(X)),
                input_example=X[:2], pip_requirements=["scikit-learn"],
            )
        by_model = mlflow.pyfunc.load_model(info.model_uri)
        by_run = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model")
        c = MlflowClient()
        lm = c.get_logged_model(info.model_id)
        listed = sorted(a.path for a in mlflow.artifacts.list_artifacts(
            f"runs:/{run.info.run_id}/model"))
        run_listing = [a.path for a in c.list_artifacts(run.info.run_id)]

        mlflow.sklearn.autolog()
        with mlflow.start_run() as auto:
            LogisticRegression(C=0.5).fit(X, y)
        a = c.get_run(auto.info.run_id)
        auto_models = c.search_logged_models(
            experiment_ids=[a.info.experiment_id],
            filter_string=f"source_run_id = '{auto.info.run_id}'",
        )
        emit({
            "run": run.info.run_id, "model_id": info.model_id, "uri": info.model_uri,
            "pred_model": by_model.predict(X).tolist(), "pred_run": by_run.predict(X).tolist(),
            "expected": clf.predict(X).tolist(),
            "status": str(lm.status), "source_run": lm.source_run_id,
            "signature": by_model.metadata.get_input_schema().to_dict(),
            "listed": listed, "run_listing": run_listing,
            "auto_params": a.data.params, "auto_metrics": sorted(a.data.metrics),
            "auto_outputs": [o.model_id for o in a.outputs.model_outputs],
            "auto_models": [m.model_id for m in auto_models],
            "auto_run": auto.info.run_id,
            "auto_inputs": [
                [d.dataset.name, [t.value for t in d.tags]] for d in a.inputs.dataset_inputs
            ],
        })
        """,
        # The client infers a model's pip requirements in a child interpreter (~15 s here),
        # which is client-side work this test does not check: autolog gets 1 s for it.
        env={"MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1"},
        timeout=300,
    )
    assert out["pred_model"] == out["expected"] == out["pred_run"]
    assert out["uri"] == f"models:/{out['model_id']}"
    assert "READY" in out["status"] and out["source_run"] == out["run"]
    assert len(out["signature"]) == 1 and out["signature"][0]["type"] == "tensor"
    assert "model/MLmodel" in out["listed"] and "model/input_example.json" in out["listed"]
    # The model's files are listed once, as the model's (not as a run directory as well).
    assert out["listed"].count("model/MLmodel") == 1 and "model" not in out["run_listing"]
    assert out["auto_params"]["C"] == "0.5"
    assert "training_accuracy_score" in out["auto_metrics"]
    assert out["auto_outputs"] == out["auto_models"] and len(out["auto_models"]) == 1
    assert out["auto_inputs"] == [["dataset", ["train"]]]  # log-inputs: the training data
    # Podstack's SDK sees the model as files of its run (what the registry registers from).
    run_files = {e.path for e in sdk.list_artifacts(ids.run_from_mlflow(out["run"]), "model")}
    assert "model/MLmodel" in run_files
    auto_files = sdk.list_artifacts(ids.run_from_mlflow(out["auto_run"]), recursive=True)
    assert any(e.path.endswith("/MLmodel") for e in auto_files)

"""MLflow 3 logged models through the REST API (raw HTTP to a live server): the endpoints the
client's ``log_model`` does not exercise by itself (a model logged outside any run, tags,
params, search with filters and order, delete). Search reads JSON columns: both databases."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from podstack import MLOpsClient
from podstack.server.mlflow_compat import ids
from tests.conftest import ADMIN_TOKEN, LiveServer

API = "/api/2.0/mlflow"


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as c:
        yield c


def test_logged_model_outside_a_run_lifecycle(http: httpx.Client, live_server: LiveServer) -> None:
    exp = http.post(f"{API}/experiments/create", json={"name": "lm"}).json()["experiment_id"]
    r = http.post(
        f"{API}/logged-models",
        json={
            "experiment_id": exp,
            "name": "clf",
            "model_type": "sklearn",
            "params": [{"key": "alpha", "value": "1"}],
            "tags": [{"key": "team", "value": "nlp"}],
        },
    )
    assert r.status_code == 200, r.text
    info = r.json()["model"]["info"]
    model_id = info["model_id"]
    assert model_id.startswith("m-") and len(model_id) == 34
    assert info["status"] == "LOGGED_MODEL_PENDING" and info["source_run_id"] == ""
    assert info["artifact_uri"] == f"mlflow-artifacts:/{exp}/models/{model_id}/artifacts"
    # The client uploads to the model's artifact_uri; the files become run artifacts.
    base = f"/api/2.0/mlflow-artifacts/artifacts/{exp}/models/{model_id}/artifacts"
    assert http.put(f"{base}/MLmodel", content=b"flavors: {}\n").status_code == 200
    assert http.put(f"{base}/data/model.bin", content=b"\x00\x01").status_code == 200
    listing = http.get(
        "/api/2.0/mlflow-artifacts/artifacts",
        params={"path": base.removeprefix("/api/2.0/mlflow-artifacts/artifacts/")},
    )
    assert listing.json() == {
        "files": [
            {"path": "MLmodel", "is_dir": False, "file_size": 12},
            {"path": "data", "is_dir": True},
        ]
    }
    assert http.get(f"{base}/data/model.bin").content == b"\x00\x01"
    dirs = http.get(f"{API}/logged-models/{model_id}/artifacts/directories").json()
    assert [f["path"] for f in dirs["files"]] == ["MLmodel", "data"]
    done = http.patch(f"{API}/logged-models/{model_id}", json={"status": "LOGGED_MODEL_READY"})
    assert done.json()["model"]["info"]["status"] == "LOGGED_MODEL_READY"

    # Held by a run of its own, finished with the upload; Podstack's SDK sees the files.
    with MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url) as sdk:
        (holder,) = sdk.search_runs(experiment_ids=[exp])
        assert holder.status == "FINISHED" and holder.name == "logged model clf"
        assert holder.tags["mlflow.loggedModel.holder"] == model_id
        files = [e.path for e in sdk.list_artifacts(holder.id, recursive=True)]
        assert files == ["clf/MLmodel", "clf/data/model.bin"]
    # Through MLflow, the run's own listing leaves the model's directory out.
    run_root = f"{exp}/{ids.run_to_mlflow(holder.id)}/artifacts"
    assert http.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": run_root}).json() == {
        "files": []
    }

    # Tags and params of the model itself.
    assert (
        http.patch(
            f"{API}/logged-models/{model_id}/tags",
            json={"tags": [{"key": "stage", "value": "dev"}]},
        ).status_code
        == 200
    )
    assert http.delete(f"{API}/logged-models/{model_id}/tags/team").status_code == 200
    changed = http.post(
        f"{API}/logged-models/{model_id}/params", json={"params": [{"key": "alpha", "value": "2"}]}
    )
    assert changed.status_code == 400 and "alpha" in changed.json()["message"]
    got = http.get(f"{API}/logged-models/{model_id}").json()["model"]
    assert got["info"]["tags"] == [{"key": "stage", "value": "dev"}]
    assert got["data"]["params"] == [{"key": "alpha", "value": "1"}]

    # Search: filters on attributes and tags, order, pages.
    second = http.post(f"{API}/logged-models", json={"experiment_id": exp, "name": "reg"}).json()
    second_id = second["model"]["info"]["model_id"]

    def search(**body: object) -> list[str]:
        r = http.post(f"{API}/logged-models/search", json={"experiment_ids": [exp], **body})
        assert r.status_code == 200, r.text
        return [m["info"]["name"] for m in r.json()["models"]]

    assert search(filter="name = 'clf'") == ["clf"]
    assert search(filter="tags.stage = 'dev'") == ["clf"]
    assert search(filter="status = 'LOGGED_MODEL_PENDING'") == ["reg"]
    assert search(order_by=[{"field_name": "name", "ascending": True}]) == ["clf", "reg"]
    page = http.post(
        f"{API}/logged-models/search",
        json={"experiment_ids": [exp], "max_results": 1, "order_by": [{"field_name": "name"}]},
    ).json()
    assert [m["info"]["name"] for m in page["models"]] == ["clf"] and page["next_page_token"]
    bad = http.post(f"{API}/logged-models/search", json={"filter": "metrics.acc > 1"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"

    assert http.delete(f"{API}/logged-models/{second_id}").status_code == 200
    gone = http.get(f"{API}/logged-models/{second_id}")
    assert gone.status_code == 404 and gone.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    bad_status = http.patch(f"{API}/logged-models/{model_id}", json={"status": "DONE"})
    assert bad_status.status_code == 400 and "LOGGED_MODEL_READY" in bad_status.json()["message"]


def test_a_model_of_a_finished_run_is_refused_up_front(http: httpx.Client) -> None:
    exp = http.post(f"{API}/experiments/create", json={"name": "lm2"}).json()["experiment_id"]
    run = http.post(f"{API}/runs/create", json={"experiment_id": exp}).json()["run"]["info"]
    http.post(f"{API}/runs/update", json={"run_id": run["run_id"], "status": "FINISHED"})
    r = http.post(
        f"{API}/logged-models",
        json={"experiment_id": exp, "name": "m", "source_run_id": run["run_id"]},
    )
    assert r.status_code == 409 and r.json()["error_code"] == "RESOURCE_CONFLICT"
    assert "FINISHED" in r.json()["message"]
    models = http.post(f"{API}/logged-models/search", json={"experiment_ids": [exp]}).json()
    assert models == {"models": []}

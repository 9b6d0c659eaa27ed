"""Every bad deployment request: the right 4xx, the error code, a helpful message, and no
deployment (nor process) left behind."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from podstack import MLOpsClient

from .conftest import X_TRAIN


def _deploy(api: httpx.Client, **kw: Any) -> httpx.Response:
    body = {"model_name": "m", "version": 1, "endpoint_name": "m-api", **kw}
    return api.post("/deployments", json=body)


def _assert_error(r: httpx.Response, status: int, code: str, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    for w in words:
        assert w in err["message"], err["message"]
    return err


@pytest.fixture
def model_v1(register: Any, sk_model: Any) -> Any:
    return register("m", sk_model)


def test_request_errors(api: httpx.Client, model_v1: Any) -> None:
    cases: list[tuple[dict[str, Any], int, str, tuple[str, ...]]] = [
        ({"endpoint_name": "Bad_Name"}, 422, "VALIDATION_ERROR", ("Invalid endpoint name",)),
        ({"endpoint_name": "x" * 46}, 422, "VALIDATION_ERROR", ("1-45",)),
        ({"endpoint_name": "-lead"}, 422, "VALIDATION_ERROR", ("starting with a letter",)),
        ({"version": 9}, 404, "NOT_FOUND", ("no version 9",)),
        ({"model_name": "nope"}, 404, "NOT_FOUND", ("nope",)),
        ({"version": None, "alias": "ghost"}, 404, "NOT_FOUND", ("ghost",)),
        ({"alias": "prod"}, 422, "VALIDATION_ERROR", ("either version", "not both")),
        (
            {"min_replicas": 3, "max_replicas": 2},
            422,
            "VALIDATION_ERROR",
            ("min_replicas (3) cannot be greater than max_replicas (2)",),
        ),
        ({"min_replicas": 0}, 422, "VALIDATION_ERROR", ("at least 1",)),
        ({"max_replicas": 500}, 422, "VALIDATION_ERROR", ("max_replicas between 1 and 100",)),
        ({"max_replicas": 9}, 422, "VALIDATION_ERROR", ("at most 8",)),
        ({"gpu_type": "A100"}, 422, "VALIDATION_ERROR", ("'A100'", "It offers: cpu")),
        ({"target": "mars"}, 422, "VALIDATION_ERROR", ("Unknown deployment target", "local")),
        ({"replicas": 2}, 422, "VALIDATION_ERROR", ("replicas",)),
    ]
    for extra, status, code, words in cases:
        _assert_error(_deploy(api, **extra), status, code, *words)
    assert api.get("/deployments").json()["items"] == []


def test_duplicate_endpoint_name_is_409(api: httpx.Client, sdk: MLOpsClient, model_v1: Any) -> None:
    first = sdk.deploy_model("m", version=1, endpoint_name="m-api", wait=False)
    err = _assert_error(_deploy(api), 409, "CONFLICT", "'m-api' already exists")
    assert err["details"]["endpoint_name"] == "m-api"
    items = api.get("/deployments").json()["items"]
    assert [d["id"] for d in items] == [first.id]


def test_state_dict_is_not_servable(api: httpx.Client, sdk: MLOpsClient, tmp_path: Any) -> None:
    import torch  # a dev extra: a missing torch must fail, not skip, in CI

    torch.save(torch.nn.Linear(2, 1).state_dict(), tmp_path / "model.pt")
    with sdk.start_run(experiment_id="deploy-tests") as run:
        run.log_artifact(str(tmp_path / "model.pt"))
    sdk.create_model_version("m", source_run_id=run.id, artifact_path="model.pt")
    err = _assert_error(
        _deploy(api), 422, "VALIDATION_ERROR", "cannot be served", "state_dict", "run.log_model"
    )
    assert err["details"]["path"] == "model.pt"
    assert api.get("/deployments").json()["items"] == []
    # log_model refuses a state_dict up front, saying what to pass instead.
    with pytest.raises(Exception) as exc, sdk.start_run(experiment_id="deploy-tests") as run2:
        run2.log_model(torch.nn.Linear(2, 1).state_dict(), "model")
    assert "state_dict" in exc.value.message and "nn.Module" in exc.value.message


def test_other_unservable_artifacts(api: httpx.Client, sdk: MLOpsClient, tmp_path: Any) -> None:
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.csv").write_text("1,2")
    (tmp_path / "MLmodel").write_text("flavors:\n  keras: {data: model.h5}\n")
    with sdk.start_run(experiment_id="deploy-tests") as run:
        run.log_artifact(str(tmp_path / "a.txt"), "two")
        run.log_artifact(str(tmp_path / "b.csv"), "two")
        run.log_artifact(str(tmp_path / "MLmodel"), "keras")
    sdk.create_model_version("m", source_run_id=run.id, artifact_path="two")
    sdk.create_model_version("m", source_run_id=run.id, artifact_path="keras")
    _assert_error(_deploy(api), 422, "VALIDATION_ERROR", "Cannot tell which", "log_model")
    _assert_error(_deploy(api, version=2), 422, "VALIDATION_ERROR", "no servable flavour", "keras")
    assert api.get("/deployments").json()["items"] == []


def test_untrusted_pickles_are_refused_until_an_admin_trusts_them(
    api: httpx.Client,
    sdk: MLOpsClient,
    register: Any,
    sk_model: Any,
    make_token: Any,
    client_for: Any,
) -> None:
    register("m", sk_model, format="sklearn")  # a pickle only, no ONNX conversion
    err = _assert_error(
        _deploy(api), 422, "VALIDATION_ERROR", "pickle", "executes code", "trusted formats are off"
    )
    assert err["details"]["reason"] == "untrusted_pickle"
    assert api.get("/deployments").json()["items"] == []

    editor = client_for(make_token("editor"))
    r = editor.put(
        "/deployment-targets/local", json={"kind": "local", "config": {"trusted_formats": True}}
    )
    _assert_error(r, 403, "PERMISSION_DENIED", "admin")
    r = api.put(
        "/deployment-targets/local", json={"kind": "local", "config": {"trusted_formats": True}}
    )
    assert r.status_code == 200 and r.json()["trusted_formats"] is True
    dep = sdk.deploy_model("m", version=1, endpoint_name="m-api")
    assert dep.status == "ready" and dep.format == "sklearn"
    assert sdk.predict("m-api", X_TRAIN[:1]).as_dict()["predict"].tolist() == [0]


def test_update_and_rollback_errors(api: httpx.Client, sdk: MLOpsClient, model_v1: Any) -> None:
    sdk.deploy_model("m", version=1, endpoint_name="m-api", wait=False)
    r = api.patch("/deployments/m-api", json={"min_replicas": 5})
    _assert_error(r, 422, "VALIDATION_ERROR", "cannot be greater")
    r = api.patch("/deployments/m-api", json={"version": 7})
    _assert_error(r, 404, "NOT_FOUND", "no version 7")
    r = api.patch("/deployments/nope", json={"version": 1})
    _assert_error(r, 404, "NOT_FOUND", "No deployment named 'nope'", "m-api")
    r = api.post("/deployments/m-api/rollback")
    _assert_error(r, 409, "CONFLICT", "no previous version")
    dep = api.get("/deployments/m-api").json()
    assert (dep["target_version"], dep["min_replicas"]) == (1, 1)


def test_target_admin_errors(api: httpx.Client) -> None:
    r = api.put("/deployment-targets/gpu", json={"kind": "slurm"})
    _assert_error(r, 422, "VALIDATION_ERROR", "Unknown target kind", "kubernetes")
    r = api.put("/deployment-targets/local", json={"kind": "kubernetes"})
    _assert_error(r, 422, "VALIDATION_ERROR", "built-in 'local'")
    r = api.put("/deployment-targets/Bad Name", json={"kind": "local"})
    _assert_error(r, 422, "VALIDATION_ERROR", "Invalid target name")
    r = api.delete("/deployment-targets/none")
    _assert_error(r, 404, "NOT_FOUND", "none")
    assert [t["name"] for t in api.get("/deployment-targets").json()] == ["local"]

"""The ``ray`` deployment target against a real Ray cluster with Ray Serve
(tests/ray_cluster.py): a registered scikit-learn version served by a Ray Serve application
running podstack.serving, predictions equal to the model's; a rollout to a new version keeps
answering (0 failed requests in a concurrent loop) and the endpoint URL does not change;
rollback restores the previous version; deleting the deployment removes the application."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

from podstack import MLOpsClient
from podstack.errors import ValidationFailed
from podstack.server.deployments.ray_serve import app_name
from tests.conftest import ADMIN_TOKEN
from tests.ray_cluster import RayCluster
from tests.server.deployments.conftest import X_TRAIN, log_and_register, make_sk_model

pytestmark = [pytest.mark.one_db, pytest.mark.timeout(300)]

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ROW = [[0.0, 1.0]]


@pytest.fixture
def sdk(live_server: Any, db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[MLOpsClient]:
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url)
    yield c
    c.close()


@pytest.fixture
def ray_target(sdk: MLOpsClient, ray_cluster: RayCluster, ray_env: None) -> Iterator[str]:
    sdk.set_deployment_target(
        "ray-test",
        "ray",
        {
            "address": ray_cluster.address,
            "serve_url": ray_cluster.serve_url,
            "num_cpus": 0.25,
            # Short, so the idle scale-down is seen within the test (the default is 600 s).
            "downscale_delay_s": 2,
        },
    )
    yield "ray-test"


def _inverted() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    y = (X_TRAIN.sum(axis=1) >= 1).astype(np.int64)
    return DecisionTreeClassifier(random_state=0).fit(X_TRAIN, 1 - y)


def _label(http: httpx.Client, name: str) -> tuple[int, str]:
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": ROW}]}
    r = http.post(f"/v2/models/{name}/infer", json=body)
    r.raise_for_status()
    doc = r.json()
    label = next(o for o in doc["outputs"] if o["name"] == "label")["data"][0]
    return label, doc["model_version"]


def test_serves_predictions_rolls_out_without_failures_and_rolls_back(
    sdk: MLOpsClient, ray_target: str, ray_cluster: RayCluster
) -> None:
    model = make_sk_model()
    v1 = log_and_register(sdk, "ray-churn", model)
    v2 = log_and_register(sdk, "ray-churn", _inverted())
    dep = sdk.deploy_model("ray-churn", v1.version, endpoint_name="ray-churn", target=ray_target)
    assert dep.status == "ready", dep
    url = dep.endpoint_url
    # Predictions equal to the model's, through Podstack's endpoint (the gateway to Serve).
    got = sdk.predict("ray-churn", X_TRAIN[:8].tolist()).as_dict()["label"].tolist()
    assert got == model.predict(X_TRAIN[:8]).tolist()
    # ...and straight from Ray Serve: the same protocol, the same app.
    direct = httpx.get(f"{ray_cluster.serve_url}/ray-churn/v2/models/ray-churn", timeout=10)
    assert direct.status_code == 200 and direct.json()["name"] == "ray-churn"

    results: list[tuple[int, str]] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as http:
            while not stop.is_set():
                try:
                    results.append(_label(http, "ray-churn"))
                except Exception as exc:  # any failure at all fails the test
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        moved = sdk.update_deployment("ray-churn", version=v2.version)
        deadline = time.monotonic() + 120
        while moved.version != v2.version and time.monotonic() < deadline:
            time.sleep(0.3)
            moved = sdk.get_deployment("ray-churn")
        time.sleep(1.0)  # keep calling the new version for a moment
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert moved.status == "ready" and moved.version == v2.version
    assert moved.endpoint_url == url  # stable across versions
    versions = [ver for _, ver in results]
    assert str(v1.version) in versions and versions[-1] == str(v2.version)
    assert {lab for lab, ver in results if ver == str(v2.version)} == {0}

    back = sdk.rollback_deployment("ray-churn")
    assert back.version == v1.version and back.status == "ready", back
    assert sdk.predict("ray-churn", ROW).as_dict()["label"].tolist() == [1]
    assert back.endpoint_url == url
    # Health folded into the deployment: the probe names Ray Serve's status.
    serve = ServeSubmissionClient(ray_cluster.address)
    app = serve.get_serve_details()["applications"][app_name("ray-churn")]
    assert app["status"] == "RUNNING"
    assert app["deployed_app_config"]["args"]["version"] == str(v1.version)

    sdk.delete_deployment("ray-churn")
    deadline = time.monotonic() + 60
    while app_name("ray-churn") in serve.get_serve_details()["applications"]:
        assert time.monotonic() < deadline, "the Serve application was not removed"
        time.sleep(0.5)


def test_bad_ray_target_config_is_refused(sdk: MLOpsClient, ray_cluster: RayCluster) -> None:
    for config, words in [
        ({"serve_url": ray_cluster.serve_url}, "config address"),
        ({"address": "ray://127.0.0.1:10001", "serve_url": ray_cluster.serve_url}, "http(s)"),
        ({"address": ray_cluster.address, "serve_url": "127.0.0.1:8000"}, "serve_url"),
        (
            {"address": ray_cluster.address, "serve_url": ray_cluster.serve_url, "num_cpus": -1},
            "num_cpus",
        ),
        (
            {
                "address": ray_cluster.address,
                "serve_url": ray_cluster.serve_url,
                "downscale_delay_s": 0,
            },
            "downscale_delay_s",
        ),
    ]:
        with pytest.raises(ValidationFailed) as exc:
            sdk.set_deployment_target("bad-ray", "ray", config)
        assert words in exc.value.message, exc.value.message
    assert "bad-ray" not in [t.name for t in sdk.list_deployment_targets()]


def _running_replicas(serve: ServeSubmissionClient, endpoint: str) -> int:
    app = serve.get_serve_details()["applications"].get(app_name(endpoint)) or {}
    replicas = ((app.get("deployments") or {}).get("model") or {}).get("replicas") or []
    return sum(1 for r in replicas if r.get("state") == "RUNNING")


def test_autoscales_up_to_max_replicas_under_load_and_back_when_idle(
    sdk: MLOpsClient, ray_target: str, ray_cluster: RayCluster
) -> None:
    v1 = log_and_register(sdk, "ray-scale", make_sk_model())
    dep = sdk.deploy_model(
        "ray-scale",
        v1.version,
        endpoint_name="ray-scale",
        target=ray_target,
        min_replicas=1,
        max_replicas=2,
    )
    assert dep.status == "ready", dep
    serve = ServeSubmissionClient(ray_cluster.address)
    config = serve.get_serve_details()["applications"][app_name("ray-scale")]["deployed_app_config"]
    scaling = config["deployments"][0]["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 2)
    assert scaling["downscale_delay_s"] == 2
    assert _running_replicas(serve, "ray-scale") == 1

    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        # Straight at Ray Serve: the load is on the replicas, not on Podstack's gateway.
        base = f"{ray_cluster.serve_url}/ray-scale"
        with httpx.Client(base_url=base, timeout=30) as http:
            while not stop.is_set():
                try:
                    _label(http, "ray-scale")
                except Exception as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 90
        while _running_replicas(serve, "ray-scale") < 2:
            assert time.monotonic() < deadline, "Ray Serve did not scale up under load"
            time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    deadline = time.monotonic() + 90
    while _running_replicas(serve, "ray-scale") > 1:
        assert time.monotonic() < deadline, "Ray Serve did not scale back down when idle"
        time.sleep(1)
    sdk.delete_deployment("ray-scale")

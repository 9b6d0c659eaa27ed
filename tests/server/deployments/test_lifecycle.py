"""Rollouts on the local target with real processes: following an alias (no failed request
while it rolls), a broken new version (the old one keeps serving), rollback, stop/start,
re-attaching after a server restart, webhook events and the registry guards."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from podstack import MLOpsClient
from podstack.client.deployments import DeploymentFailed
from podstack.errors import Conflict
from podstack.server.deployments import local
from podstack.server.deployments.manager import DeploymentManager
from podstack.server.events import service as events
from tests.conftest import ADMIN_TOKEN

from .conftest import X_TRAIN, Y_TRAIN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ROW = [[0.0, 1.0]]  # label 1 for the normal model, 0 for the inverted one


@pytest.fixture
def captured_events() -> Iterator[list[events.Event]]:
    seen: list[events.Event] = []

    def sink(_s: Any, ev: events.Event) -> None:
        if ev.type.startswith("deployment."):
            seen.append(ev)

    events.subscribe(sink)
    yield seen
    events._SINKS.remove(sink)


def _label(http: httpx.Client, name: str) -> tuple[int, str]:
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": ROW}]}
    r = http.post(f"/v2/models/{name}/infer", json=body)
    r.raise_for_status()
    doc = r.json()
    label = next(o for o in doc["outputs"] if o["name"] == "label")["data"][0]
    return label, doc["model_version"]


def test_alias_move_rolls_endpoint_without_failed_requests(
    sdk: MLOpsClient,
    register: Any,
    sk_model: Any,
    sk_model_inverted: Any,
    captured_events: list[events.Event],
) -> None:
    v1 = register("churn", sk_model)
    v2 = register("churn", sk_model_inverted)
    sdk.set_model_alias("churn", "latest-prod", v1.version)
    dep = sdk.deploy_model("churn", alias="latest-prod", endpoint_name="churn-api")
    assert (dep.version, dep.alias, dep.status) == (v1.version, "latest-prod", "ready")
    first_pid = sdk.get_deployment("churn-api")  # noqa: F841 - keeps the call symmetric

    results: list[tuple[int, str]] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=dep.endpoint_url, headers=AUTH, timeout=30) as http:
            while not stop.is_set():
                try:
                    results.append(_label(http, "churn-api"))
                except Exception as exc:  # any failure at all fails the test
                    failures.append(repr(exc))

    t = threading.Thread(target=hammer)
    t.start()
    try:
        time.sleep(0.3)
        sdk.set_model_alias("churn", "latest-prod", v2.version)
        moved = sdk.wait_for_deployment("churn-api")
        deadline = time.monotonic() + 60
        while moved.version != v2.version and time.monotonic() < deadline:
            time.sleep(0.2)
            moved = sdk.get_deployment("churn-api")
        time.sleep(0.5)  # keep calling the new server for a moment
    finally:
        stop.set()
        t.join()
    assert failures == []
    assert moved.version == v2.version and moved.previous_version == v1.version
    versions = [ver for _, ver in results]
    assert str(v1.version) in versions and versions[-1] == str(v2.version)
    # Once switched, never back: the old server stopped after its requests finished.
    switch = versions.index(str(v2.version))
    assert set(versions[switch:]) == {str(v2.version)}
    assert {lab for lab, ver in results if ver == str(v2.version)} == {0}
    assert [e.type for e in captured_events].count("deployment.ready") == 2

    # Rollback: back to v1, pinned (the alias is the registry's to move).
    back = sdk.rollback_deployment("churn-api")
    assert (back.version, back.alias, back.previous_version) == (v1.version, None, v2.version)
    assert sdk.predict("churn-api", ROW).as_dict()["label"].tolist() == [1]
    assert any(
        e.type == "deployment.updated" and e.payload.get("rollback") for e in captured_events
    )


def test_broken_new_version_leaves_old_one_serving(
    sdk: MLOpsClient,
    register: Any,
    sk_model: Any,
    tmp_path: Any,
    captured_events: list[events.Event],
) -> None:
    v1 = register("fraud", sk_model)
    # v2 claims to be ONNX but its bytes are not a model: detected as servable, fails to load.
    (tmp_path / "model.onnx").write_bytes(b"this is not an onnx graph")
    with sdk.start_run(experiment_id="deploy-tests") as run:
        run.log_artifact(str(tmp_path / "model.onnx"), "broken")
    v2 = sdk.create_model_version("fraud", source_run_id=run.id, artifact_path="broken")
    sdk.deploy_model("fraud", version=v1.version, endpoint_name="fraud-api")

    with pytest.raises(DeploymentFailed) as exc:
        sdk.update_deployment("fraud-api", version=v2.version)
    assert "failed to load" in exc.value.message or "load" in str(exc.value.details)
    assert exc.value.details["still_serving"] == v1.version
    dep = sdk.get_deployment("fraud-api")
    # The failed rollout is over: the target is back on what serves (issue 14).
    assert dep.status == "ready" and dep.version == v1.version and dep.target_version == v1.version
    assert dep.rollout is not None and dep.rollout.status == "failed"
    assert dep.rollout.to_version == v2.version
    assert "Still serving version" in (dep.status_reason or "")
    assert sdk.predict("fraud-api", X_TRAIN[:4]).as_dict()["label"].tolist() == Y_TRAIN[:4].tolist()
    failed = [e for e in captured_events if e.type == "deployment.failed"]
    assert failed and failed[-1].payload["still_serving"] == v1.version

    # A broken first deployment: failed with the reason, nothing serving.
    with pytest.raises(DeploymentFailed) as exc:
        sdk.deploy_model("fraud", version=v2.version, endpoint_name="fraud-broken")
    dep = sdk.get_deployment("fraud-broken")
    assert dep.status == "failed" and dep.version is None
    assert "load" in (dep.status_reason or "")


def test_registry_refuses_deleting_what_is_served(
    sdk: MLOpsClient, register: Any, sk_model: Any, api: httpx.Client
) -> None:
    v1 = register("guarded", sk_model)
    register("guarded", sk_model)
    sdk.set_model_alias("guarded", "prod", v1.version)
    sdk.deploy_model("guarded", alias="prod", endpoint_name="guarded-api")

    with pytest.raises(Conflict) as exc:
        sdk.delete_model_version("guarded", v1.version)
    assert "guarded-api" in exc.value.message
    with pytest.raises(Conflict) as exc:
        sdk.delete_registered_model("guarded")
    assert "guarded-api" in exc.value.message
    with pytest.raises(Conflict) as exc:
        sdk.delete_model_alias("guarded", "prod")
    assert "guarded-api" in exc.value.message
    sdk.delete_model_version("guarded", 2)  # not served: fine

    graph = api.get(f"/registered-models/guarded/versions/{v1.version}/lineage").json()
    node = next(n for n in graph["nodes"] if n["type"] == "deployment")
    assert node["label"] == "guarded-api" and node["data"]["status"] == "ready"
    assert any(e["target"] == node["id"] and e["relation"] == "deployed_as" for e in graph["edges"])

    sdk.delete_deployment("guarded-api")
    sdk.delete_model_version("guarded", v1.version)


def test_survives_server_restart_and_restarts_dead_servers(
    sdk: MLOpsClient,
    register: Any,
    sk_model: Any,
    live_server: Any,
    captured_events: list[events.Event],
) -> None:
    v = register("resilient", sk_model)
    sdk.deploy_model("resilient", version=v.version, endpoint_name="resilient")
    state = live_server.app.state
    with state.db.session(readonly=True) as s:
        from podstack.server.deployments import repository

        before = dict(repository.get_by_name(s, "resilient").runtime)

    # A fresh manager is what a restarted server has: it re-attaches to the running process.
    fresh = DeploymentManager(state.db, state.settings, state.store)
    fresh.recover()
    assert fresh.wait_idle(60)
    dep = sdk.get_deployment("resilient")
    assert dep.status == "ready"
    with state.db.session(readonly=True) as s:
        assert repository.get_by_name(s, "resilient").runtime["pid"] == before["pid"]
    assert fresh.route("resilient").base_url.endswith(str(before["port"]))

    # The process dies: the health check notices and starts a new one.
    local.kill_runtime(before)
    fresh.check_health()
    assert fresh.wait_idle(60)
    dep = sdk.get_deployment("resilient")
    assert dep.status == "ready"
    assert any(not h.ok for h in dep.health_history)
    with state.db.session(readonly=True) as s:
        after = repository.get_by_name(s, "resilient").runtime
    assert after["pid"] != before["pid"]
    assert sdk.predict("resilient", X_TRAIN[:2]).as_dict()["label"].tolist() == Y_TRAIN[:2].tolist()


def test_stop_start_delete(
    sdk: MLOpsClient,
    register: Any,
    sk_model: Any,
    live_server: Any,
    captured_events: list[events.Event],
) -> None:
    v = register("toggle", sk_model)
    dep = sdk.deploy_model(
        "toggle", version=v.version, endpoint_name="toggle", min_replicas=2, max_replicas=2
    )
    assert dep.min_replicas == 2
    with live_server.app.state.db.session(readonly=True) as s:
        from podstack.server.deployments import repository

        pid = repository.get_by_name(s, "toggle").runtime["pid"]
    # min_replicas worker processes share the server's port.
    workers = [p for p in psutil.Process(pid).children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 2
    stopped = sdk.stop_deployment("toggle")
    assert stopped.status == "stopped" and stopped.version is None
    with pytest.raises(Exception) as exc:
        sdk.predict("toggle", X_TRAIN[:1])
    assert exc.value.code == "SERVICE_UNAVAILABLE"
    started = sdk.start_deployment("toggle")
    assert started.status == "ready"
    sdk.delete_deployment("toggle")
    assert sdk.list_deployments() == []
    assert [e.type for e in captured_events][-1] == "deployment.deleted"

"""Deployment bugs a new user hit walking through the seed (issue 14): the Deploy dialog
naming a file by its contents, failed rollouts that end (and are cleared by the next action),
every problem of a deploy request reported at once, and ``max_replicas`` refused where the
target cannot autoscale."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podstack import MLOpsClient
from podstack.client.deployments import DeploymentFailed
from podstack.server.artifacts.store import BlobStore
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.deployments import target_kinds
from podstack.server.deployments import targets as tg
from tests.conftest import ADMIN_TOKEN, LiveServer

from .conftest import X_TRAIN, Y_TRAIN

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture
def web(live_server: LiveServer, db: Database) -> Iterator[httpx.Client]:
    c = httpx.Client(base_url=live_server.url, follow_redirects=False, timeout=60)
    token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
    assert c.post("/login", data={"password": ADMIN_TOKEN, "csrf_token": token}).status_code == 303
    yield c
    c.close()


def _raw_version(api: httpx.Client, model: str, name: str, content: bytes) -> int:
    """A version whose only file is ``name`` holding ``content`` (no SDK checks)."""
    run = api.post("/runs", json={"experiment_id": f"{model}-exp"})
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    assert api.put(f"/runs/{run_id}/artifacts/{name}", content=content).status_code == 201
    r = api.post(
        f"/registered-models/{model}/versions",
        json={"source_run_id": run_id, "artifact_path": name},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["version"])


def _error(r: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return dict(r.json()["error"])


# ---------------------------------------------------------------- the Deploy dialog


def test_deploy_dialog_inspects_a_pt_file_before_naming_it(
    api: httpx.Client, web: httpx.Client
) -> None:
    v = _raw_version(api, "notes", "model.pt", b"weights, not a PyTorch file")
    page = web.get("/deployments/-/deploy-form", params={"model": "notes", "version": v})
    assert page.status_code == 200, page.text
    text = page.text.replace("&#39;", "'")
    assert "data-not-servable" in text
    assert "a PyTorch checkpoint written by torch.save" not in text
    assert "Its name ends in .pt, but its contents were not written by torch.jit.save" in text


def test_deploy_dialog_still_names_a_real_checkpoint(
    api: httpx.Client, web: httpx.Client, tmp_path: Path
) -> None:
    import torch  # a dev extra (CPU build): a missing torch fails, never skips

    torch.save(torch.nn.Linear(2, 1).state_dict(), tmp_path / "ckpt.pt")
    v = _raw_version(api, "ckpt", "model.pt", (tmp_path / "ckpt.pt").read_bytes())
    page = web.get("/deployments/-/deploy-form", params={"model": "ckpt", "version": v})
    assert "a PyTorch checkpoint written by torch.save" in page.text


# ---------------------------------------------------------------- every problem at once


def test_every_problem_of_a_deploy_request_is_reported_at_once(api: httpx.Client) -> None:
    v = _raw_version(api, "notes", "model.pt", b"weights")
    err = _error(
        api.post(
            "/deployments",
            json={"model_name": "notes", "version": v, "endpoint_name": "n", "gpu_type": "T4"},
        )
    )
    assert err["code"] == "VALIDATION_ERROR"
    msg = err["message"]
    assert msg.startswith("The request has 2 problems: (1) ")
    assert "does not offer GPU type 'T4'" in msg and "cannot be served" in msg
    assert [("gpu_type" in p, "reason" in p) for p in err["details"]["problems"]] == [
        (True, False),
        (False, True),
    ]
    # Four at once: the name, the scaling rule, the GPU and the version.
    err = _error(
        api.post(
            "/deployments",
            json={
                "model_name": "notes",
                "version": v,
                "endpoint_name": "Bad_Name",
                "gpu_type": "T4",
                "max_replicas": 2,
            },
        )
    )
    assert err["message"].startswith("The request has 4 problems:")
    for words in ("Invalid endpoint name", "cannot autoscale", "'T4'", "cannot be served"):
        assert words in err["message"]
    assert len(err["details"]["problems"]) == 4
    assert api.get("/deployments").json()["items"] == []


def test_a_single_problem_keeps_its_own_message(api: httpx.Client) -> None:
    v = _raw_version(api, "notes", "model.pt", b"weights")
    err = _error(
        api.post("/deployments", json={"model_name": "notes", "version": v, "endpoint_name": "n"})
    )
    assert err["message"].startswith(f"Version {v} of 'notes' cannot be served:")
    assert "problems" not in err["details"]
    # A missing model alone is still a 404; with other problems it is listed among them.
    _error(api.post("/deployments", json={"model_name": "ghost", "endpoint_name": "g"}), 404)
    err = _error(
        api.post(
            "/deployments",
            json={"model_name": "ghost", "endpoint_name": "g", "gpu_type": "T4"},
        )
    )
    assert "'T4'" in err["message"] and "ghost" in err["message"]


# ---------------------------------------------------------------- max_replicas


def test_local_target_refuses_max_replicas_it_would_ignore(
    api: httpx.Client, sdk: MLOpsClient, register: Any, sk_model: Any
) -> None:
    register("scaled", sk_model)
    err = _error(
        api.post(
            "/deployments",
            json={
                "model_name": "scaled",
                "version": 1,
                "endpoint_name": "scaled-api",
                "min_replicas": 1,
                "max_replicas": 3,
            },
        )
    )
    assert err["message"] == (
        "Target 'local' (local) cannot autoscale: it runs exactly min_replicas replicas, so "
        "max_replicas must equal min_replicas (got min_replicas=1, max_replicas=3). Set "
        "max_replicas=1 (or min_replicas=3 for a fixed 3), or deploy to a kubernetes target, "
        "which scales between them."
    )
    assert err["details"]["target"] == "local"
    assert err["details"]["rule"] == "max_replicas == min_replicas"
    assert api.get("/deployments").json()["items"] == []
    # Fixed sizes are fine, and an update cannot sneak a range in either.
    dep = sdk.deploy_model("scaled", version=1, endpoint_name="scaled-api", wait=False)
    assert (dep.min_replicas, dep.max_replicas) == (1, 1)
    err = _error(api.patch("/deployments/scaled-api", json={"max_replicas": 2}))
    assert "cannot autoscale" in err["message"]
    assert api.get("/deployments/scaled-api").json()["max_replicas"] == 1


def test_kubernetes_target_accepts_a_replica_range(settings: Settings, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    k8s = target_kinds.build("cluster", tg.KUBERNETES, {}, settings, store)
    assert k8s.check(None, 1, 3) == (None, [])
    local = target_kinds.build("local", tg.LOCAL, {}, settings, store)
    _, problems = local.check(None, 1, 3)
    assert [p.details["rule"] for p in problems] == ["max_replicas == min_replicas"]


# ---------------------------------------------------------------- failed rollouts


def _broken_version(sdk: MLOpsClient, model: str, tmp_path: Path) -> int:
    """Detected as ONNX, fails to load in the model server."""
    (tmp_path / "model.onnx").write_bytes(b"this is not an onnx graph")
    with sdk.start_run(experiment_id="deploy-tests") as run:
        run.log_artifact(str(tmp_path / "model.onnx"), "broken")
    return sdk.create_model_version(model, source_run_id=run.id, artifact_path="broken").version


def test_failed_rollout_ends_as_failed_and_the_next_action_clears_it(
    sdk: MLOpsClient, register: Any, sk_model: Any, tmp_path: Path, web: httpx.Client
) -> None:
    v1 = register("fraud", sk_model).version
    v2 = _broken_version(sdk, "fraud", tmp_path)
    sdk.set_model_alias("fraud", "prod", v1)
    sdk.deploy_model("fraud", alias="prod", endpoint_name="fraud-api")

    # The alias moves to a version that cannot load: the rollout fails, v1 keeps serving.
    sdk.set_model_alias("fraud", "prod", v2)
    with pytest.raises(DeploymentFailed) as exc:
        sdk.wait_for_deployment("fraud-api", timeout=120)
    assert exc.value.details["still_serving"] == v1
    dep = sdk.get_deployment("fraud-api")
    assert (dep.status, dep.version, dep.target_version) == ("ready", v1, v1)
    assert dep.rollout is not None and dep.rollout.status == "failed"
    assert dep.rollout.to_version == v2 and dep.rollout.reason
    assert (dep.status_reason or "").startswith(f"Rollout to v{v2} failed: ")
    assert sdk.predict("fraud-api", X_TRAIN[:4]).as_dict()["label"].tolist() == Y_TRAIN[:4].tolist()
    # The page says it failed, not that v2 is on its way.
    page = web.get("/deployments/fraud-api").text
    assert f"Rollout to v{v2} failed: " in page and "data-rollout-failed" in page
    assert f"→ v{v2}</span>" not in page
    assert f"rollout to v{v2} failed" in page  # the status badge

    # Moving the alias back to the served version clears it.
    sdk.set_model_alias("fraud", "prod", v1)
    dep = sdk.wait_for_deployment("fraud-api", timeout=60)
    assert dep.rollout is None and dep.status == "ready" and dep.status_reason is None
    assert "data-rollout-failed" not in web.get("/deployments/fraud-api").text

    # A pinned update that fails, then an update (same size) clears it; so does a rollback.
    with pytest.raises(DeploymentFailed):
        sdk.update_deployment("fraud-api", version=v2)
    assert sdk.get_deployment("fraud-api").target_version == v1
    dep = sdk.update_deployment("fraud-api", min_replicas=1)
    assert dep.rollout is None and dep.status_reason is None and dep.version == v1
    with pytest.raises(DeploymentFailed):
        sdk.update_deployment("fraud-api", version=v2)
    assert sdk.get_deployment("fraud-api").rollout.status == "failed"  # type: ignore[union-attr]


def test_failed_first_rollout_says_so(
    sdk: MLOpsClient, register: Any, sk_model: Any, tmp_path: Path
) -> None:
    register("lone", sk_model)
    v2 = _broken_version(sdk, "lone", tmp_path)
    with pytest.raises(DeploymentFailed) as exc:
        sdk.deploy_model("lone", version=v2, endpoint_name="lone-api")
    assert exc.value.message.startswith(f"Rollout to v{v2} failed: ")
    dep = sdk.get_deployment("lone-api")
    assert (dep.status, dep.version, dep.target_version) == ("failed", None, v2)
    # Start (the next action) retries it: it fails again, visibly.
    with pytest.raises(DeploymentFailed):
        sdk.start_deployment("lone-api")

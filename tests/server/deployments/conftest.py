"""Deployment fixtures: small real models logged through the SDK, and cleanup that stops
every model-server process a test started (they run in their own process groups)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from podstack import MLOpsClient
from podstack.server.deployments import local, manager
from tests.conftest import ADMIN_TOKEN, LiveServer


def stop_all_model_servers() -> None:
    for mgr in list(manager._MANAGERS):
        mgr.wait_idle(timeout=60)
    for pid, proc in list(local._CHILDREN.items()):
        local.kill_runtime({"kind": "local", "pid": pid, "instance": ""})
        proc.wait(timeout=10)
    local._CHILDREN.clear()


@pytest.fixture(autouse=True)
def _stop_model_servers() -> Iterator[None]:
    yield
    stop_all_model_servers()


@pytest.fixture
def sdk(live_server: LiveServer, db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[MLOpsClient]:
    """The SDK over HTTP to the live server (model servers are real processes)."""
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url)
    yield c
    c.close()


# A tiny, deterministic classifier: label = x0 + x1 >= 1.
X_TRAIN = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 10, dtype=np.float64)
Y_TRAIN = (X_TRAIN.sum(axis=1) >= 1).astype(np.int64)


@functools.cache
def make_sk_model() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=0).fit(X_TRAIN, Y_TRAIN)


@pytest.fixture(scope="session")
def sk_model() -> Any:
    return make_sk_model()


@pytest.fixture(scope="session")
def sk_model_inverted() -> Any:
    """Same inputs, opposite answers: tells versions apart through the endpoint."""
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=0).fit(X_TRAIN, 1 - Y_TRAIN)


def log_and_register(sdk: MLOpsClient, model_name: str, model: Any, **kw: Any) -> Any:
    """Logs ``model`` with run.log_model and registers it; returns the ModelVersion."""
    kw.setdefault("input_example", X_TRAIN[:2])
    with sdk.start_run(experiment_id="deploy-tests") as run:
        run.log_model(model, "model", **kw)
    return sdk.create_model_version(
        model_name=model_name, source_run_id=run.id, artifact_path="model"
    )


@pytest.fixture
def register(sdk: MLOpsClient) -> Callable[..., Any]:
    """register(model_name, model, **log_model_kwargs) -> ModelVersion via run.log_model."""
    return functools.partial(log_and_register, sdk)

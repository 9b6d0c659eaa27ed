"""The seed's Integration Example with ``torch.jit.save(torch.jit.script(model), "model.pt")``
and ``run.log_artifact("model.pt")`` (what the 422 for a ``state_dict`` advises), on both SDK
backends: it deploys, has a signature, and ``predict`` answers a batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from podstack import MLOpsClient
from tests.sdk.test_deployments_sdk import SentimentNet
from tests.server.deployments.conftest import stop_all_model_servers


@pytest.fixture(autouse=True)
def _stop_model_servers() -> Iterator[None]:
    yield
    stop_all_model_servers()


def _deploy_bare_torchscript(
    client: MLOpsClient, name: str, *, example: object | None = None
) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    model = SentimentNet()
    with client.start_run(experiment_id="sentiment-exp") as run:
        run.log_params({"lr": 0.001, "epochs": 10})
        torch.jit.save(torch.jit.script(model), "model.pt")
        if example is None:
            run.log_artifact("model.pt")
        else:
            Path("export").mkdir()
            Path("model.pt").rename("export/model.pt")
            Path("export/input_example.json").write_text(json.dumps(example))
            run.log_artifact("export")
    version = client.create_model_version(
        model_name=name,
        source_run_id=run.id,
        artifact_path="model.pt" if example is None else "export",
    )
    deployment = client.deploy_model(
        model_name=name, version=version.version, endpoint_name=f"{name}-api"
    )
    assert deployment.status == "ready" and deployment.format == "torchscript"
    return model, deployment.endpoint_name


def test_bare_torchscript_deploys_with_a_signature_and_predicts_a_batch(
    client: MLOpsClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model, endpoint = _deploy_bare_torchscript(client, "sentiment-classifier")
    # One default input name on both sides: the deployment says it, the SDK sends it.
    sig = client.get_deployment(endpoint).signature
    assert sig is not None
    assert sig["inputs"] == [{"name": "input", "datatype": "FP32", "shape": []}]

    batch = [[0.1, 0.2, 0.3, 0.4], [0.5, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    got = client.predict(endpoint, batch).as_dict()["output__0"]
    expected = model(torch.tensor(batch)).detach().numpy()
    assert got.shape == (3, 2) and np.abs(got - expected).max() < 1e-5
    # The seed's single-row call.
    one = client.predict(endpoint, [[0.1, 0.2, 0.3, 0.4]]).as_dict()["output__0"]
    assert one.shape == (1, 2)


def test_bare_torchscript_signature_is_inferred_from_its_input_example(
    client: MLOpsClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model, endpoint = _deploy_bare_torchscript(
        client, "with-example", example=[[0.0, 0.0, 0.0, 0.0]]
    )
    sig = client.get_deployment(endpoint).signature
    assert sig is not None
    assert sig["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    batch = np.random.default_rng(0).normal(size=(5, 4)).tolist()
    got = client.predict(endpoint, batch).as_dict()["output__0"]
    assert got.shape == (5, 2)
    assert (
        np.abs(got - model(torch.tensor(batch, dtype=torch.float32)).detach().numpy()).max() < 1e-5
    )

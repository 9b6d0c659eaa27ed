"""The seed's Integration Example end to end on both SDK backends (embedded and HTTP), with
the model logged through ``run.log_model`` so that it can be served; then inference on the
endpoint it prints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# A dev extra (the CPU build): imported, not importorskip'd, so a missing torch fails the run
# instead of quietly skipping these tests in CI.
import torch

from podstack import MLOpsClient
from tests.conftest import ADMIN_TOKEN
from tests.server.deployments.conftest import stop_all_model_servers


@pytest.fixture(autouse=True)
def _stop_model_servers() -> Iterator[None]:
    yield
    stop_all_model_servers()


class SentimentNet(torch.nn.Module):
    """Stands in for the seed's BERT: 4 features -> 2 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def train_model() -> SentimentNet:
    torch.manual_seed(0)
    return SentimentNet()


def test_seed_integration_example(
    client: MLOpsClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(tmp_path)

    # 1. Track training in experiment
    with client.start_run(experiment_id="sentiment-exp") as run:
        run.log_params({"lr": 0.001, "epochs": 10})

        # Train model
        model = train_model()

        run.log_metrics({"accuracy": 0.94, "f1": 0.92})

        # Save model (servable: TorchScript with signature and input example)
        run.log_model(model, "model", input_example=torch.zeros((1, 4)))

        run_id = run.id

    # 2. Register to Model Registry
    version = client.create_model_version(
        model_name="sentiment-classifier",
        source_run_id=run_id,
        artifact_path="model",
        description="BERT fine-tuned on v2 dataset",
    )

    # 3. Promote to staging for testing
    client.transition_model_version_stage(
        model_name="sentiment-classifier", version=version.version, stage="Staging"
    )

    # 4. After validation, promote to production
    client.transition_model_version_stage(
        model_name="sentiment-classifier", version=version.version, stage="Production"
    )

    # 5. Deploy to AI Studio
    deployment = client.deploy_model(
        model_name="sentiment-classifier",
        version=version.version,
        endpoint_name="sentiment-api",
    )

    print(f"Model deployed at: {deployment.endpoint_url}")
    assert f"Model deployed at: {deployment.endpoint_url}" in capsys.readouterr().out
    assert deployment.status == "ready" and deployment.format == "torchscript"

    x = [[0.5, -1.0, 2.0, 0.0]]
    expected = model(torch.tensor(x)).detach().numpy()
    got = client.predict("sentiment-api", x).as_dict()["output__0"]
    assert got.shape == (1, 2)
    assert abs(got - expected).max() < 1e-5

    # The endpoint URL speaks the Open Inference Protocol.
    meta = httpx.get(
        f"{deployment.endpoint_url}/v2/models/sentiment-api",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    ).json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [
        d.endpoint_name for d in client.list_deployments(model_name="sentiment-classifier")
    ] == ["sentiment-api"]
    client.delete_deployment("sentiment-api")

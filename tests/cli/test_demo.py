"""``podstack demo``: realistic data through the SDK, in every stage, idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from podstack import MLOpsClient
from podstack.cli.main import app


def test_demo_fills_a_store_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("PODSTACK_HOME", str(home))  # restored after the test
    monkeypatch.delenv("PODSTACK_URL", raising=False)
    monkeypatch.delenv("PODSTACK_DATABASE_URL", raising=False)
    monkeypatch.delenv("PODSTACK_ARTIFACTS_URI", raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "registered models" in result.output

    client = MLOpsClient()
    try:
        names = {m.name for m in client.search_registered_models()}
        assert {
            "sentiment-classifier",
            "sentiment-classifier-de",
            "customer-churn-predictor",
        } <= names
        stages = {v.stage for v in client.list_model_versions("sentiment-classifier")}
        assert stages == {"None", "Staging", "Production", "Archived"}
        assert (
            client.get_model_by_alias(
                model_name="sentiment-classifier", alias="latest-prod"
            ).version
            == 3
        )
        child = client.get_model_version("sentiment-classifier-de", 1)
        assert child.parent is not None and child.parent.model_name == "sentiment-classifier"
        v3 = client.get_model_version("sentiment-classifier", 3)
        assert v3.source_run is not None and v3.source_run.datasets
        assert v3.files and any(f.path == "model.pt" for f in v3.files)
        history = client.get_metric_history(v3.source_run_id, "accuracy")
        assert len(history) > 10
    finally:
        client.close()

    again = runner.invoke(app, ["demo", "--home", str(home)])
    assert again.exit_code == 0
    assert "already there" in again.output

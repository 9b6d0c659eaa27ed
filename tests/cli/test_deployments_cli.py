"""`podstack deployments ...` against a live server (model servers are real processes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from podstack import MLOpsClient
from podstack.cli.main import app
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.server.deployments.conftest import (
    X_TRAIN,
    log_and_register,
    make_sk_model,
    stop_all_model_servers,
)

runner = CliRunner()


@pytest.fixture(autouse=True)
def _stop_model_servers() -> Iterator[None]:
    yield
    stop_all_model_servers()


def cli(server: LiveServer, *args: str, code: int = 0) -> str:
    env = {"PODSTACK_URL": server.url, "PODSTACK_API_TOKEN": ADMIN_TOKEN, "PODSTACK_PROGRESS": "0"}
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def test_deployments_from_the_terminal(live_server: LiveServer, db: Any) -> None:
    with MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url) as sdk:
        log_and_register(sdk, "churn", make_sk_model())
    out = cli(live_server, "deployments", "create", "churn", "-v", "1", "-e", "churn-api")
    assert "churn-api" in out and "ready" in out and "/api/v1/endpoints/churn-api" in out
    out = cli(live_server, "deployments", "list")
    assert "churn-api" in out and "v1" in out
    out = cli(live_server, "deployments", "predict", "churn-api", json.dumps(X_TRAIN[:2].tolist()))
    assert json.loads(out)["outputs"][0]["name"] == "label"
    out = cli(
        live_server,
        "deployments",
        "create",
        "churn",
        "-v",
        "1",
        "-e",
        "x",
        "--gpu-type",
        "T4",
        code=1,
    )
    assert "does not offer GPU type 'T4'" in out and "cpu" in out
    out = cli(live_server, "deployments", "targets", "list")
    assert "local" in out
    out = cli(live_server, "deployments", "rollback", "churn-api", code=1)
    assert "no previous version" in out
    cli(live_server, "deployments", "delete", "churn-api", "--yes")
    assert "No deployments." in cli(live_server, "deployments", "list")

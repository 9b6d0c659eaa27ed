"""The unmodified MLflow client (3.17, its own venv) using Podstack as its model registry:
log a scikit-learn model, register it, move it through stages and aliases, load it back with
``mlflow.pyfunc.load_model`` by alias and by version, and deploy the same version with
Podstack's ``deploy_model``. Everything is real: the client, a live server over a socket, the
model server process. The database plays no part beyond what test_registry_api.py checks on
both, so these run once (SQLite)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from podstack import MLOpsClient
from podstack.cli.main import app as cli_app
from podstack.server.mlflow_compat import ids
from tests.conftest import ADMIN_TOKEN, LiveServer, signed_in
from tests.server.deployments.conftest import stop_all_model_servers

pytestmark = pytest.mark.one_db

# Trains the same model the test compares against (iris, fixed solver: deterministic).
TRAIN = """
import mlflow, numpy as np
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

X, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500).fit(X, y)
expected = model.predict(X).tolist()
client = MlflowClient()
"""


@pytest.fixture(autouse=True)
def _stop_model_servers() -> Iterator[None]:
    yield
    stop_all_model_servers()


# One MLflow interpreter, three model downloads and a model server start: ~30 s on an idle
# 2-core machine, more beside the rest of the suite.
@pytest.mark.timeout(300)
def test_log_register_load_and_deploy(
    mlflow_json: Callable[..., Any], live_server: LiveServer
) -> None:
    out = mlflow_json(
        TRAIN
        + """
mlflow.set_experiment("iris")
with mlflow.start_run() as run:
    mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(X, model.predict(X)),
        input_example=X[:3],
        pip_requirements=["scikit-learn"],  # no inference subprocess: seconds of CPU
    )
mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", "iris-clf")
client.update_model_version("iris-clf", mv.version, description="from MLflow")
client.set_model_version_tag("iris-clf", mv.version, "validated", "yes")
client.set_registered_model_tag("iris-clf", "team", "ml")
client.set_registered_model_alias("iris-clf", "champion", mv.version)
staged = client.transition_model_version_stage("iris-clf", mv.version, "Staging")
by_alias = mlflow.pyfunc.load_model("models:/iris-clf@champion").predict(X).tolist()
by_version = mlflow.pyfunc.load_model(f"models:/iris-clf/{mv.version}").predict(X).tolist()
by_stage = mlflow.pyfunc.load_model("models:/iris-clf/Staging").predict(X).tolist()
got = client.get_model_version_by_alias("iris-clf", "champion")
rm = client.get_registered_model("iris-clf")
emit({
    "run_id": run.info.run_id,
    "version": mv.version,
    "stage": staged.current_stage,
    "expected": expected,
    "by_alias": by_alias,
    "by_version": by_version,
    "by_stage": by_stage,
    "alias_version": got.version,
    "alias_tags": got.tags,
    "description": got.description,
    "model_tags": rm.tags,
    "aliases": rm.aliases,
    "latest": [(v.version, v.current_stage) for v in rm.latest_versions],
    "sample": X[:5].tolist(),
})
"""
    )
    assert out["version"] == "1" and out["stage"] == "Staging"
    assert out["by_alias"] == out["expected"]
    assert out["by_version"] == out["expected"]
    assert out["by_stage"] == out["expected"]
    assert out["alias_version"] == "1" and out["alias_tags"] == {"validated": "yes"}
    assert out["description"] == "from MLflow"
    assert out["model_tags"] == {"team": "ml"} and out["aliases"] == {"champion": "1"}
    assert out["latest"] == [["1", "Staging"]]

    # The same version through Podstack's SDK, with its files snapshotted from the run.
    sdk = MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url)
    version = sdk.get_model_by_alias("iris-clf", "champion")
    assert version.version == 1 and version.stage == "Staging"
    assert version.source_run_id == ids.run_from_mlflow(out["run_id"])
    files = {f.path for f in sdk.list_model_version_files("iris-clf", 1)}
    assert {"MLmodel", "model.skops", "input_example.json"} <= files
    # MLflow's key-value model tag shows in Podstack's SDK, CLI and UI, apart from labels.
    model = sdk.get_registered_model("iris-clf")
    assert model.key_value_tags == {"team": "ml"} and model.tags == []
    env = {"PODSTACK_URL": live_server.url, "PODSTACK_API_TOKEN": ADMIN_TOKEN}
    shown = CliRunner().invoke(cli_app, ["models", "show", "iris-clf"], env=env)
    assert shown.exit_code == 0 and "Key-value tags: team=ml" in shown.output, shown.output
    web = signed_in(live_server.url)
    page = web.get("/models/iris-clf").text
    web.close()
    assert 'data-kv-tag="team">team: ml</span>' in page

    # Deployable with deploy_model: MLflow's sklearn flavour (a skops file) is served, and
    # answers what the original model predicts.
    deployment = sdk.deploy_model(model_name="iris-clf", version=1, endpoint_name="iris-api")
    assert deployment.status == "ready" and deployment.format == "sklearn"
    sample = np.array(out["sample"])
    got = sdk.predict("iris-api", sample).as_dict()
    assert list(next(iter(got.values()))) == out["expected"][:5]
    sdk.delete_deployment("iris-api")

    # What Podstack's SDK registers is visible to MLflow: a version of the same run directory.
    sdk.create_model_version(
        model_name="iris-sdk",
        source_run_id=ids.run_from_mlflow(out["run_id"]),
        artifact_path="model",
    )
    # (Its download URI is the one MLflow loaded iris-clf from: the logged model's location.)
    uri = {
        n: httpx.get(
            f"{live_server.url}/api/2.0/mlflow/model-versions/get-download-uri",
            params={"name": n, "version": "1"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ).json()["artifact_uri"]
        for n in ("iris-sdk", "iris-clf")
    }
    assert uri["iris-sdk"] == uri["iris-clf"] and "/models/m-" in uri["iris-sdk"]


def test_rules_hold_for_the_mlflow_client(
    mlflow_json: Callable[..., Any], live_server: LiveServer, make_token: Callable[..., str]
) -> None:
    make_token("editor", username="bob")
    sdk = MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url)
    # A model whose Production stage needs approval (the snippet registers its version).
    sdk.register_model("gated")
    sdk.set_approval_policy("gated", gated_stages=["Production"], reviewers=["bob"])
    out = mlflow_json(
        TRAIN
        + """
import os, tempfile
from mlflow.exceptions import MlflowException

def error_of(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except MlflowException as exc:
        return [exc.error_code, exc.message]
    return None

d = tempfile.mkdtemp() + "/m"
mlflow.sklearn.save_model(model, d, pip_requirements=["scikit-learn"])
with mlflow.start_run() as run:
    mlflow.log_artifacts(d, "model")
for i in range(3):
    mlflow.register_model(f"runs:/{run.info.run_id}/model", "rules")
for name in ("page-a", "page-b", "page-c"):
    client.create_registered_model(name, tags={"kind": "paged"})
client.transition_model_version_stage("rules", 1, "Production")
refused_delete = error_of(client.delete_model_version, "rules", 1)
refused_model = error_of(client.delete_registered_model, "rules")
client.delete_model_version("rules", 3)
names, token = [], None
while True:
    page = client.search_registered_models("tags.kind = 'paged'", max_results=2, page_token=token)
    names += [m.name for m in page]
    token = page.token
    if not token:
        break
versions = [
    v.version
    for v in client.search_model_versions("name = 'rules'", order_by=["version_number ASC"])
]
mlflow.register_model(f"runs:/{run.info.run_id}/model", "gated")
gated = error_of(client.transition_model_version_stage, "gated", 1, "Production")
emit({
    "gated": gated,
    "gated_stage": client.get_model_version("gated", 1).current_stage,
    "refused_delete": refused_delete,
    "refused_model": refused_model,
    "names": names,
    "versions": versions,
    "like": [m.name for m in client.search_registered_models("name LIKE 'page-%'")],
})
"""
    )
    assert out["refused_delete"][0] == "RESOURCE_CONFLICT"
    assert "Production" in out["refused_delete"][1]
    assert out["refused_model"][0] == "RESOURCE_CONFLICT"
    assert out["names"] == ["page-a", "page-b", "page-c"]
    assert out["like"] == ["page-a", "page-b", "page-c"]
    assert out["versions"] == ["1", "2"]

    # A gated stage: the MLflow client's transition opens an approval request and fails
    # with an error naming it; the version does not move.
    gated = out["gated"]
    assert gated is not None and gated[0] == "RESOURCE_CONFLICT"
    assert out["gated_stage"] == "None"
    pending = sdk.list_approval_requests(status="pending")
    assert len(pending) == 1 and pending[0].id in gated[1]
    assert pending[0].requester == "admin" and pending[0].model_name == "gated"
    assert sdk.get_model_version("gated", 1).stage == "None"

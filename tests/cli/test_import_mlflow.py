"""`podstack import mlflow` against a REAL `mlflow server` (mlflow 3.17.x from its own venv,
``benchmarks/.mlflow-venv``), populated by the real MLflow client, copied into a live Podstack
server over a socket. Nothing is mocked. The one stand-in is ``_Proxy``: a real HTTP proxy on a
real socket in front of the MLflow server that can cut the import off after N requests (an
MLflow outage mid-import), answer with a redirect to another host, and record what the
importer sent (its credentials).

One MLflow server per module (and xdist worker); the data is small so the module stays quick.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.mlflow_compare.servers import ServerProcess, free_port, spawn
from typer.testing import CliRunner

from podstack.cli.main import app
from podstack.client.client import MLOpsClient
from podstack.errors import NotFound
from tests.conftest import ADMIN_TOKEN, IN_CI, LiveServer

# The module's first test also starts and fills the MLflow server (its first start migrates
# a new database: tens of seconds on a busy 2-core machine).
pytestmark = [pytest.mark.one_db, pytest.mark.timeout(420)]

runner = CliRunner()

# Populates the MLflow server with the real client, then dumps what a faithful copy must hold
# (read back through the same client: params, tags, full metric histories, artifact hashes,
# registry). The last printed line is the JSON.
POPULATE = r"""
import hashlib, json, os, sys, tempfile
import mlflow
from mlflow import MlflowClient
import numpy as np
from sklearn.linear_model import LogisticRegression

c = MlflowClient()
T0 = 1_700_000_000_000

mlflow.set_experiment("imp-alpha")
alpha = c.get_experiment_by_name("imp-alpha").experiment_id
c.set_experiment_tag(alpha, "team", "nlp")
with mlflow.start_run(run_name="parent") as parent:
    mlflow.log_params({"lr": "0.01", "epochs": 3})
    for step in range(6):
        c.log_metric(parent.info.run_id, "loss", 1.0 / (step + 1), T0 + step * 1000, step)
    c.log_metric(parent.info.run_id, "loss", 0.05, timestamp=T0 + 9000, step=3)  # same step twice
    c.log_metric(parent.info.run_id, "odd", float("nan"), timestamp=T0, step=0)
    mlflow.set_tags({"owner": "ana", "stage-note": "first try"})
    mlflow.log_text("hello podstack\n", "notes/hello.txt")
    mlflow.log_dict({"layers": [1, 2, 3]}, "config.json")
    blob = os.urandom(200_000)
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "weights.bin"), "wb") as f:
        f.write(blob)
    mlflow.log_artifact(os.path.join(d, "weights.bin"), "checkpoints")
    X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    y = np.array([0, 1, 1, 0])
    model = LogisticRegression().fit(X, y)
    # pip_requirements given: MLflow's requirement inference (a subprocess that loads the
    # model) is seconds of CPU and no part of what the import copies.
    info = mlflow.sklearn.log_model(
        model, name="model", input_example=X[:2], pip_requirements=["scikit-learn"]
    )
    with mlflow.start_run(run_name="child", nested=True) as child:
        mlflow.log_param("fold", 1)
        for step in range(3):
            mlflow.log_metric("acc", 0.5 + step / 10, step=step, timestamp=T0 + step)

mlflow.set_experiment("imp-beta")
with mlflow.start_run(run_name="broken") as broken:
    mlflow.log_param("seed", 7)
    mlflow.log_metric("loss", 2.5)
    mlflow.log_text("b", "b.txt")
c.set_terminated(broken.info.run_id, "FAILED")
with mlflow.start_run(run_name="gone") as gone:
    mlflow.log_param("x", 1)
c.delete_run(gone.info.run_id)

mv1 = mlflow.register_model(info.model_uri, "imp-model")
c.set_registered_model_tag("imp-model", "owner", "ml-team")
c.set_registered_model_tag("imp-model", "nlp", "")
c.update_registered_model("imp-model", description="the model")
c.set_model_version_tag("imp-model", mv1.version, "validated", "yes")
c.set_registered_model_alias("imp-model", "champion", mv1.version)
# A version whose source is a plain artifact URI of its run (no logged model).
c.create_registered_model("other-model")
c.create_model_version(
    "other-model", f"{broken.info.artifact_uri}/b.txt", run_id=broken.info.run_id
)

def dump_run(run_id):
    r = c.get_run(run_id)
    hist = {k: [[m.step, m.timestamp, repr(m.value)] for m in c.get_metric_history(run_id, k)]
            for k in r.data.metrics}
    out = tempfile.mkdtemp()
    local = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=out)
    files = {}
    for root, _, names in os.walk(local):
        for n in names:
            p = os.path.join(root, n)
            files[os.path.relpath(p, local)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return {"id": run_id, "name": r.info.run_name, "experiment_id": r.info.experiment_id,
            "status": r.info.status, "start": r.info.start_time, "end": r.info.end_time,
            "params": r.data.params, "tags": r.data.tags, "metrics": hist, "files": files}

model_dir = mlflow.artifacts.download_artifacts(
    f"models:/imp-model/{mv1.version}", dst_path=tempfile.mkdtemp()
)
model_files = {}
for root, _, names in os.walk(model_dir):
    for n in names:
        p = os.path.join(root, n)
        with open(p, "rb") as fh:
            model_files[os.path.relpath(p, model_dir)] = hashlib.sha256(fh.read()).hexdigest()

print(json.dumps({
    "runs": [dump_run(r) for r in (parent.info.run_id, child.info.run_id, broken.info.run_id)],
    "deleted_run": gone.info.run_id,
    "parent": parent.info.run_id, "child": child.info.run_id, "broken": broken.info.run_id,
    "model_files": model_files,
    "weights_sha": hashlib.sha256(blob).hexdigest(),
}))
"""


def _mlflow_python() -> Path:
    from benchmarks.mlflow_compare.mlflow_env import installed_version, venv_python

    version = installed_version()
    if version is None or not version.startswith("3.17."):
        message = (
            f"the MLflow venv ({venv_python()}) is missing or has mlflow {version!r}; create it "
            "with: .venv/bin/python -c 'from benchmarks.mlflow_compare.mlflow_env import "
            "ensure_venv; ensure_venv()' (make test does this)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)  # loud locally; never in CI
    return venv_python()


def _start_mlflow(py: Path, work: Path) -> ServerProcess:
    """``mlflow server`` as mlflow_env.start_server runs it (SQLite, proxied artifacts, one
    worker), minus the benchmark's wait for an idle CPU, which tests do not need."""
    port = free_port()
    argv = [
        str(py.parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{work / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(work / "mlflow-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PODSTACK_"))}
    # MLflow 3's background job runner (GenAI evaluation jobs, with its huey consumers) has
    # nothing to do here and costs several CPU-seconds at start.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    server = spawn("mlflow", argv, env, work / "mlflow-server.log", f"http://127.0.0.1:{port}", "")
    try:
        server.wait_ready("/health", timeout=300)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """A real `mlflow server` (SQLite backend, proxied artifacts), populated once; yields its
    URL and what the copy must hold."""
    py = _mlflow_python()
    work = tmp_path_factory.mktemp("mlflow")
    server = _start_mlflow(py, work)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PODSTACK_"))}
        env.update(MLFLOW_TRACKING_URI=server.url, HOME=str(work), PYTHONUNBUFFERED="1")
        done = subprocess.run(
            [str(py), "-c", textwrap.dedent(POPULATE)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-6000:]
        expected = json.loads(done.stdout.strip().splitlines()[-1])
        yield server.url, expected
    finally:
        server.stop()


class _Proxy:
    """A real HTTP proxy in front of the MLflow server: forwards requests (recording their
    Authorization header) until ``limit`` of them have passed, then refuses with 503 as a
    server going down would; or, with ``redirect_to``, answers every request with a 302."""

    def __init__(self, upstream: str, limit: int | None = None, redirect_to: str | None = None):
        self.upstream = upstream
        self.limit = limit
        self.redirect_to = redirect_to
        self.count = 0
        self.auth: list[str | None] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                proxy.count += 1
                proxy.auth.append(self.headers.get("Authorization"))
                if proxy.redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", proxy.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if proxy.limit is not None and proxy.count > proxy.limit:
                    body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "down"}'
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                r = httpx.request(
                    self.command, proxy.upstream + self.path, content=data, headers=headers
                )
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _env(live_server: LiveServer, token: str = ADMIN_TOKEN, **extra: str) -> dict[str, str]:
    return {
        "PODSTACK_PROGRESS": "0",
        "COLUMNS": "250",
        "PODSTACK_URL": live_server.url,
        "PODSTACK_API_TOKEN": token,
        "MLFLOW_TRACKING_TOKEN": "",
        **extra,
    }


def _import(live_server: LiveServer, *args: str, code: int = 0, **env: str) -> Any:
    result = runner.invoke(app, ["import", "mlflow", *args], env=_env(live_server, **env))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def _ms(dt: Any) -> int:
    return round(dt.timestamp() * 1000)


def _assert_run_copied(c: MLOpsClient, want: dict[str, Any]) -> None:
    run = c.get_run("run-" + want["id"])
    assert run.name == want["name"]
    assert run.status.value == want["status"]
    assert _ms(run.start_time) == want["start"]
    assert (run.end_time and _ms(run.end_time)) == want["end"]
    assert run.params == want["params"]
    for k, v in want["tags"].items():
        assert run.tags.get(k) == v, k
    assert run.tags["mlflow.import.complete"] == "true"
    for key, points in want["metrics"].items():
        got = sorted(
            [p.step, _ms(p.timestamp), repr(p.value)] for p in c.get_metric_history(run.id, key)
        )
        assert got == sorted(points), key
    stored = {f.path: f.sha256 for f in c.list_artifacts(run.id, recursive=True)}
    for path, sha in want["files"].items():
        assert stored.get(path) == sha, path


def test_import_end_to_end(
    mlflow_server: tuple[str, dict[str, Any]], live_server: LiveServer, make_token: Any
) -> None:
    """One flow on one Podstack database (one MLflow server start per module is the costly
    part): errors change nothing; a dry run writes nothing; filters; an import cut off by
    an MLflow outage; its resumption; a second import that copies nothing."""
    url, want = mlflow_server
    c = MLOpsClient(url=live_server.url, api_token=ADMIN_TOKEN)

    # --- errors: one clear line, exit 1, nothing written
    # Unreachable: a port nobody listens on.
    dead = f"http://127.0.0.1:{free_port()}"
    r = _import(live_server, "--from", dead, code=1)
    assert f"Cannot reach the MLflow server at {dead}" in r.stderr

    # Not a URL.
    r = _import(live_server, "--from", "mlflow:5000", code=1)
    assert "http(s) URL" in r.stderr

    # A redirect to another host is not followed (nor are credentials sent there).
    proxy = _Proxy(url, redirect_to="http://203.0.113.9:5000")
    try:
        r = _import(live_server, "--from", proxy.url, code=1)
    finally:
        proxy.close()
    assert "redirected" in r.stderr and "not followed" in r.stderr

    # An unknown filter names what exists.
    r = _import(live_server, "--from", url, "--experiments", "nope", code=1)
    assert "No MLflow experiment named 'nope'" in r.stderr and "imp-alpha" in r.stderr
    r = _import(live_server, "--from", url, "--models", "nope", code=1)
    assert "No MLflow registered model named 'nope'" in r.stderr

    # A viewer may not write: Podstack's 403, in one line.
    r = _import(live_server, "--from", url, code=1, PODSTACK_API_TOKEN=make_token("viewer"))
    assert "Error:" in r.stderr and "Traceback" not in r.stderr

    assert len(c.search_runs(max_results=1000)) == 0
    assert c.list_registered_models() == []

    # --- dry run and filters
    dry = _import(live_server, "--from", url, "--dry-run").stdout
    assert "nothing was written" in dry
    assert f"copy run {want['parent']}" in dry and "register model 'imp-model'" in dry
    assert len(c.search_runs(max_results=1000)) == 0
    assert c.list_experiments() == [] or all(e.name != "imp-alpha" for e in c.list_experiments())

    # --experiments alone: that experiment's runs, no registered models.
    _import(live_server, "--from", url, "--experiments", "imp-beta")
    assert {r.id for r in c.search_runs(max_results=1000)} == {"run-" + want["broken"]}
    with pytest.raises(NotFound):
        c.get_registered_model("other-model")

    # --models alone: that model, plus the run its version comes from (already here).
    _import(live_server, "--from", url, "--models", "other-model")
    assert c.get_model_version("other-model", 1).source_run_id == "run-" + want["broken"]
    with pytest.raises(NotFound):
        c.get_registered_model("imp-model")
    assert len(c.search_runs(max_results=1000)) == 1

    # --- the whole server: cut off mid-way, resumed, then again
    # 1. The MLflow server goes away mid-import (the proxy refuses after 12 requests).
    proxy = _Proxy(url, limit=12)
    try:
        cut = _import(live_server, "--from", proxy.url, code=1, MLFLOW_TRACKING_TOKEN="s3cret")
    finally:
        proxy.close()
    assert "answered 503" in cut.stderr and "TEMPORARILY_UNAVAILABLE" in cut.stderr
    assert "run the same command again" in cut.stderr
    # The MLflow token went to the MLflow server, as a bearer token, on every request.
    assert proxy.auth and set(proxy.auth) == {"Bearer s3cret"}

    # What the cut left: a run that started arriving, not marked complete.
    partial = [r for r in c.search_runs(max_results=1000) if "mlflow.import.complete" not in r.tags]
    assert partial, "the cut should have left a half-copied run"
    # 2. Resume: everything arrives, the interrupted run copied again from scratch.
    out = _import(live_server, "--from", url).stdout
    assert "Copied:" in out and "deleted in MLflow" in out
    for run in want["runs"]:
        _assert_run_copied(c, run)
    with pytest.raises(NotFound):
        c.get_run("run-" + want["deleted_run"])
    # Nested runs stay nested: the child's parent tag names the imported parent's MLflow id.
    child = c.get_run("run-" + want["child"])
    assert child.tags["mlflow.parentRunId"] == want["parent"]
    assert c.get_experiment("imp-alpha").tags["team"] == "nlp"

    # The MLflow 3 logged model's files are in the run, and the version is linked to it.
    v = c.get_model_version("imp-model", 1)
    assert v.source_run_id == "run-" + want["parent"]
    assert v.artifact_path == "model"
    # (registered_model_meta is written by MLflow's client beside a download, not stored.)
    model_files = {p: s for p, s in want["model_files"].items() if p != "registered_model_meta"}
    assert {f.path: f.sha256 for f in v.files or []} == model_files
    assert v.tags["validated"] == "yes" and v.tags["mlflow.import.version"] == "1"
    assert c.get_model_by_alias("imp-model", "champion").version == 1
    model = c.get_registered_model("imp-model")
    assert model.description == "the model" and model.tags == ["nlp"]
    other = c.get_model_version("other-model", 1)
    assert other.source_run_id == "run-" + want["broken"] and other.artifact_path == "b.txt"
    assert "owner" in out and "labels only" in out  # the key-value model tag, explained

    # 3. Again: nothing is copied twice.
    counts = (
        len(c.search_runs(max_results=1000)),
        len(c.list_model_versions("imp-model")),
        len(c.get_metric_history("run-" + want["parent"], "loss")),
        len(c.list_artifacts("run-" + want["parent"], recursive=True)),
    )
    again = _import(live_server, "--from", url).stdout
    assert "Copied: nothing" in again, again
    assert "3 runs" in again and "2 model versions" in again
    assert counts == (
        len(c.search_runs(max_results=1000)),
        len(c.list_model_versions("imp-model")),
        len(c.get_metric_history("run-" + want["parent"], "loss")),
        len(c.list_artifacts("run-" + want["parent"], recursive=True)),
    )
    c.close()


def test_run_create_keeps_an_imported_id_and_start_time(api: httpx.Client) -> None:
    """The two fields the importer added to ``POST /runs`` (for any importer), and their
    bad inputs: a clear 4xx that creates nothing."""
    mid = "0123456789abcdef0123456789abcdef"
    body = {"experiment_id": "imp", "id": f"run-{mid}", "start_time": "2023-11-14T22:13:20Z"}
    r = api.post("/runs", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == f"run-{mid}"
    assert r.json()["start_time"].startswith("2023-11-14T22:13:20")

    again = api.post("/runs", json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "CONFLICT"
    assert f"run-{mid} already exists" in again.json()["error"]["message"]

    for bad in ("run-abc", f"run-{mid.upper()}", mid, "run-" + "0" * 16, "run-" + "0" * 32):
        r = api.post("/runs", json={**body, "id": bad})
        assert r.status_code == 422, (bad, r.text)
        assert "id" in r.text
    r = api.post("/runs", json={**body, "id": None, "start_time": "yesterday"})
    assert r.status_code == 422 and "start_time" in r.text
    runs = api.post("/runs/search", json={}).json()["items"]
    assert [x["id"] for x in runs] == [f"run-{mid}"]

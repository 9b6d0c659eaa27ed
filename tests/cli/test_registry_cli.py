"""`podstack models|versions|aliases|download|gc`, against a live server (through
MLOpsClient over HTTP) and embedded on the local store."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from podstack.cli.main import app
from podstack.server.artifacts.store import BlobStore
from podstack.server.config import Settings
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.server.registry.helpers import make_run, new_version

runner = CliRunner()


@pytest.fixture
def env(live_server: LiveServer, api: httpx.Client) -> dict[str, str]:
    """Against a live server."""
    return {
        "PODSTACK_PROGRESS": "0",
        "COLUMNS": "200",
        "PODSTACK_URL": live_server.url,
        "PODSTACK_API_TOKEN": ADMIN_TOKEN,
    }


@pytest.fixture
def local_env(settings: Settings, db: object) -> dict[str, str]:
    """Embedded on the local store (each command builds the app in-process, so this variant
    runs fewer commands: the code paths past the client are the same)."""
    return {
        "PODSTACK_PROGRESS": "0",
        "COLUMNS": "200",
        "PODSTACK_URL": "",
        "PODSTACK_HOME": str(settings.home),
        "PODSTACK_DATABASE_URL": settings.database_url,
        "PODSTACK_ARTIFACTS_URI": settings.artifacts_uri,
    }


def run(env: dict[str, str], *args: str, input: str | None = None) -> str:
    result = runner.invoke(app, list(args), env=env, input=input)
    assert result.exit_code == 0, result.output
    return result.output


def fails(env: dict[str, str], *args: str, needle: str) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 1, result.output
    assert "Error:" in result.stderr and needle in result.stderr, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def test_models_versions_aliases_roundtrip(
    env: dict[str, str], api: httpx.Client, tmp_path: Path
) -> None:
    run_id = make_run(
        api, {"model.pt": b"cli weights"}, params={"lr": 0.1}, metrics={"accuracy": 0.9}
    )
    out = run(env, "models", "register", "cli-model", "-d", "From the CLI", "-l", "nlp", "-l", "x")
    assert "Registered model cli-model" in out
    out = run(
        env,
        "versions",
        "create",
        "cli-model",
        "--run",
        run_id,
        "--path",
        "model.pt",
        "-t",
        "team=ml",
        "-d",
        "first",
    )
    assert "version 1" in out
    new_version(api, "cli-model", run_id)
    out = run(env, "models", "list")
    assert "cli-model" in out and "v2 (None)" in out and "nlp, x" in out
    out = run(env, "models", "list", "--label", "nlp", "--stage", "production")
    assert "0 model(s)" in out
    out = run(env, "versions", "transition", "cli-model", "1", "production", "-m", "ship")
    assert "now Production" in out
    out = run(env, "models", "list", "--stage", "Production", "-q", "CLI")
    assert "1 model(s)" in out and "v1 (Production)" in out
    out = run(env, "versions", "list", "cli-model", "--stage", "production")
    assert "1 version(s)" in out
    out = run(env, "versions", "tag", "cli-model", "1", "validated_by", "ml-team")
    assert "validated_by=ml-team" in out
    out = run(env, "aliases", "set", "cli-model", "champion", "1")
    assert "cli-model@champion → v1" in out
    run(env, "aliases", "set", "cli-model", "champion", "2")
    out = run(env, "aliases", "list", "cli-model")
    assert "champion" in out
    out = run(env, "aliases", "rollback", "cli-model", "champion")
    assert "→ v1" in out
    out = run(env, "versions", "show", "models:/cli-model@champion")
    for needle in [
        "cli-model v1",
        "Production",
        "lr",
        "0.1",
        "accuracy",
        "validated_by",
        "model.pt",
        "None → Production",
        "ship",
    ]:
        assert needle in out, needle
    out = run(env, "models", "show", "cli-model")
    assert "champion → v1" in out and "2 version(s)" in out
    dest = tmp_path / "dl"
    out = run(env, "download", "cli-model", "models:/cli-model/Production", "-d", str(dest))
    assert (dest / "model.pt").read_bytes() == b"cli weights"
    out = run(
        env,
        "download",
        "models:/cli-model@champion",
        "--dest",
        str(tmp_path / "d2"),
        "-p",
        "model.pt",
    )
    assert (tmp_path / "d2" / "model.pt").exists()
    run(env, "versions", "tag", "cli-model", "1", "validated_by", "--delete")
    run(env, "aliases", "delete", "cli-model", "champion")
    run(env, "versions", "delete", "cli-model", "2", "--yes")
    run(env, "versions", "transition", "cli-model", "1", "archived")
    run(env, "models", "delete", "cli-model", input="y\n")
    assert api.get("/registered-models/cli-model").status_code == 404


def test_errors_are_one_clear_line(env: dict[str, str], api: httpx.Client) -> None:
    run_id = make_run(api)
    new_version(api, "strict-cli", run_id)
    fails(env, "models", "register", "bad name", needle="Invalid model name")
    fails(env, "models", "show", "ghost", needle="'ghost' does not exist")
    fails(
        env,
        "versions",
        "transition",
        "strict-cli",
        "1",
        "Live",
        needle="Valid stages: None, Staging, Production, Archived",
    )
    fails(env, "versions", "show", "strict-cli", "0", needle="positive integer")
    fails(env, "aliases", "set", "strict-cli", "latest", "1", needle="reserved")
    fails(env, "versions", "tag", "strict-cli", "1", "k", needle="either VALUE")
    fails(
        env,
        "versions",
        "create",
        "strict-cli",
        "--run",
        run_id,
        "--path",
        "x.pt",
        needle="has no artifact",
    )
    run(env, "versions", "transition", "strict-cli", "1", "Production")
    fails(env, "versions", "delete", "strict-cli", "1", "-y", needle="Archived first")
    fails(env, "models", "delete", "strict-cli", "-y", needle="Production")
    result = runner.invoke(app, ["models", "delete", "strict-cli"], env=env, input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert api.get("/registered-models/strict-cli").status_code == 200


def test_embedded_on_the_local_store(
    local_env: dict[str, str], api: httpx.Client, tmp_path: Path
) -> None:
    run_id = make_run(api, {"model.pt": b"local weights"})
    out = run(local_env, "versions", "create", "local-model", "-r", run_id, "-p", "model.pt")
    assert "local-model version 1" in out
    out = run(local_env, "models", "list", "-l", "nlp")
    assert "0 model(s)" in out
    out = run(local_env, "versions", "transition", "local-model", "1", "staging")
    assert "now Staging" in out
    run(local_env, "download", "models:/local-model/Staging", "-d", str(tmp_path))
    assert (tmp_path / "model.pt").read_bytes() == b"local weights"
    fails(local_env, "versions", "delete", "local-model", "9", "-y", needle="no version 9")


def test_gc_is_a_dry_run_unless_asked(
    api: httpx.Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "PODSTACK_HOME": str(settings.home),
        "PODSTACK_DATABASE_URL": settings.database_url,
        "PODSTACK_ARTIFACTS_URI": settings.artifacts_uri,
        "COLUMNS": "200",
    }
    store = BlobStore(settings.artifacts_path)
    for d in list(store.iter_digests()):
        store.delete(d)
    run_id = make_run(api, {"model.pt": b"keep me"})
    new_version(api, "gc-cli", run_id)
    orphan = store.put_iter([b"orphan"]).sha256
    old = time.time() - 3 * 24 * 3600
    for d in store.iter_digests():
        os.utime(store.path_for(d), (old, old))
    out = run(env, "gc", "-v")
    assert "Would delete 1 blob(s)" in out and orphan in out and "Dry run" in out
    assert store.exists(orphan)
    out = run(env, "gc", "--delete")
    assert "Deleted 1 blob(s)" in out
    assert not store.exists(orphan)
    assert store.exists(hashlib.sha256(b"keep me").hexdigest())
    young = store.put_iter([b"young"]).sha256
    out = run(env, "gc", "--delete", "--grace-hours", "1")
    assert "Deleted 0 blob(s)" in out and store.exists(young)

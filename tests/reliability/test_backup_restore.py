"""Backup and restore round trip: every row and every artifact comes back, verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from podstack import MLOpsClient
from podstack.errors import Conflict, IntegrityError
from podstack.server.artifacts.store import BlobStore
from podstack.server.artifacts.store_factory import open_store
from podstack.server.auth import service as auth_service
from podstack.server.backup import service as backup_service
from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer


def _populate(client: MLOpsClient, tmp_path: Path) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights" * 10_000)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text('{"layers": 12}')
    with client.start_run("backup-exp", tags={"team": "nlp"}) as run:
        run.log_params({"lr": 0.001})
        for step in range(20):
            run.log_metrics({"loss": 1 / (step + 1)}, step=step)
        run.log_metrics({"nan_metric": float("nan")})
        run.log_artifact(str(model))
        run.log_artifacts(str(tmp_path / "cfg"), "cfg")
    return run.id


def test_round_trip(
    settings: Settings,
    db: Database,
    live_server: LiveServer,
    tmp_path: Path,
    scratch_database_url: str,
) -> None:
    with MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url) as client:
        run_id = _populate(client, tmp_path / "src")
        with db.session() as s:
            auth_service.create_user(s, "test", "carol", role="editor")
            carol_token = auth_service.create_token(s, "test", "carol", "ci").value
        before_run = client.get_run(run_id)
        before_hist = client.get_metric_history(run_id, "loss")

    summary = backup_service.backup(db.engine, open_store(settings), tmp_path / "bk")
    assert summary.tables["runs"] == 1 and summary.tables["metrics"] == 21
    assert summary.blobs == 2
    backup_service.verify(tmp_path / "bk")

    target_home = tmp_path / "restored-home"
    restored = settings.model_copy(
        update={
            "database_url": scratch_database_url,
            "home": target_home,
            "artifacts_uri": str(target_home / "artifacts"),
        }
    )
    target_db = Database(scratch_database_url)
    backup_service.restore(target_db.engine, BlobStore(restored.artifacts_path), tmp_path / "bk")
    target_db.dispose()

    server = LiveServer(restored.model_copy(update={"admin_token": None}))
    server.start()
    try:
        with MLOpsClient(api_token=carol_token, url=server.url) as client:
            after = client.get_run(run_id)
            assert after.params == before_run.params
            assert after.tags == before_run.tags
            assert after.metrics["loss"] == before_run.metrics["loss"]
            assert after.metrics["nan_metric"] != after.metrics["nan_metric"]  # NaN survives
            assert client.get_metric_history(run_id, "loss") == before_hist
            out = client.download_artifacts(run_id, "", str(tmp_path / "dl"))
            assert (Path(out) / "model.pt").read_bytes() == b"weights" * 10_000
            assert (Path(out) / "cfg" / "config.json").read_text() == '{"layers": 12}'
            # New rows after restore get fresh ids (sequences moved past the restored ones).
            with client.start_run("backup-exp") as run2:
                run2.log_metrics({"x": 1.0})
    finally:
        server.stop()


def test_restore_refuses_non_empty_and_corrupt(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    with db.session() as s:
        auth_service.create_user(s, "test", "dave")
    backup_service.backup(db.engine, open_store(settings), tmp_path / "bk")
    with pytest.raises(Conflict, match="empty"):
        backup_service.restore(db.engine, open_store(settings), tmp_path / "bk")
    users = tmp_path / "bk" / "db" / "users.jsonl"
    users.write_text(users.read_text().replace("dave", "mallory"))
    with pytest.raises(IntegrityError, match=r"users\.jsonl"):
        backup_service.verify(tmp_path / "bk")
    with pytest.raises(Conflict, match="not empty"):
        backup_service.backup(db.engine, open_store(settings), tmp_path / "bk")


def test_cli_backup_restore(
    settings: Settings,
    db: Database,
    tmp_path: Path,
    scratch_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from podstack.cli.main import app

    with db.session() as s:
        auth_service.create_user(s, "test", "erin", role="viewer")
    runner = CliRunner()
    monkeypatch.setenv("PODSTACK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PODSTACK_ARTIFACTS_URI", settings.artifacts_uri)
    monkeypatch.setenv("PODSTACK_HOME", str(settings.home))
    r = runner.invoke(app, ["backup", str(tmp_path / "bk")])
    assert r.exit_code == 0, r.output
    assert "Backup complete" in r.output
    r = runner.invoke(app, ["verify-backup", str(tmp_path / "bk")])
    assert r.exit_code == 0 and "all digests match" in r.output
    monkeypatch.setenv("PODSTACK_DATABASE_URL", scratch_database_url)
    monkeypatch.setenv("PODSTACK_ARTIFACTS_URI", str(tmp_path / "restored-artifacts"))
    r = runner.invoke(app, ["restore", str(tmp_path / "bk")], input="n\n")
    assert r.exit_code == 1 and "cancelled" in r.output
    r = runner.invoke(app, ["restore", str(tmp_path / "bk"), "--yes"])
    assert r.exit_code == 0, r.output
    target = Database(scratch_database_url)
    with target.session(readonly=True) as s:
        assert auth_service.get_user(s, "erin").role == "viewer"
    target.dispose()
    r = runner.invoke(app, ["restore", str(tmp_path / "bk"), "--yes"])
    assert r.exit_code == 1 and "empty database" in r.output

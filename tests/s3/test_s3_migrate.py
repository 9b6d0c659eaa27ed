"""``podstack artifacts migrate --to s3://…``: every blob of the local store copied into the
bucket, verified, resumable; then the same data served from the bucket."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from podstack import MLOpsClient
from podstack.cli.main import app
from podstack.server.artifacts.store import BlobStore
from podstack.server.artifacts.store_factory import open_uri
from podstack.server.artifacts.store_s3 import S3BlobStore
from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.s3_server import SeaweedS3
from tests.server.registry.helpers import make_run

pytestmark = pytest.mark.one_db


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "PODSTACK_HOME": str(settings.home),
        "PODSTACK_DATABASE_URL": settings.database_url,
        "PODSTACK_ARTIFACTS_URI": settings.artifacts_uri,
        "PODSTACK_MIGRATE_ON_START": "false",
        "COLUMNS": "200",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def test_migrate_copies_verifies_resumes_then_serves_from_the_bucket(
    api: httpx.Client,
    db: Database,
    settings: Settings,
    s3_uri: str,
    s3_server: SeaweedS3,
    cli_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = {"model.pt": b"weights to move", "data/big.bin": bytes(range(256)) * 40_000}
    run_id = make_run(api, files)
    local = BlobStore(settings.artifacts_path)
    target = open_uri(s3_uri)
    assert isinstance(target, S3BlobStore)
    # A previous, interrupted run had already copied one blob.
    target.put_iter([files["model.pt"]])

    runner = CliRunner()
    r = runner.invoke(app, ["artifacts", "migrate", "--to", s3_uri, "--jobs", "2"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    total = len(list(local.iter_digests()))
    assert f"{total} blob(s) in the source: {total - 1} copied" in out
    assert "1 already in the target" in out and "Complete." in out
    assert f"PODSTACK_ARTIFACTS_URI={s3_uri}" in out
    for d in local.iter_digests():
        assert target.exists(d)

    # Re-running copies nothing (the last pass after the switch is cheap).
    r = runner.invoke(app, ["artifacts", "migrate", "--to", s3_uri])
    assert r.exit_code == 0 and "0 copied" in r.output

    # After the switch: the same run's files, served from the bucket.
    monkeypatch.setenv("PODSTACK_ARTIFACTS_URI", s3_uri)
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    monkeypatch.delenv("PODSTACK_URL", raising=False)
    with MLOpsClient() as c:
        got = Path(c.download_artifacts(run_id, "data/big.bin", tmp_path / "dl"))
    assert got.read_bytes() == files["data/big.bin"]


def test_migrate_reports_referenced_blobs_it_cannot_find(
    api: httpx.Client, settings: Settings, s3_uri: str, cli_env: dict[str, str]
) -> None:
    make_run(api, {"lost.bin": b"removed from disk by hand"})
    BlobStore(settings.artifacts_path).delete(_sha(b"removed from disk by hand"))
    r = CliRunner().invoke(app, ["artifacts", "migrate", "--to", s3_uri])
    assert r.exit_code == 1
    assert "referenced blob(s) are in neither store" in " ".join(r.output.split())


@pytest.mark.parametrize(
    "to, says",
    [
        ("gs://bucket/x", "'gs' storage is not supported"),
        ("s3://no-such-bucket-for-migrate/x", "does not exist"),
    ],
)
def test_migrate_refuses_a_target_it_cannot_use(
    s3_server: SeaweedS3,
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    db: Database,
    to: str,
    says: str,
) -> None:
    s3_server.apply_env(monkeypatch)
    r = CliRunner().invoke(app, ["artifacts", "migrate", "--to", to])
    assert r.exit_code == 1
    assert says in " ".join(r.output.split())
    assert "Traceback" not in r.output


def test_migrate_refuses_the_same_store(
    settings: Settings, cli_env: dict[str, str], db: Database
) -> None:
    r = CliRunner().invoke(app, ["artifacts", "migrate", "--to", settings.artifacts_uri])
    assert r.exit_code == 1
    assert "same store" in " ".join(r.output.split())

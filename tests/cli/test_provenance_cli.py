"""`podstack models sign|verify|signature`, `podstack signing-keys`, `podstack download
--no-verify` and `podstack verify-store`, against a live server and on the local store."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import update
from typer.testing import CliRunner

from podstack.cli.main import app
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.registry.models import VersionFile
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.server.registry.helpers import make_run, new_version

runner = CliRunner()


@pytest.fixture
def env(live_server: LiveServer, api: httpx.Client) -> dict[str, str]:
    return {
        "PODSTACK_PROGRESS": "0",
        "COLUMNS": "200",
        "PODSTACK_URL": live_server.url,
        "PODSTACK_API_TOKEN": ADMIN_TOKEN,
    }


def _run(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def test_sign_verify_and_save_from_the_terminal(
    env: dict[str, str], api: httpx.Client, tmp_path: Path
) -> None:
    run_id = make_run(api, {"model.onnx": b"cli-signed-" + str(tmp_path).encode()})
    new_version(api, "cli-signed", run_id, "model.onnx")
    key = ec.generate_private_key(ec.SECP384R1())
    pem = tmp_path / "ci.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    out = _run(env, "models", "sign", "cli-signed", "1", "--key", str(pem))
    assert "Signed cli-signed" in out and "by admin" in out
    assert "Verified: signature" in _run(env, "models", "verify", "cli-signed", "1")
    keys = _run(env, "signing-keys")
    assert "server" in keys and "user" in keys
    server_pub = _run(env, "signing-keys", "--pem", "server")
    assert server_pub.startswith("-----BEGIN PUBLIC KEY-----")
    pub = tmp_path / "server.pub"
    pub.write_text(server_pub)
    out = _run(env, "models", "verify", "cli-signed", "1", "--trusted-key", str(pub))
    assert "by server" in out
    sig = tmp_path / "model.sig"
    assert "model_signing verify" in _run(
        env, "models", "signature", "cli-signed", "1", "-o", str(sig)
    )
    assert '"dsseEnvelope"' in sig.read_text()
    missing = _run(
        env, "models", "sign", "cli-signed", "1", "--key", str(tmp_path / "no.pem"), code=1
    )
    assert "No key file" in missing


def test_download_refuses_a_changed_manifest_unless_told(
    env: dict[str, str], api: httpx.Client, db: Database, tmp_path: Path
) -> None:
    run_id = make_run(api, {"a.bin": b"A-" + str(tmp_path).encode(), "b.bin": b"B"})
    new_version(api, "cli-forged", run_id, "")
    with db.session() as s:
        s.execute(update(VersionFile).where(VersionFile.path == "a.bin").values(sha256="f" * 64))
    result = runner.invoke(
        app, ["download", "cli-forged", "1", "--dest", str(tmp_path / "x")], env=env
    )
    assert result.exit_code == 1 and "a.bin" in result.stderr, result.output
    assert not (tmp_path / "x").exists()
    refused = runner.invoke(app, ["models", "verify", "cli-forged", "1"], env=env)
    assert (
        refused.exit_code == 1 and "content differs from what was signed: a.bin" in refused.stderr
    )


def test_verify_store_reports_damage_and_exits_1(
    settings: Settings, db: Database, api: httpx.Client, live_server: LiveServer, tmp_path: Path
) -> None:
    content = b"store-check-" + str(tmp_path).encode()
    run_id = make_run(api, {"model.pt": content})
    new_version(api, "cli-store", run_id, "model.pt")
    local = {
        "PODSTACK_PROGRESS": "0",
        "COLUMNS": "200",
        "PODSTACK_URL": "",
        "PODSTACK_HOME": str(settings.home),
        "PODSTACK_DATABASE_URL": settings.database_url,
        "PODSTACK_ARTIFACTS_URI": settings.artifacts_uri,
    }
    assert "Everything verifies." in _run(local, "verify-store")
    import hashlib

    blob = live_server.app.state.store.path_for(hashlib.sha256(content).hexdigest())
    original = blob.read_bytes()
    blob.chmod(0o600)
    blob.write_bytes(b"X" + original[1:])
    try:
        out = _run(local, "verify-store", code=1)
    finally:
        blob.write_bytes(original)
    assert "corrupted" in out and "breaks cli-store v1: model.pt" in out

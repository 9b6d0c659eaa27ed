"""A model server started by the local target sees none of the server's secrets: not the admin
token, not the database URL, no other PODSTACK_* setting, not the artifact bucket's secret key
(checked in /proc/<pid>/environ, which is what another process of the same user can read).
Its log and model files are owner-only."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from podstack import MLOpsClient
from podstack.server.config import Settings
from podstack.server.deployments import local

SECRET_TOKEN = "pst_child-env-admin-token-do-not-leak"
SECRET_DB_URL = "postgresql+psycopg://podstack:db-password-do-not-leak@db.internal/podstack"
SECRET_AWS = "aws-secret-do-not-leak"


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = [item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item]
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def test_model_server_environment_has_no_server_secrets(
    sdk: MLOpsClient,
    register: Any,
    sk_model: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v = register("env-check", sk_model)
    # The server process holds these (set now: the live server's settings are already built).
    monkeypatch.setenv("PODSTACK_ADMIN_TOKEN", SECRET_TOKEN)
    monkeypatch.setenv("PODSTACK_DATABASE_URL", SECRET_DB_URL)
    monkeypatch.setenv("PODSTACK_SMTP_PASSWORD", "smtp-do-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_AWS)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "aws-session-do-not-leak")
    monkeypatch.setenv("PGPASSWORD", "pg-do-not-leak")
    monkeypatch.setenv("PODSTACK_CHILD_ENV_CANARY_PATH_OK", "1")  # any PODSTACK_* goes
    before = set(local._CHILDREN)

    dep = sdk.deploy_model("env-check", version=v.version, endpoint_name="env-check")
    assert dep.status == "ready"
    (pid,) = set(local._CHILDREN) - before

    env = _environ(pid)
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    for secret in (SECRET_TOKEN, SECRET_DB_URL, SECRET_AWS, "do-not-leak", "db-password"):
        assert secret not in raw
    assert not [k for k in env if k.startswith("PODSTACK_")], env.keys()
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PGPASSWORD"):
        assert name not in env
    # What the server needs to run is still there, and it serves.
    assert env["PYTHONUNBUFFERED"] == "1" and "PATH" in env
    assert sdk.predict("env-check", [[0.0, 1.0]]).model_version == str(v.version)

    # Its log (may hold request data) and its model files: owner-only, like the home.
    work = Path(settings.home) / "deployments"
    logs = list((work / "logs").glob("env-check-*.log"))
    assert logs
    for path in [work / "logs", *logs, work / "models"]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    for path in (work / "models").rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path

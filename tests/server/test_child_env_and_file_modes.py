"""Unit rules behind the child environment (podstack.server.child_env) and owner-only files
(podstack.server.file_modes); the end-to-end checks start real model servers, jobs and
`podstack server` (tests/server/deployments/test_child_env.py,
tests/server/schedules/test_job_env.py, tests/cli/test_server_file_modes.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from podstack.server import file_modes
from podstack.server.child_env import safe_child_env
from podstack.server.config import Settings


def test_every_podstack_setting_and_storage_secret_is_dropped() -> None:
    server_env = {
        "PATH": "/usr/bin",
        "HOME": "/home/svc",
        "PODSTACK_ADMIN_TOKEN": "t",
        "PODSTACK_DATABASE_URL": "postgresql://u:p@h/d",
        "PODSTACK_SOME_FUTURE_SETTING": "x",
        "podstack_lowercase_too": "x",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_SESSION_TOKEN": "s",
        "AWS_SECURITY_TOKEN": "s",
        "PGPASSWORD": "p",
        "AWS_REGION": "eu-west-1",
    }
    env = safe_child_env({"PODSTACK_RUN_ID": "run-1", "X": "1"}, environ=server_env)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/svc",
        "AWS_REGION": "eu-west-1",
        "PODSTACK_RUN_ID": "run-1",  # added back explicitly by the caller
        "X": "1",
    }


def test_private_dirs_and_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        deep = file_modes.private_dirs(tmp_path / "a" / "b" / "c")
        with file_modes.open_private(deep / "log") as fh:
            fh.write(b"x")
        assert file_modes.ensure_private_file(tmp_path / "db" / "x.db") is True
        assert file_modes.ensure_private_file(tmp_path / "db" / "x.db") is False
    finally:
        os.umask(old)
    for p in (tmp_path / "a", tmp_path / "a" / "b", deep, tmp_path / "db"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    for p in (deep / "log", tmp_path / "db" / "x.db"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_mode_warnings_name_each_wide_path_and_the_fix(tmp_path: Path) -> None:
    home = file_modes.private_dirs(tmp_path / "home")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    db = outside / "p.db"
    db.touch()
    db.chmod(0o640)
    (home / "session_secret").touch()
    (home / "session_secret").chmod(0o600)
    (home / "notes.txt").touch()
    (home / "notes.txt").chmod(0o604)
    settings = Settings(
        home=home, database_url=f"sqlite:///{db}", artifacts_uri=str(outside / "artifacts")
    )
    found = file_modes.mode_warnings(settings)
    assert len(found) == 2, found
    assert found[0].startswith(f"{home / 'notes.txt'} is a file")
    assert "mode 0604" in found[0] and f"chmod -R go-rwx {home}" in found[0]
    assert found[1].startswith(f"{db} is a file") and f"chmod go-rwx {db}" in found[1]
    # PostgreSQL: no database file to look at.
    settings = Settings(
        home=home, database_url="postgresql+psycopg://h/d", artifacts_uri=str(home / "artifacts")
    )
    assert len(file_modes.mode_warnings(settings)) == 1

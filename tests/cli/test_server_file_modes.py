"""`podstack server` keeps its files to its own user: a new home is 0700 and everything the
server writes in it -- the SQLite database and its -wal/-shm, the session secret, artifact
blobs and their directories -- has no group or other permission. Pre-existing files that
are wider are reported at start (one line per path, with the fix), never silently changed."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from podstack import MLOpsClient
from tests.cli.test_server_cmd import ServerProcess
from tests.conftest import free_port

TOKEN = "pst_file-modes-admin-token"


def _env(home: Path) -> dict[str, str]:
    # The database is the default one in the home whatever PODSTACK_TEST_DB says: these are
    # the files under test (PostgreSQL keeps its own files).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODSTACK_")}
    env.update(
        {
            "PODSTACK_HOME": str(home),
            "PODSTACK_ADMIN_TOKEN": TOKEN,
            "PODSTACK_BACKGROUND_WORKERS": "false",
            # One worker process: the tests signal and kill the process they started.
            "PODSTACK_WORKERS": "1",
            "PODSTACK_PROGRESS": "0",
        }
    )
    return env


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def servers():
    started: list[ServerProcess] = []
    yield started
    for s in started:
        s.kill()


def test_new_home_and_everything_in_it_is_owner_only(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    home = tmp_path / "home"
    port = free_port()
    server = ServerProcess(["--port", str(port)], _env(home))
    servers.append(server)
    server.wait_for_output("API docs")

    # Write something: a run with an artifact (a blob in the store), so the WAL is in use.
    src = tmp_path / "weights.bin"
    src.write_bytes(b"\0" * 1000)
    client = MLOpsClient(api_token=TOKEN, url=f"http://127.0.0.1:{port}")
    with client.start_run(experiment_id="modes") as run:
        run.log_params({"a": 1})
        run.log_artifact(str(src))
    client.close()

    db = home / "podstack.db"
    assert _mode(home) == 0o700
    assert _mode(db) == 0o600
    for suffix in ("-wal", "-shm"):
        assert _mode(db.with_name(db.name + suffix)) == 0o600, suffix  # open while it runs
    assert _mode(home / "session_secret") == 0o600
    blobs = [p for p in (home / "artifacts" / "blobs").rglob("*") if p.is_file()]
    assert blobs
    for p in blobs:
        assert _mode(p) == 0o600, p
    # Nothing anywhere under the home is open to group or others.
    wide = [
        (str(p), oct(_mode(p)))
        for p in [home, *home.rglob("*")]
        if not p.is_symlink() and _mode(p) & 0o077
    ]
    assert wide == []
    assert "other local users" not in server.stderr + server.stdout  # nothing to warn about
    assert server.terminate() == 0


def test_existing_wide_files_are_reported_with_the_fix(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    db = home / "podstack.db"
    db.touch()  # an empty file is an empty SQLite database: the server migrates it
    db.chmod(0o644)
    (home / "artifacts").mkdir()
    (home / "artifacts").chmod(0o755)
    port = free_port()
    server = ServerProcess(["--port", str(port)], _env(home))
    servers.append(server)
    out = server.wait_for_output("API docs")

    err = server.stderr
    fix = f"chmod -R go-rwx {home}"
    lines = [ln for ln in err.splitlines() if "other local users can access" in ln]
    for path, mode in ((home, "0755"), (db, "0644"), (home / "artifacts", "0755")):
        (line,) = [ln for ln in lines if ln.startswith(f"{path} is a ")]
        assert f"mode {mode}" in line and fix in line
    assert len(lines) == 3, lines
    # ...and in the banner.
    assert "Other local users can read files under" in out and fix in out
    # Reported, not changed behind the operator's back.
    assert _mode(home) == 0o755 and _mode(db) == 0o644
    assert server.terminate() == 0

    # After the fix the next start is quiet.
    subprocess.run(["chmod", "-R", "go-rwx", str(home)], check=True)
    again = ServerProcess(["--port", str(port)], _env(home))
    servers.append(again)
    again.wait_for_output("API docs")
    assert "other local users" not in again.stderr + again.stdout
    assert again.terminate() == 0

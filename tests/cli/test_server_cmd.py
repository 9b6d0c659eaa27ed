"""`podstack server` as a real subprocess: first-start banner, auth, refusal, graceful stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text

from podstack.cli.server import is_loopback
from tests.conftest import PG_ADMIN_URL, free_port

PODSTACK = str(Path(sys.executable).parent / "podstack")


class ServerProcess:
    """A `podstack server` child whose stdout/stderr are collected by reader threads."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [PODSTACK, "server", *args],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def wait_for_output(self, needle: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.stdout:
                return self.stdout
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"{needle!r} not printed (exit {self.proc.poll()}):\n{self.stdout}\n{self.stderr}"
        )

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def database_for_server(tmp_path: Path) -> Iterator[str]:
    """An empty database (no users yet) of the kind under test."""
    if os.environ.get("PODSTACK_TEST_DB", "sqlite") != "postgresql":
        yield f"sqlite:///{tmp_path / 'server.db'}"
        return
    name = f"podstack_srv_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture
def server_env(tmp_path: Path, database_for_server: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODSTACK_")}
    env.update(
        {
            "PODSTACK_HOME": str(tmp_path / "home"),
            "PODSTACK_DATABASE_URL": database_for_server,
            "PODSTACK_BACKGROUND_WORKERS": "false",
            # One worker process: the tests signal and kill the process they started.
            "PODSTACK_WORKERS": "1",
            "PODSTACK_LOG_LEVEL": "info",  # so the token-not-logged check sees real logs
        }
    )
    return env


@pytest.fixture
def start_server(server_env: dict[str, str]) -> Iterator:
    started: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        proc = ServerProcess(list(args), env or server_env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def _me(port: int, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"http://127.0.0.1:{port}/api/v1/me", headers=headers, timeout=10)


# The banner and the clean stop are the CLI's; a first start against PostgreSQL (schema created,
# admin bootstrapped) is the two-worker test's below.
@pytest.mark.one_db
def test_first_start_prints_token_and_instructions_then_stops_cleanly(start_server) -> None:
    port = free_port()
    server = start_server("--host", "127.0.0.1", "--port", str(port))
    out = server.wait_for_output("podstack users create")
    url = f"http://127.0.0.1:{port}"
    token = next(w for w in out.split() if w.startswith("pst_"))
    for needle in (
        f"running at {url}",
        f"Open {url}/login",
        "Username: admin",
        "accepts an API token in place of a password",
        f"export PODSTACK_URL={url}",
        f"export PODSTACK_API_TOKEN={token}",
        "from podstack import MLOpsClient",
        "only this once",
    ):
        assert needle in out, needle
    # The secret went to the console only, never through logging (stderr).
    assert token not in server.stderr

    assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    assert _me(port, token).json()["username"] == "admin"
    assert _me(port, None).status_code == 401

    assert server.terminate() == 0
    assert "Application shutdown complete" in server.stderr or "Finished server" in server.stderr

    # A restart on the same database creates nothing and prints no token.
    again = start_server("--port", str(port))
    again.wait_for_output("API docs")
    time.sleep(0.2)  # the banner is one write; let the reader thread drain it
    assert "First start" not in again.stdout and token not in again.stdout
    assert _me(port, token).json()["username"] == "admin"
    assert again.terminate() == 0


@pytest.mark.one_db
def test_no_auth_refused_on_public_host(start_server, server_env: dict[str, str]) -> None:
    port = free_port()
    server = start_server("--no-auth", "--host", "0.0.0.0", "--port", str(port))
    code = server.proc.wait(timeout=30)
    assert code != 0
    assert "--no-auth is only allowed on a loopback host" in server.stderr
    assert "Traceback" not in server.stderr
    # Refused before anything was set up or bound.
    assert not (Path(server_env["PODSTACK_HOME"]) / "podstack.db").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


@pytest.mark.one_db
def test_port_in_use_fails_before_creating_the_admin(
    start_server, server_env: dict[str, str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = start_server("--port", str(port))
        assert server.proc.wait(timeout=30) == 1
    assert "Cannot listen on 127.0.0.1:" in server.stderr
    assert "pst_" not in server.stdout
    # Nothing was set up (so no one-time token was lost): the next start still bootstraps.
    engine = create_engine(server_env["PODSTACK_DATABASE_URL"])
    try:
        assert not inspect(engine).has_table("users")
    finally:
        engine.dispose()


@pytest.mark.one_db
def test_no_auth_on_loopback_acts_as_local_admin(start_server) -> None:
    port = free_port()
    server = start_server("--no-auth", "--port", str(port))
    out = server.wait_for_output("podstack users create")
    assert "Authentication is OFF" in out
    me = _me(port, None).json()
    assert (me["username"], me["role"]) == ("local", "admin")
    assert server.terminate() == 0


# On PostgreSQL, where two workers starting at once race to create the schema and the admin in
# production; several workers on SQLite are tests/cli/test_server_workers.py.
@pytest.mark.postgres_only
def test_admin_token_from_env_with_two_workers(start_server, server_env: dict[str, str]) -> None:
    secret = "pst_from-env-" + uuid.uuid4().hex
    port = free_port()
    server = start_server(
        "--port", str(port), "--workers", "2", env={**server_env, "PODSTACK_ADMIN_TOKEN": secret}
    )
    out = server.wait_for_output("podstack users create")
    assert "PODSTACK_ADMIN_TOKEN" in out and secret not in out
    assert 'export PODSTACK_API_TOKEN="$PODSTACK_ADMIN_TOKEN"' in out
    for _ in range(4):  # whichever worker answers
        assert _me(port, secret).json()["username"] == "admin"
    assert _me(port, "pst_wrong").status_code == 401
    assert server.terminate() == 0


@pytest.mark.one_db
@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.evil.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


@pytest.mark.one_db
@pytest.mark.parametrize(
    "uri", ["gs://bucket/models", "azure://container/x", "https://example.com/store"]
)
def test_artifacts_uri_it_cannot_serve_stops_the_server(
    server_env: dict[str, str], tmp_path: Path, uri: str
) -> None:
    """``gs://…`` used to become a local folder ``gs:`` in the working directory (``s3://`` is
    the object store: tests/s3)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    port = free_port()
    done = subprocess.run(
        [PODSTACK, "server", "--port", str(port)],
        env={**server_env, "PODSTACK_ARTIFACTS_URI": uri},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    scheme = uri.split(":")[0]
    assert f"PODSTACK_ARTIFACTS_URI={uri!r}" in done.stderr
    assert f"{scheme!r} storage is not supported" in done.stderr
    assert "file://" in done.stderr  # says what is valid
    assert "Traceback" not in done.stderr
    assert list(cwd.iterdir()) == []  # no "gs:" folder
    assert not (Path(server_env["PODSTACK_HOME"]) / "podstack.db").exists()


@pytest.mark.one_db
def test_embedded_mode_refuses_an_artifacts_uri_it_cannot_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from podstack import MLOpsClient

    for k in ("PODSTACK_URL", "PODSTACK_API_TOKEN", "PODSTACK_DATABASE_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PODSTACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PODSTACK_ARTIFACTS_URI", "gs://bucket/prefix")
    with pytest.raises(ValidationError, match="'gs' storage is not supported"):
        MLOpsClient()
    assert not (tmp_path / "gs:").exists()


@pytest.mark.one_db
@pytest.mark.parametrize("kind", ["path", "file_uri"])
def test_local_artifacts_uris_still_accepted(tmp_path: Path, kind: str) -> None:
    from podstack.server.config import Settings

    target = tmp_path / "store"
    uri = str(target) if kind == "path" else f"file://{target}"
    assert Settings(home=tmp_path, artifacts_uri=uri).artifacts_path == target


@pytest.mark.one_db
def test_an_object_store_has_no_local_folder(tmp_path: Path) -> None:
    """Asking the bucket store for its folder used to answer ``Path("s3:/bucket/p")``: code
    that did so wrote into a folder named ``s3:`` in the working directory."""
    from podstack.server.config import Settings

    settings = Settings(home=tmp_path, artifacts_uri="s3://bucket/prefix")
    with pytest.raises(ValueError, match="not a local folder"):
        _ = settings.artifacts_path
    assert not (Path.cwd() / "s3:").exists()

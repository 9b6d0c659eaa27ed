"""Real ``podstack server`` processes for the reliability suite: start, wait until ready,
SIGKILL, restart on the same database and store, sample memory, read the captured output.

Unlike the in-thread ``live_server`` fixture these are separate OS processes, so a SIGKILL is
a real crash (no ``finally``, no lifespan shutdown, no flush) and RSS is the server's alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, text

from tests.conftest import ADMIN_TOKEN, PG_ADMIN_URL, current_db_kind, free_port

PODSTACK = str(Path(sys.executable).parent / "podstack")
SESSION_SECRET = "reliability-session-secret-0123456789"


def create_database(tmp_path: Path) -> str:
    """A fresh, empty database of the kind under test (drop it with ``drop_database``)."""
    if current_db_kind() != "postgresql":
        return f"sqlite:///{tmp_path / f'rel-{uuid.uuid4().hex[:6]}.db'}"
    name = f"podstack_rel_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    if not url.startswith("postgresql"):
        return
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@dataclass
class ServerSpec:
    """Everything two starts of "the same server" share: database, home, artifact store."""

    database_url: str
    home: Path
    artifacts: Path
    env: dict[str, str] = field(default_factory=dict)

    def environ(self, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PODSTACK_")}
        env.update(
            {
                "PODSTACK_HOME": str(self.home),
                "PODSTACK_DATABASE_URL": self.database_url,
                "PODSTACK_ARTIFACTS_URI": str(self.artifacts),
                "PODSTACK_ADMIN_TOKEN": ADMIN_TOKEN,
                "PODSTACK_SESSION_SECRET": SESSION_SECRET,
                "PODSTACK_BACKGROUND_WORKERS": "false",
                # One worker process: the crash tests kill the process that serves.
                "PODSTACK_WORKERS": "1",
                "PODSTACK_LOG_LEVEL": "warning",
                "PODSTACK_PORT": str(port),
            }
        )
        env.update(self.env)
        env.update(extra or {})
        return env


class ServerProcess:
    """One ``podstack server`` child; stdout/stderr are collected by reader threads."""

    def __init__(self, spec: ServerSpec, *, port: int | None = None, **extra_env: str) -> None:
        self.spec = spec
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = spec.environ(self.port, extra_env)
        self.proc = subprocess.Popen(
            [PODSTACK, "server", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
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
    def _pump(stream, sink: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            sink.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def output(self) -> str:
        return "".join(self._out) + "".join(self._err)

    def wait_ready(self, timeout: float = 60) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"server on port {self.port} not ready (exit {self.proc.poll()}):\n{self.output}"
        )

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def kill(self) -> None:
        """SIGKILL: the crash the suite is about (nothing runs after it in the server)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)
        self._drain()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._drain()
        return self.proc.returncode

    def _drain(self) -> None:
        for t in self._threads:
            t.join(timeout=5)

    def client(self, token: str = ADMIN_TOKEN, **kw: object) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=kw.pop("timeout", 60),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )

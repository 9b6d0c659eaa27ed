"""Our side: ``podstack server`` as a subprocess (one worker) on a temp ``PODSTACK_HOME``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from benchmarks.mlflow_compare.servers import ServerProcess, free_port, spawn

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"


def podstack_executable() -> list[str]:
    exe = Path(sys.executable).with_name("podstack")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "podstack.cli.main"]


def start_server(db_url: str, workdir: Path) -> ServerProcess:
    """Migrates, creates admin with ``ADMIN_TOKEN``, serves; waits until ready and idle."""
    port = free_port()
    home = workdir / "podstack-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PODSTACK_")},
        "PODSTACK_HOME": str(home),
        "PODSTACK_DATABASE_URL": db_url,
        "PODSTACK_ARTIFACTS_URI": str(home / "artifacts"),
        "PODSTACK_ADMIN_TOKEN": ADMIN_TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    argv = [
        *podstack_executable(),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    server = spawn(
        "podstack", argv, env, workdir / "podstack-server.log", f"http://127.0.0.1:{port}", db_url
    )
    server.extra["home"] = str(home)
    try:
        server.wait_ready("/readyz", timeout=120)
        server.extra["idle_wait_s"] = str(server.wait_idle())
    except BaseException:
        server.stop()
        raise
    return server

"""MLflow side: its own virtualenv (never ours) and a running ``mlflow server``.

The venv lives in ``benchmarks/.mlflow-venv`` (gitignored) and is reused when it already holds
the pinned version. The server runs the way the issue asks: SQL backend, proxied artifacts
(``--artifacts-destination``; the client uploads through the server), one worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.mlflow_compare.servers import ServerProcess

MLFLOW_VERSION = os.environ.get("BENCH_MLFLOW_VERSION", "3.17.2")
BENCH_DIR = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("BENCH_MLFLOW_VENV", BENCH_DIR / ".mlflow-venv"))
# psycopg2 is MLflow's PostgreSQL driver (``postgresql://``); psutil serves measure.py.
EXTRA_PACKAGES = ["psycopg2-binary", "psutil"]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def installed_version() -> str | None:
    py = venv_python()
    if not py.exists():
        return None
    probe = (
        "import importlib.metadata as m, sys\n"
        "try:\n"
        "    import psycopg2, psutil\n"
        "    print(m.version('mlflow'))\n"
        "except Exception:\n"
        "    sys.exit(1)\n"
    )
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_venv(log=print) -> Path:  # type: ignore[no-untyped-def]
    """Creates/repairs the MLflow venv; returns its python. Installs with *that venv's* pip."""
    if installed_version() == MLFLOW_VERSION:
        return venv_python()
    log(f"Installing mlflow=={MLFLOW_VERSION} into {VENV} (once; reused afterwards)...")
    if not venv_python().exists():
        # The interpreter running us is 3.11+, which MLflow supports.
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    # One pip run with the venv's bundled pip (upgrading pip first cost a download and an
    # install for nothing). pip's wheel cache (~/.cache/pip) is on, so a second fresh clone
    # installs from local wheels. -qq: errors only (a cold install otherwise prints a warning
    # per package for every unused local index the machine's pip.conf names).
    pip = [str(venv_python()), "-m", "pip", "install", "-qq", "--disable-pip-version-check"]
    # No byte-compiling at install: CPU this 2-core machine spends on the tests instead;
    # Python compiles (and caches) the modules the client actually imports.
    pip.append("--no-compile")
    subprocess.run([*pip, f"mlflow=={MLFLOW_VERSION}", *EXTRA_PACKAGES], check=True)
    got = installed_version()
    if got != MLFLOW_VERSION:
        raise RuntimeError(f"MLflow venv at {VENV} has {got!r}, expected {MLFLOW_VERSION}")
    return venv_python()


def start_server(db_url: str, workdir: Path) -> ServerProcess:
    """``mlflow server`` on a free loopback port, one worker, proxied artifacts in ``workdir``.

    Waits until it answers ``/health`` and its CPU is quiet."""
    # Imported here, not at the top: ``ensure_venv`` runs under the system interpreter while
    # `make test` builds .venv (scripts/ensure-test-deps.sh), and servers.py needs httpx/psutil.
    from benchmarks.mlflow_compare.servers import free_port, spawn

    port = free_port()
    artifacts = workdir / "mlflow-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [
        str(VENV / "bin" / "mlflow"),
        "server",
        "--backend-store-uri",
        db_url,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # Never inherit a user's MLFLOW_* settings (a remote tracking URI, auth, ...).
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    server = spawn(
        "mlflow",
        argv,
        env,
        workdir / "mlflow-server.log",
        f"http://127.0.0.1:{port}",
        db_url,
    )
    try:
        # The first start migrates a new database (dozens of Alembic revisions).
        server.wait_ready("/health", timeout=240)
        server.extra["idle_wait_s"] = str(server.wait_idle())
    except BaseException:
        server.stop()
        raise
    return server

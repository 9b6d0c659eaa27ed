"""The released MLflow client (its own venv, ``benchmarks/.mlflow-venv``, mlflow 3.17.x) driving
a live Podstack server over a socket. Nothing is mocked: the client is the unmodified package.

``mlflow_run(script)`` runs a Python snippet in MLflow's venv with ``MLFLOW_TRACKING_URI`` set
to the live server and ``MLFLOW_TRACKING_TOKEN`` to a Podstack token (admin unless ``token=``
says otherwise); ``mlflow_json(script)`` does the same and parses the JSON the snippet prints
last (``emit(obj)`` is predefined for that). Each snippet is one interpreter start (~2 s for
``import mlflow``): tests group many checks into one snippet.

``make test`` creates the venv on a clean clone (scripts/ensure-test-deps.sh calls
``ensure_venv``); without it these tests fail (never skip) under CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, IN_CI, LiveServer

# Put before every snippet: printing the answer as the last line.
_PRELUDE = """\
import json as _json, sys as _sys
def emit(obj):
    print(_json.dumps(obj, default=str))
    _sys.stdout.flush()
"""


@pytest.fixture(scope="session")
def mlflow_python() -> Path:
    from benchmarks.mlflow_compare.mlflow_env import installed_version, venv_python

    # The version check imports mlflow (seconds): once per session and worker.
    version = installed_version()
    if version is None or not version.startswith("3.17."):
        message = (
            f"the MLflow venv ({venv_python()}) is missing or has mlflow {version!r}; "
            "create it with: .venv/bin/python -c 'from benchmarks.mlflow_compare.mlflow_env "
            "import ensure_venv; ensure_venv()' (make test does this)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)  # a local run without the venv says so loudly
    return venv_python()


def mlflow_env(url: str, token: str | None, workdir: Path) -> dict[str, str]:
    """The child's environment: nothing MLflow-ish inherited, the server and token set, no
    retries (an error answer must show at once, not after MLflow's backoff)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PODSTACK_"))}
    env.update(
        MLFLOW_TRACKING_URI=url,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="60",
        PYTHONUNBUFFERED="1",
        # MLflow 3 reports usage to its vendor by default: no outbound calls from tests.
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        HOME=str(workdir),
        # matplotlib (log_figure) wants a writable cache and no display.
        MPLBACKEND="Agg",
        MPLCONFIGDIR=str(workdir / ".mpl"),
    )
    if token is not None:
        env["MLFLOW_TRACKING_TOKEN"] = token
    return env


MlflowRun = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def mlflow_run(mlflow_python: Path, live_server: LiveServer, tmp_path: Path) -> MlflowRun:
    """``mlflow_run(script, token=ADMIN_TOKEN, check=True, env=None)`` -> CompletedProcess."""

    def run(
        script: str,
        *,
        token: str | None = ADMIN_TOKEN,
        check: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        full_env = mlflow_env(live_server.url, token, tmp_path)
        full_env.update(env or {})
        code = _PRELUDE + textwrap.dedent(script)
        done = subprocess.run(
            [str(mlflow_python), "-c", code],
            cwd=tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"MLflow snippet failed ({done.returncode}).\n--- stdout\n{done.stdout[-4000:]}"
                f"\n--- stderr\n{done.stderr[-8000:]}"
            )
        return done

    return run


@pytest.fixture
def mlflow_json(mlflow_run: MlflowRun) -> Callable[..., Any]:
    """Runs a snippet and returns the JSON of the last line it printed (``emit(obj)``)."""

    def run(script: str, **kwargs: Any) -> Any:
        done = mlflow_run(script, **kwargs)
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        assert lines, f"snippet printed nothing; stderr:\n{done.stderr[-4000:]}"
        return json.loads(lines[-1])

    return run

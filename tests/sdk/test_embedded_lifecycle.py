"""Embedded mode as a user script experiences it: a real interpreter that never closes its
client must still exit promptly, with its data persisted."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from podstack import MLOpsClient


def test_unclosed_embedded_client_lets_python_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = textwrap.dedent("""
        from podstack import MLOpsClient
        client = MLOpsClient()
        with client.start_run(experiment_id="exit-test") as run:
            run.log_metrics({"acc": 0.5})
        print(run.id)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODSTACK_")}
    env["PODSTACK_HOME"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert run_id.startswith("run-")
    # The data is on disk in PODSTACK_HOME for the next process (or a server) to read.
    for k in ("PODSTACK_URL", "PODSTACK_DATABASE_URL", "PODSTACK_ARTIFACTS_URI"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("PODSTACK_HOME", str(tmp_path))
    with MLOpsClient() as client:
        assert client.get_run(run_id).metrics == {"acc": 0.5}

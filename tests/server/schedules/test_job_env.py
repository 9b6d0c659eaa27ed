"""A local job sees its own run's variables and none of the server's secrets: its initial
environment (/proc/self/environ, what any process of the same user can read) has no admin
token, no database URL, no other server setting and no artifact-bucket secret key. Its log
file is owner-only."""

from __future__ import annotations

import json
import stat
import sys
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from podstack.server.config import Settings
from podstack.server.schedules.scheduler import FakeClock
from tests.conftest import LiveServer
from tests.server.schedules.test_local_executor import MakeScheduler, _create

DUMP_ENV = """
import json, os, sys
raw = open("/proc/self/environ", "rb").read()
pairs = [p.split(b"=", 1) for p in raw.split(b"\\0") if b"=" in p]
env = {k.decode(): v.decode(errors="replace") for k, v in pairs}
env["__log_mode"] = str(os.fstat(1).st_mode)  # stdout is the job's log file
open(sys.argv[1], "w").write(json.dumps(env))
print("env dumped")
"""

SECRETS = {
    "PODSTACK_ADMIN_TOKEN": "pst_job-env-admin-token-do-not-leak",
    "PODSTACK_DATABASE_URL": "postgresql+psycopg://p:db-password-do-not-leak@db/podstack",
    "PODSTACK_SESSION_SECRET": "session-do-not-leak",
    "PODSTACK_SECRET_KEY": "secret-key-do-not-leak",
    "PODSTACK_OIDC_CLIENT_SECRET": "oidc-do-not-leak",
    "AWS_SECRET_ACCESS_KEY": "aws-do-not-leak",
    "AWS_SESSION_TOKEN": "aws-session-do-not-leak",
}


# Puts fake AWS credentials in the server's environment, which a bucket store would use.
@pytest.mark.local_store
def test_local_job_environment_has_no_server_secrets(
    api: httpx.Client,
    live_server: LiveServer,
    settings: Settings,
    make_scheduler: MakeScheduler,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "env.json"
    sch = _create(
        api,
        "env-dump",
        [sys.executable, "-c", DUMP_ENV, str(out)],
        executor={
            "command": [sys.executable, "-c", DUMP_ENV, str(out)],
            "env": {"MY_SETTING": "kept"},
        },
    )
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    ex = api.post(f"/schedules/{sch['id']}/trigger").json()
    make_scheduler(
        FakeClock(datetime.fromisoformat(ex["scheduled_time"])), api_url=live_server.url
    ).run_until_idle(timeout=60)
    ex = api.get(f"/schedule-executions/{ex['id']}").json()
    assert ex["status"] == "succeeded", ex

    raw = out.read_text()
    for secret in SECRETS.values():
        assert secret not in raw
    env = json.loads(raw)
    # The log the server captured the job's output in was created owner-only.
    assert stat.S_IMODE(int(env.pop("__log_mode"))) == 0o600
    for name in SECRETS:
        assert name not in env
    # What the job needs is there: its run, its run-scoped token, its schedule's own env.
    assert env["PODSTACK_RUN_ID"] == ex["run_id"]
    assert env["PODSTACK_URL"] == live_server.url
    assert env["PODSTACK_API_TOKEN"].startswith("pst_")
    assert env["MY_SETTING"] == "kept" and "PATH" in env
    allowed = {"PODSTACK_URL", "PODSTACK_API_TOKEN", "PODSTACK_RUN_ID", "PODSTACK_EXPERIMENT_ID"}
    allowed |= {"PODSTACK_SCHEDULE", "PODSTACK_EXECUTION_ID", "PODSTACK_SCHEDULED_TIME"}
    allowed |= {"PODSTACK_PARAMS"}
    extra = {k for k in env if k.startswith("PODSTACK_") and not k.startswith("PODSTACK_PARAM_")}
    assert extra <= allowed, extra - allowed
    work = Path(settings.home) / "executions"
    assert stat.S_IMODE(work.stat().st_mode) & 0o077 == 0

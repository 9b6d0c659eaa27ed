"""The local executor for real: a training script using ``MLOpsClient()`` logs into its run
over the live server; timeouts and cancellation kill the whole process group."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import select

from podstack.server.auth.models import ApiToken
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.schedules.scheduler import FakeClock, Scheduler
from tests.conftest import LiveServer

MakeScheduler = Callable[..., Scheduler]

TRAIN = """
import os, sys
from podstack import MLOpsClient
from podstack.errors import PermissionDenied

client = MLOpsClient()  # PODSTACK_URL and PODSTACK_API_TOKEN from the environment
run_id = os.environ["PODSTACK_RUN_ID"]
lr = float(os.environ["PODSTACK_PARAM_LR"])
for step in range(3):
    client.log_metrics(run_id, {"loss": 1.0 / (step + 1), "lr": lr}, step=step)
print("trained", run_id, "with lr", lr, "epochs", os.environ["PODSTACK_PARAM_EPOCHS"])
try:
    client.list_experiments()
except PermissionDenied:
    print("token is limited to its run")
print("a warning on stderr", file=sys.stderr)
"""

SLEEPER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1], "w").write(str(child.pid))
print("started child", child.pid, flush=True)
time.sleep(120)
"""


def _create(api: httpx.Client, name: str, command: list[str], **fields: object) -> dict:
    assert api.post("/experiments", json={"name": "nightly"}).status_code in (201, 409)
    r = api.post(
        "/schedules",
        json={
            "name": name,
            "experiment_id": "nightly",
            "cron": "0 2 * * *",
            "config": {"lr": 0.001, "epochs": 3},
            "executor": {"command": command},
            **fields,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def test_cron_fire_runs_training_script_that_logs_into_its_run(
    api: httpx.Client,
    live_server: LiveServer,
    db: Database,
    make_scheduler: MakeScheduler,
    tmp_path: Path,
) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    sch = _create(api, "nightly-train", [sys.executable, str(script)])
    # The injected clock jumps to the schedule's next fire time; the job runs for real.
    clock = FakeClock(datetime.fromisoformat(sch["next_fire_at"]))
    scheduler = make_scheduler(clock, api_url=live_server.url)
    scheduler.run_until_idle(timeout=60)

    (ex,) = api.get(f"/schedules/{sch['id']}/executions").json()["items"]
    assert (ex["status"], ex["trigger"], ex["exit_code"]) == ("succeeded", "cron", 0), ex
    assert ex["scheduled_time"] == sch["next_fire_at"]
    assert ex["duration_seconds"] is not None and ex["duration_seconds"] >= 0
    assert "trained" in ex["log_tail"] and "a warning on stderr" in ex["log_tail"]
    assert "token is limited to its run" in ex["log_tail"]
    run = api.get(f"/runs/{ex['run_id']}").json()
    assert run["status"] == "FINISHED"
    assert run["params"] == {"lr": "0.001", "epochs": "3"}
    assert run["metrics"] == {"loss": pytest.approx(1 / 3), "lr": 0.001}
    assert run["tags"]["podstack.schedule"] == "nightly-train"
    assert run["tags"]["podstack.execution_id"] == ex["id"]
    history = api.get(f"/runs/{ex['run_id']}/metrics/loss/history").json()["items"]
    assert [p["step"] for p in history] == [0, 1, 2]
    # The full output is a run artifact.
    log = api.get(f"/runs/{ex['run_id']}/artifacts/{ex['log_artifact']}")
    assert log.status_code == 200, log.text
    assert "trained" in log.text and "a warning on stderr" in log.text
    # The job's token was limited to its run and is revoked now that it ended.
    with db.session(readonly=True) as s:
        tok = s.scalar(select(ApiToken).where(ApiToken.scope == f"run:{ex['run_id']}"))
        assert tok is not None and tok.revoked_at is not None
    assert api.get(f"/schedules/{sch['id']}").json()["last_execution"]["id"] == ex["id"]


def test_failing_script_is_failed_with_exit_code(
    api: httpx.Client, live_server: LiveServer, make_scheduler: MakeScheduler
) -> None:
    sch = _create(api, "broken", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    ex = api.post(f"/schedules/{sch['name']}/trigger").json()
    assert (ex["status"], ex["trigger"]) == ("queued", "manual")
    make_scheduler(
        FakeClock(datetime.fromisoformat(ex["scheduled_time"])), api_url=live_server.url
    ).run_until_idle(timeout=30)
    ex = api.get(f"/schedule-executions/{ex['id']}").json()
    assert (ex["status"], ex["exit_code"]) == ("failed", 3)
    assert "boom" in ex["log_tail"] and "Exited with code 3" in ex["message"]
    assert api.get(f"/runs/{ex['run_id']}").json()["status"] == "FAILED"


def test_missing_program_fails_clearly(
    api: httpx.Client, live_server: LiveServer, make_scheduler: MakeScheduler
) -> None:
    sch = _create(api, "typo", ["definitely-not-a-program-xyz", "train.py"])
    ex = api.post(f"/schedules/{sch['id']}/trigger").json()
    make_scheduler(
        FakeClock(datetime.fromisoformat(ex["scheduled_time"])), api_url=live_server.url
    ).run_until_idle(timeout=30)
    ex = api.get(f"/schedule-executions/{ex['id']}").json()
    assert ex["status"] == "failed"
    assert "no such program" in ex["message"] and "definitely-not-a-program-xyz" in ex["message"]


def test_timeout_kills_the_process_group(
    api: httpx.Client, live_server: LiveServer, make_scheduler: MakeScheduler, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    sch = _create(api, "slow", [sys.executable, "-c", SLEEPER, str(pidfile)], timeout_seconds=30)
    ex = api.post(f"/schedules/{sch['id']}/trigger").json()
    clock = FakeClock(datetime.fromisoformat(ex["scheduled_time"]))
    scheduler = make_scheduler(clock, api_url=live_server.url, scheduler_kill_grace_seconds=2)
    scheduler.tick()  # starts it
    child = int(_wait_for(pidfile))
    leader = api.get(f"/schedule-executions/{ex['id']}").json()
    assert leader["status"] == "running"
    clock.advance(seconds=29)
    scheduler.tick()
    assert api.get(f"/schedule-executions/{ex['id']}").json()["status"] == "running"
    clock.advance(seconds=2)  # past the 30 s timeout
    scheduler.run_until_idle(timeout=30)
    ex = api.get(f"/schedule-executions/{ex['id']}").json()
    assert ex["status"] == "timed_out", ex
    assert "Timed out" in ex["message"] and "started child" in ex["log_tail"]
    assert _gone(child), "the job's child process survived the timeout"
    assert api.get(f"/runs/{ex['run_id']}").json()["status"] == "FAILED"


def test_cancel_kills_the_process_group(
    api: httpx.Client, live_server: LiveServer, make_scheduler: MakeScheduler, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    sch = _create(api, "cancel-me", [sys.executable, "-c", SLEEPER, str(pidfile)])
    ex = api.post(f"/schedules/{sch['id']}/trigger").json()
    scheduler = make_scheduler(
        FakeClock(datetime.fromisoformat(ex["scheduled_time"])),
        api_url=live_server.url,
        scheduler_kill_grace_seconds=2,
    )
    scheduler.tick()
    child = int(_wait_for(pidfile))
    r = api.post(f"/schedule-executions/{ex['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    scheduler.run_until_idle(timeout=30)
    ex = api.get(f"/schedule-executions/{ex['id']}").json()
    assert ex["status"] == "cancelled" and "Cancelled" in ex["message"]
    assert _gone(child)
    assert api.get(f"/runs/{ex['run_id']}").json()["status"] == "KILLED"
    # Cancelling again is a clear conflict.
    again = api.post(f"/schedule-executions/{ex['id']}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]["message"]


def test_overlap_skip_records_skipped_tick_while_job_runs(
    api: httpx.Client,
    live_server: LiveServer,
    make_scheduler: MakeScheduler,
    tmp_path: Path,
    settings: Settings,
) -> None:
    pidfile = tmp_path / "child.pid"
    sch = _create(api, "overlap", [sys.executable, "-c", SLEEPER, str(pidfile)], cron="* * * * *")
    clock = FakeClock(datetime.fromisoformat(sch["next_fire_at"]))
    scheduler = make_scheduler(clock, api_url=live_server.url, scheduler_kill_grace_seconds=2)
    scheduler.tick()
    _wait_for(pidfile)
    clock.advance(minutes=1)
    scheduler.tick()
    items = api.get(f"/schedules/{sch['id']}/executions").json()["items"]
    assert [i["status"] for i in items] == ["skipped_overlap", "running"]
    assert items[0]["run_id"] is None
    # Run now is refused rather than silently skipped.
    r = api.post(f"/schedules/{sch['id']}/trigger")
    assert r.status_code == 409 and "overlap" in r.json()["error"]["message"]
    api.post(f"/schedule-executions/{items[1]['id']}/cancel")
    scheduler.run_until_idle(timeout=30)

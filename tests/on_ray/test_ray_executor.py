"""The ``ray`` schedule executor against a real Ray cluster (tests/ray_cluster.py): a Run now
job runs on Ray and logs into its run through the SDK; a cancelled job stops; a retried
submission does not start a second job; bad configurations get a clear 422 and create
nothing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

from podstack.server import egress
from podstack.server.schedules.executions import JobSpec
from podstack.server.schedules.executors.ray import RayExecutor, submit_kwargs
from podstack.server.schedules.scheduler import FakeClock, Scheduler
from tests.conftest import LiveServer
from tests.ray_cluster import RayCluster

# One database (see conftest); a longer timeout: the first test also waits for the cluster,
# which takes 20-60 s to start on a loaded 2-core machine.
pytestmark = [pytest.mark.one_db, pytest.mark.timeout(300)]

TRAIN = """
import os
from podstack import MLOpsClient

client = MLOpsClient()  # PODSTACK_URL and PODSTACK_API_TOKEN from the job's environment
run_id = os.environ["PODSTACK_RUN_ID"]
for step in range(3):
    client.log_metrics(run_id, {"loss": 1.0 / (step + 1)}, step=step)
print("trained on ray", run_id, "lr", os.environ["PODSTACK_PARAM_LR"], flush=True)
"""

SLEEPER = """
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
print("sleeping", flush=True)
time.sleep(300)
"""


def _create(api: httpx.Client, name: str, executor: dict[str, Any]) -> httpx.Response:
    assert api.post("/experiments", json={"name": "ray-exp"}).status_code in (201, 409)
    return api.post(
        "/schedules",
        json={
            "name": name,
            "experiment_id": "ray-exp",
            "cron": "0 3 * * *",
            "config": {"lr": 0.1},
            "executor": executor,
        },
    )


def _ray(cluster: RayCluster, entrypoint: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "ray", "address": cluster.address, "entrypoint": entrypoint, **extra}


def test_run_now_job_runs_on_ray_and_logs_into_its_run(
    api: httpx.Client,
    live_server: LiveServer,
    ray_cluster: RayCluster,
    make_scheduler: Callable[..., Scheduler],
    tmp_path: Path,
) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    r = _create(api, "ray-train", _ray(ray_cluster, [sys.executable, str(script)], num_cpus=1))
    assert r.status_code == 201, r.text
    ex = api.post(f"/schedules/{r.json()['id']}/trigger").json()
    sched = make_scheduler(
        FakeClock(datetime.fromisoformat(ex["scheduled_time"])), api_url=live_server.url
    )
    sched.run_until_idle(timeout=90, poll=0.3)
    ex = api.get(f"/schedule-executions/{ex['id']}").json()
    assert ex["status"] == "succeeded", ex
    assert ex["executor"] == "ray" and ex["external_id"] == ex["id"]
    assert ex["exit_code"] == 0
    assert "trained on ray" in ex["log_tail"] and "lr 0.1" in ex["log_tail"]
    hist = api.get(f"/runs/{ex['run_id']}/metrics/loss/history").json()["items"]
    assert [p["value"] for p in hist] == pytest.approx([1.0, 0.5, 1 / 3])
    run = api.get(f"/runs/{ex['run_id']}").json()
    assert run["status"] == "FINISHED"
    # The job ran on Ray under the execution id, with the run's variables (not the token in
    # anything Podstack shows: the execution message and log are the job's own output).
    info = JobSubmissionClient(ray_cluster.address).get_job_info(ex["id"])
    assert info.status == JobStatus.SUCCEEDED
    assert info.runtime_env["env_vars"]["PODSTACK_RUN_ID"] == ex["run_id"]
    token = info.runtime_env["env_vars"]["PODSTACK_API_TOKEN"]
    assert token not in (ex["log_tail"] or "") and token not in (ex["message"] or "")
    # ...and that token died with the execution.
    r = httpx.get(
        f"{live_server.url}/api/v1/runs/{ex['run_id']}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 401


def test_cancelled_job_stops_on_the_cluster(
    api: httpx.Client,
    live_server: LiveServer,
    ray_cluster: RayCluster,
    make_scheduler: Callable[..., Scheduler],
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pid"
    script = tmp_path / "sleep.py"
    script.write_text(SLEEPER)
    r = _create(api, "ray-sleep", _ray(ray_cluster, [sys.executable, str(script), str(pid_file)]))
    assert r.status_code == 201, r.text
    ex = api.post(f"/schedules/{r.json()['id']}/trigger").json()
    sched = make_scheduler(
        FakeClock(datetime.fromisoformat(ex["scheduled_time"])), api_url=live_server.url
    )
    sched.tick()
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the Ray job did not start"
        time.sleep(0.2)
    pid = int(pid_file.read_text())
    assert psutil.pid_exists(pid)
    assert api.post(f"/schedule-executions/{ex['id']}/cancel").status_code == 200
    sched.run_until_idle(timeout=60, poll=0.3)
    ex = api.get(f"/schedule-executions/{ex['id']}").json()
    assert ex["status"] == "cancelled", ex
    assert "stopped" in ex["message"]
    assert "sleeping" in ex["log_tail"]
    info = JobSubmissionClient(ray_cluster.address).get_job_info(ex["id"])
    assert info.status == JobStatus.STOPPED
    gone = time.monotonic() + 15
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < gone, "the job's process survived the stop"
        time.sleep(0.2)


def test_retried_submission_does_not_start_a_second_job(
    ray_cluster: RayCluster, ray_env: None, tmp_path: Path
) -> None:
    """The scheduler retries a start whose answer was lost: the same execution id, so Ray
    sees the same submission id and nothing new starts."""
    eid = f"exec-retry-{time.time_ns()}"
    job = JobSpec(
        execution_id=eid,
        schedule_id="sch-1",
        schedule_name="retry",
        run_id="run-1",
        experiment_id="exp-1",
        scheduled_time=datetime.now(UTC),
        trigger="manual",
        params={},
        config={},
        executor=_ray(ray_cluster, [sys.executable, "-c", "print('once')"], num_cpus=0.5),
        timeout_seconds=None,
        api_url="http://127.0.0.1:9",
        api_token="pst_not-a-real-token",
        attempt=1,
    )
    executor = RayExecutor(allow=egress.AllowList.parse("127.0.0.0/8"))
    assert executor.start(job) == eid
    assert executor.start(job) == eid  # a second attempt at the same execution
    client = JobSubmissionClient(ray_cluster.address)
    assert [j.submission_id for j in client.list_jobs()].count(eid) == 1


def test_submission_maps_resources_and_keeps_the_run_variables_last() -> None:
    job = JobSpec(
        execution_id="exec-1",
        schedule_id="sch-1",
        schedule_name="gpu",
        run_id="run-1",
        experiment_id="exp-1",
        scheduled_time=datetime(2024, 1, 1, tzinfo=UTC),
        trigger="manual",
        params={"lr": "0.1"},
        config={"lr": 0.1},
        executor={
            "type": "ray",
            "address": "http://ray-head:8265",
            "entrypoint": ["python", "train.py", "--name", "a b; rm -rf /"],
            "runtime_env": {
                "working_dir": "https://example.com/code.zip",
                "pip": ["scikit-learn"],
                "env_vars": {"PODSTACK_RUN_ID": "someone-else", "MINE": "1"},
            },
            "num_cpus": 2,
            "gpu_type": "A100",
        },
        timeout_seconds=None,
        api_url="http://podstack:8000",
        api_token="pst_tok",
        attempt=1,
    )
    kw = submit_kwargs(job)
    assert kw["submission_id"] == "exec-1"
    assert kw["entrypoint"] == "python train.py --name 'a b; rm -rf /'"
    assert kw["entrypoint_num_cpus"] == 2
    assert kw["entrypoint_num_gpus"] == 1  # gpu_type without num_gpus: one GPU of that type
    assert kw["entrypoint_resources"] == {"accelerator_type:A100": 0.001}
    env = kw["runtime_env"]["env_vars"]
    assert env["PODSTACK_RUN_ID"] == "run-1" and env["MINE"] == "1"
    assert env["PODSTACK_API_TOKEN"] == "pst_tok"
    assert kw["runtime_env"]["working_dir"] == "https://example.com/code.zip"
    assert "pst_tok" not in str(kw["metadata"]) and "pst_tok" not in kw["entrypoint"]


@pytest.mark.parametrize(
    ("executor", "field", "words"),
    [
        ({"address": "ray://127.0.0.1:10001"}, "executor.address", "http://"),
        ({"address": "http://169.254.169.254:8265"}, "executor.address", "PODSTACK_OUTBOUND_ALLOW"),
        ({"entrypoint": "python train.py"}, "executor.entrypoint", "list of arguments"),
        ({"runtime_env": {"working_dir": "/etc"}}, "executor.runtime_env.working_dir", "URI"),
        ({"runtime_env": {"conda": "env"}}, "executor.runtime_env.conda", "Extra inputs"),
        ({"gpu_type": "A100; rm"}, "executor.gpu_type", "pattern"),
        ({"num_cpus": 0}, "executor.num_cpus", "greater than 0"),
        ({"replicas": 3}, "executor.replicas", "Extra inputs"),
    ],
)
def test_bad_ray_config_is_refused_and_creates_nothing(
    api: httpx.Client,
    ray_cluster: RayCluster,
    executor: dict[str, Any],
    field: str,
    words: str,
) -> None:
    body = {**_ray(ray_cluster, ["python", "train.py"]), **executor}
    r = _create(api, "bad-ray", body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert words in err["message"], err
    fields = [err["details"].get("field")] + [e["field"] for e in err["details"].get("errors", [])]
    # Request-body errors name the discriminated member (body.executor.ray.<field>).
    fields = [(f or "").removeprefix("body.").replace("executor.ray.", "executor.") for f in fields]
    assert field in fields, err
    assert api.get("/schedules").json()["items"] == []


def test_unreachable_head_is_refused_at_creation(api: httpx.Client, ray_env: None) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _create(
        api,
        "no-head",
        {"type": "ray", "address": f"http://127.0.0.1:{port}", "entrypoint": ["python"]},
    )
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert "No Ray job server answers" in err["message"] and "8265" in err["message"]
    assert err["details"]["field"] == "executor.address"
    # Something that answers but is not Ray (the Podstack server itself) is refused too.
    r = _create(
        api, "not-ray", {"type": "ray", "address": str(api.base_url), "entrypoint": ["python"]}
    )
    assert r.status_code == 422 and "not a Ray dashboard" in r.json()["error"]["message"]
    assert api.get("/schedules").json()["items"] == []

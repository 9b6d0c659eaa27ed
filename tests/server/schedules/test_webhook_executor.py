"""The webhook executor against a real HTTP server on the loopback interface: signed body,
idempotency key, retries, the completion callback, timeouts."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

import httpx

from podstack.server.events import signing
from podstack.server.schedules.scheduler import FakeClock, Scheduler
from tests.conftest import LiveServer
from tests.server.schedules.conftest import WebhookReceiver

MakeScheduler = Callable[..., Scheduler]
ClientFor = Callable[[str], httpx.Client]
SECRET = "whsec-0123456789abcdef"


def _create(api: httpx.Client, receiver: WebhookReceiver, **fields: object) -> dict:
    api.post("/experiments", json={"name": "nightly"})
    r = api.post(
        "/schedules",
        json={
            "name": "airflow-train",
            "experiment_id": "nightly",
            "cron": "0 2 * * *",
            "config": {"lr": 0.01, "dataset": "reviews-v2"},
            "executor": {"type": "webhook", "url": receiver.url, "secret": SECRET},
            **fields,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def _start(
    api: httpx.Client, sch: dict, make_scheduler: MakeScheduler, url: str
) -> tuple[dict, Scheduler, FakeClock]:
    ex = api.post(f"/schedules/{sch['id']}/trigger").json()
    clock = FakeClock(datetime.fromisoformat(ex["scheduled_time"]))
    scheduler = make_scheduler(clock, api_url=url)
    scheduler.tick()
    return ex, scheduler, clock


def test_signed_post_then_callback_reports_completion(
    api: httpx.Client,
    live_server: LiveServer,
    receiver: WebhookReceiver,
    make_scheduler: MakeScheduler,
    client_for: ClientFor,
) -> None:
    sch = _create(api, receiver)
    assert sch["executor"]["secret"] == "********"  # never shown back
    ex, _, _ = _start(api, sch, make_scheduler, live_server.url)

    (headers, body) = receiver.requests[0]
    assert signing.verify(SECRET, headers, body), "signature does not verify"
    assert not signing.verify("wrong-secret-0123456789", headers, body)
    job = json.loads(body)
    assert headers["Idempotency-Key"] == job["idempotency_key"] == ex["id"]
    assert job["params"] == {"lr": "0.01", "dataset": "reviews-v2"}
    assert datetime.fromisoformat(job["scheduled_time"]) == datetime.fromisoformat(
        ex["scheduled_time"]
    )
    assert (
        job["callback_url"] == f"{live_server.url}/api/v1/runs/{job['run_id']}/execution/callback"
    )
    assert api.get(f"/schedule-executions/{ex['id']}").json()["status"] == "running"

    # The external system logs into the run and reports back, with the run's token.
    remote = client_for(job["api_token"])
    assert (
        remote.post(f"/runs/{job['run_id']}/metrics", json={"metrics": {"acc": 0.9}}).status_code
        == 200
    )
    assert remote.get("/experiments").status_code == 403  # nothing beyond its run
    r = httpx.post(
        job["callback_url"],
        json={"status": "succeeded", "exit_code": 0, "log_tail": "epoch 3: acc 0.9"},
        headers={"Authorization": f"Bearer {job['api_token']}"},
    )
    assert r.status_code == 200, r.text
    done = api.get(f"/schedule-executions/{ex['id']}").json()
    assert (done["status"], done["exit_code"], done["log_tail"]) == (
        "succeeded",
        0,
        "epoch 3: acc 0.9",
    )
    run = api.get(f"/runs/{job['run_id']}").json()
    assert (run["status"], run["metrics"]["acc"]) == ("FINISHED", 0.9)
    # The token died with the execution; a repeated report by an editor is harmless.
    assert remote.get(f"/runs/{job['run_id']}").status_code == 401
    again = api.post(f"/runs/{job['run_id']}/execution/callback", json={"status": "succeeded"})
    assert again.status_code == 200
    clash = api.post(f"/runs/{job['run_id']}/execution/callback", json={"status": "failed"})
    assert (
        clash.status_code == 409
        and "already ended as succeeded" in clash.json()["error"]["message"]
    )


def test_receiver_down_is_retried_with_the_same_idempotency_key(
    api: httpx.Client,
    live_server: LiveServer,
    receiver: WebhookReceiver,
    make_scheduler: MakeScheduler,
) -> None:
    receiver.statuses = [503]
    sch = _create(api, receiver)
    ex, scheduler, clock = _start(api, sch, make_scheduler, live_server.url)
    first = api.get(f"/schedule-executions/{ex['id']}").json()
    assert first["status"] == "queued" and "Attempt 1 failed" in first["message"]
    scheduler.tick()
    assert len(receiver.requests) == 1  # not before the retry time
    clock.advance(seconds=31)
    scheduler.tick()
    assert len(receiver.requests) == 2
    keys = [h["Idempotency-Key"] for h, _ in receiver.requests]
    assert keys == [ex["id"], ex["id"]]
    bodies = [json.loads(b) for _, b in receiver.requests]
    assert bodies[0]["run_id"] == bodies[1]["run_id"]  # one run for the execution
    assert bodies[1]["attempt"] == 2 and bodies[0]["api_token"] != bodies[1]["api_token"]
    assert api.get(f"/schedule-executions/{ex['id']}").json()["status"] == "running"


def test_receiver_refusing_fails_the_execution(
    api: httpx.Client,
    live_server: LiveServer,
    receiver: WebhookReceiver,
    make_scheduler: MakeScheduler,
) -> None:
    receiver.statuses = [400]
    sch = _create(api, receiver)
    ex, _, _ = _start(api, sch, make_scheduler, live_server.url)
    ex = api.get(f"/schedule-executions/{ex['id']}").json()
    assert ex["status"] == "failed" and "HTTP 400" in ex["message"]
    assert api.get(f"/runs/{ex['run_id']}").json()["status"] == "FAILED"


def test_no_callback_within_timeout_times_out(
    api: httpx.Client,
    live_server: LiveServer,
    receiver: WebhookReceiver,
    make_scheduler: MakeScheduler,
    client_for: ClientFor,
) -> None:
    sch = _create(api, receiver, timeout_seconds=600)
    ex, scheduler, clock = _start(api, sch, make_scheduler, live_server.url)
    token = json.loads(receiver.requests[0][1])["api_token"]
    clock.advance(seconds=601)
    scheduler.tick()
    ex = api.get(f"/schedule-executions/{ex['id']}").json()
    assert ex["status"] == "timed_out" and "no completion callback" in ex["message"]
    assert client_for(token).get(f"/runs/{ex['run_id']}").status_code == 401


def test_callback_bad_inputs(
    api: httpx.Client,
    live_server: LiveServer,
    receiver: WebhookReceiver,
    make_scheduler: MakeScheduler,
    client_for: ClientFor,
) -> None:
    sch = _create(api, receiver)
    ex, _, _ = _start(api, sch, make_scheduler, live_server.url)
    job = json.loads(receiver.requests[0][1])
    other_run = api.post("/runs", json={"experiment_id": "nightly"}).json()["id"]
    # A run no schedule started.
    r = api.post(f"/runs/{other_run}/execution/callback", json={"status": "succeeded"})
    assert r.status_code == 404 and "not started by a schedule" in r.json()["error"]["message"]
    # Another run's token.
    r = client_for(job["api_token"]).post(
        f"/runs/{other_run}/execution/callback", json={"status": "succeeded"}
    )
    assert r.status_code == 403
    # Not a status an external system may report.
    r = api.post(f"/runs/{job['run_id']}/execution/callback", json={"status": "cancelled"})
    assert r.status_code == 422
    assert api.get(f"/schedule-executions/{ex['id']}").json()["status"] == "running"

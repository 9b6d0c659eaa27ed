"""Webhook-executor signing secrets are encrypted at rest (issue 13, item 5): the schedule row
never holds the secret, re-saving a masked secret changes nothing, jobs are still signed with
the original secret, legacy plaintext is encrypted at start, and a wrong key fails the
execution with a clear message instead of crashing the scheduler."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime

import httpx
from sqlalchemy import text

from podstack.server import secretbox
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.events import signing
from podstack.server.schedules.scheduler import FakeClock, Scheduler
from tests.server.schedules.conftest import WebhookReceiver

SECRET = "executor-signing-secret-0123456789"
MakeScheduler = Callable[..., Scheduler]


def _raw_executor(db: Database, schedule_id: str) -> str:
    with db.engine.connect() as c:
        raw = c.execute(
            text("SELECT executor FROM schedules WHERE id = :i"), {"i": schedule_id}
        ).scalar()
    return raw if isinstance(raw, str) else json.dumps(raw)


def _create(api: httpx.Client, receiver: WebhookReceiver) -> dict:
    api.post("/experiments", json={"name": "nightly"})
    r = api.post(
        "/schedules",
        json={
            "name": "ci-train",
            "experiment_id": "nightly",
            "cron": "@daily",
            "executor": {"type": "webhook", "url": receiver.url, "secret": SECRET},
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def _run(api: httpx.Client, sch: dict, make_scheduler: MakeScheduler, **kw: object) -> dict:
    ex = api.post(f"/schedules/{sch['id']}/trigger").json()
    make_scheduler(FakeClock(datetime.fromisoformat(ex["scheduled_time"])), **kw).tick()
    return api.get(f"/schedule-executions/{ex['id']}").json()


def test_executor_secret_encrypted_and_jobs_still_signed(
    api: httpx.Client, db: Database, receiver: WebhookReceiver, make_scheduler: MakeScheduler
) -> None:
    sch = _create(api, receiver)
    raw = _raw_executor(db, sch["id"])
    assert SECRET not in raw and "enc:v1:" in raw
    assert sch["executor"]["secret"] == "********"

    # An edit form sends the secret masked: nothing changes, the stored value is kept.
    same = {"type": "webhook", "url": receiver.url, "secret": "********"}
    r = api.patch(f"/schedules/{sch['id']}", json={"executor": same})
    assert r.status_code == 200 and r.json()["version"] == sch["version"]
    assert _raw_executor(db, sch["id"]) == raw
    # Any other change re-validates the URL and keeps the secret (still encrypted).
    moved = {**same, "url": receiver.url + "?v=2"}
    assert api.patch(f"/schedules/{sch['id']}", json={"executor": moved}).status_code == 200
    assert SECRET not in _raw_executor(db, sch["id"])

    ex = _run(api, sch, make_scheduler)
    assert ex["status"] == "running", ex
    headers, body = receiver.requests[-1]
    assert signing.verify(SECRET, headers, body)


def test_plaintext_executor_secret_is_encrypted_at_start(
    api: httpx.Client,
    db: Database,
    settings: Settings,
    receiver: WebhookReceiver,
    make_scheduler: MakeScheduler,
) -> None:
    sch = _create(api, receiver)
    legacy = {"type": "webhook", "url": receiver.url, "secret": SECRET}
    with db.engine.begin() as c:  # as a database from before this change holds it
        c.execute(
            text("UPDATE schedules SET executor = :e WHERE id = :i"),
            {"e": json.dumps(legacy), "i": sch["id"]},
        )
    secretbox.seal_at_start(db, settings, logging.getLogger("test"))
    assert SECRET not in _raw_executor(db, sch["id"])
    assert _run(api, sch, make_scheduler)["status"] == "running"
    headers, body = receiver.requests[-1]
    assert signing.verify(SECRET, headers, body)


def test_a_wrong_key_fails_the_execution_clearly(
    api: httpx.Client, receiver: WebhookReceiver, make_scheduler: MakeScheduler
) -> None:
    sch = _create(api, receiver)
    ex = _run(api, sch, make_scheduler, secret_key="not-the-key-it-was-encrypted-with")
    assert ex["status"] == "failed"
    assert "cannot be decrypted with the configured key" in ex["message"]
    assert "PODSTACK_SECRET_KEY" in ex["message"]
    assert receiver.requests == []

"""Webhooks: registration rules, the durable outbox, signed deliveries, retries with backoff,
timeouts and 500s recorded (never blocking requests), "send test", redelivery."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from podstack.server.config import Settings
from podstack.server.db.base import utcnow
from podstack.server.db.session import Database
from podstack.server.events import service as events
from podstack.server.events import signing
from podstack.server.notifications import sinks  # noqa: F401 (subscribes the outbox)
from podstack.server.notifications.delivery import DeliveryConfig, backoff, process_webhooks
from podstack.server.notifications.models import WebhookDelivery
from tests.server.approvals.helpers import error, make_version, transition
from tests.server.notifications.receivers import WebhookReceiver

FAST = DeliveryConfig(timeout_seconds=5, base_delay_seconds=0)


def _hook(api: httpx.Client, url: str, **body: object) -> dict:
    r = api.post("/webhooks", json={"url": url, **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _deliveries(api: httpx.Client, hook_id: str, **params: object) -> list[dict]:
    r = api.get(f"/webhooks/{hook_id}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


BAD_URLS = [
    ("ftp://example.com/hook", "scheme 'ftp' is not allowed"),
    ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("example.com/hook", "scheme '(none)' is not allowed"),
    ("http://", "it has no host"),
    ("https://exa mple.com/", "whitespace"),
]


def test_webhook_url_must_be_http_or_https(api: httpx.Client) -> None:
    for url, problem in BAD_URLS:
        err = error(api.post("/webhooks", json={"url": url}), 422, "VALIDATION_ERROR")
        assert problem in err["message"] and "http:// or https://" in err["message"], url
    assert api.get("/webhooks").json()["items"] == []


def test_webhook_registration_rules(api: httpx.Client, make_token) -> None:  # type: ignore[no-untyped-def]
    err = error(
        api.post("/webhooks", json={"url": "https://h.example/x", "events": ["model.born"]}),
        422,
        "VALIDATION_ERROR",
    )
    assert (
        "Unknown event type 'model.born'" in err["message"] and "version.created" in err["message"]
    )
    error(
        api.post("/webhooks", json={"url": "https://h.example/x", "events": []}),
        422,
        "VALIDATION_ERROR",
    )
    error(
        api.post("/webhooks", json={"url": "https://h.example/x", "model_names": ["a b"]}),
        422,
        "VALIDATION_ERROR",
    )
    error(
        api.post("/webhooks", json={"url": "https://h.example/x", "secret": "short"}),
        422,
        "VALIDATION_ERROR",
    )
    editor = httpx.Client(
        base_url=str(api.base_url), headers={"Authorization": f"Bearer {make_token('editor')}"}
    )
    with editor:
        error(
            editor.post("/webhooks", json={"url": "https://h.example/x"}), 403, "PERMISSION_DENIED"
        )
        error(editor.get("/webhooks"), 403, "PERMISSION_DENIED")
    assert api.get("/webhooks").json()["items"] == []

    hook = _hook(api, "https://h.example/x", events=["stage.*", "version.created", "stage.*"])
    assert hook["events"] == ["stage.*", "version.created"] and hook["secret"].startswith("whsec_")
    listed = api.get("/webhooks").json()["items"]
    assert len(listed) == 1 and "secret" not in listed[0]
    r = api.patch(f"/webhooks/{hook['id']}", json={"url": "gopher://x"})
    error(r, 422, "VALIDATION_ERROR")
    r = api.patch(f"/webhooks/{hook['id']}", json={"enabled": False, "events": ["*"]})
    assert r.json()["enabled"] is False and r.json()["events"] == ["*"]
    assert api.get(f"/webhooks/{hook['id']}").json()["url"] == "https://h.example/x"
    error(api.get("/webhooks/whk-nope"), 404, "NOT_FOUND")
    error(api.get("/webhooks/whk-nope/deliveries"), 404, "NOT_FOUND")
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 204
    error(api.delete(f"/webhooks/{hook['id']}"), 404, "NOT_FOUND")


def test_events_filter_and_model_filter(
    api: httpx.Client, db: Database, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    created = _hook(api, webhook_receiver.url, events=["version.created"])
    only_b = _hook(api, webhook_receiver.url, model_names=["model-b"])
    make_version(api, "model-a")
    make_version(api, "model-b")
    assert [d["event_type"] for d in _deliveries(api, created["id"])] == ["version.created"] * 2
    assert sorted(d["event_type"] for d in _deliveries(api, only_b["id"])) == [
        "model.created",
        "version.created",
    ]
    process_webhooks(db, FAST, settings=settings)
    models = sorted(r.json["data"]["model_name"] for r in webhook_receiver.received)
    assert models == ["model-a", "model-b", "model-b", "model-b"]


def test_outbox_rows_commit_or_roll_back_with_the_event(
    api: httpx.Client, db: Database, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    hook = _hook(api, webhook_receiver.url)
    with pytest.raises(RuntimeError), db.session() as s:
        events.emit(s, "model.created", {"model_name": "ghost"}, "admin")
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
        raise RuntimeError("the change failed")
    assert _deliveries(api, hook["id"]) == []
    with db.session() as s:
        events.emit(s, "model.created", {"model_name": "real"}, "admin")
    assert len(_deliveries(api, hook["id"])) == 1


def test_send_test_delivery(api: httpx.Client, webhook_receiver: WebhookReceiver) -> None:
    hook = _hook(api, webhook_receiver.url, secret="s3cret-s3cret-s3cret")
    r = api.post(f"/webhooks/{hook['id']}/test")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["status"] == "delivered" and d["event_type"] == "webhook.test"
    assert d["attempt_log"][0]["status_code"] == 204
    (got,) = webhook_receiver.received
    assert signing.verify("s3cret-s3cret-s3cret", got.headers, got.body)
    assert got.headers["Podstack-Event"] == "webhook.test"
    assert got.body.decode() == d["body"]

    webhook_receiver.mode = "fail"
    d = api.post(f"/webhooks/{hook['id']}/test").json()
    assert d["status"] == "failed" and d["attempts"] == 1  # tests are tried once
    assert d["attempt_log"][0]["status_code"] == 500
    assert "boom" in d["attempt_log"][0]["response_body"]
    assert d["last_error"] == "receiver answered HTTP 500 (17 bytes)"
    error(api.post("/webhooks/whk-nope/test"), 404, "NOT_FOUND")


def test_receiver_500_is_retried_with_backoff_and_recorded(
    api: httpx.Client, db: Database, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    hook = _hook(api, webhook_receiver.url, events=["version.created"])
    webhook_receiver.mode = "fail"
    make_version(api, "m")
    for _ in range(2):
        report = process_webhooks(db, FAST, settings=settings)
        assert report.claimed == 1 and report.retrying == 1
    (d,) = _deliveries(api, hook["id"])
    assert d["status"] == "pending" and d["attempts"] == 2 and d["last_status_code"] == 500
    assert [a["status_code"] for a in d["attempt_log"]] == [500, 500]

    # A real backoff schedules the next attempt later: nothing is due right now.
    process_webhooks(db, DeliveryConfig(base_delay_seconds=60), settings=settings)
    assert process_webhooks(db, FAST, settings=settings).claimed == 0
    with db.session() as s:
        row = s.get(WebhookDelivery, d["id"])
        assert row is not None and row.next_attempt_at > utcnow() + timedelta(seconds=60)
        row.next_attempt_at = utcnow()  # time passes

    webhook_receiver.mode = "ok"
    assert process_webhooks(db, FAST, settings=settings).succeeded == 1
    (d,) = _deliveries(api, hook["id"])
    assert d["status"] == "delivered" and d["next_attempt_at"] is None
    assert [a["status_code"] for a in d["attempt_log"]] == [500, 500, 500, 204]
    ids = {r.headers["Podstack-Webhook-Id"] for r in webhook_receiver.received}
    assert ids == {d["id"]}  # same id on every retry: receivers can de-duplicate
    assert len(_deliveries(api, hook["id"], status="delivered")) == 1
    assert _deliveries(api, hook["id"], status="pending") == []
    error(
        api.get(f"/webhooks/{hook['id']}/deliveries", params={"status": "done"}),
        422,
        "VALIDATION_ERROR",
    )


def test_gives_up_after_max_attempts_and_can_redeliver(
    api: httpx.Client, db: Database, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    hook = _hook(api, webhook_receiver.url, events=["version.created"])
    webhook_receiver.mode = "fail"
    make_version(api, "m")
    (d,) = _deliveries(api, hook["id"])
    for _ in range(d["max_attempts"]):
        process_webhooks(db, FAST, settings=settings)
    (d,) = _deliveries(api, hook["id"])
    assert d["status"] == "failed" and d["attempts"] == d["max_attempts"]
    assert process_webhooks(db, FAST, settings=settings).claimed == 0

    webhook_receiver.mode = "ok"
    r = api.post(f"/webhook-deliveries/{d['id']}/redeliver")
    assert r.json()["status"] == "pending"
    assert process_webhooks(db, FAST, settings=settings).succeeded == 1
    full = api.get(f"/webhook-deliveries/{d['id']}").json()
    assert full["status"] == "delivered" and full["body"]
    error(api.get("/webhook-deliveries/whd-nope"), 404, "NOT_FOUND")


def test_slow_receiver_times_out_without_blocking_requests(
    api: httpx.Client, db: Database, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    hook = _hook(api, webhook_receiver.url, events=["stage.*", "version.created"])
    webhook_receiver.mode = "slow"
    webhook_receiver.delay = 3.0
    v = make_version(api, "m")
    started = time.monotonic()
    for stage in ("Staging", "Production", "Archived"):
        assert transition(api, "m", v, stage).status_code == 200
    assert time.monotonic() - started < 2.0  # the request path never waits on receivers

    report = process_webhooks(
        db, DeliveryConfig(timeout_seconds=0.5, base_delay_seconds=0), settings=settings
    )
    assert report.claimed == 4 and report.retrying == 4
    for d in _deliveries(api, hook["id"]):
        assert d["status"] == "pending" and d["attempts"] == 1
        assert d["attempt_log"][0]["status_code"] is None
        assert d["attempt_log"][0]["error"].startswith("timed out")


def test_disabled_and_deleted_webhooks(
    api: httpx.Client, db: Database, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    hook = _hook(api, webhook_receiver.url, events=["version.created"])
    make_version(api, "m")
    api.patch(f"/webhooks/{hook['id']}", json={"enabled": False})
    assert process_webhooks(db, FAST, settings=settings).claimed == 0  # held while disabled
    make_version(api, "m")  # and nothing new is queued for a disabled hook
    assert len(_deliveries(api, hook["id"])) == 1
    api.patch(f"/webhooks/{hook['id']}", json={"enabled": True})
    assert process_webhooks(db, FAST, settings=settings).succeeded == 1
    api.delete(f"/webhooks/{hook['id']}")
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


def test_delivery_pages(api: httpx.Client, webhook_receiver: WebhookReceiver) -> None:
    hook = _hook(api, webhook_receiver.url, events=["version.created"])
    for _ in range(3):
        make_version(api, "m")
    first = api.get(f"/webhooks/{hook['id']}/deliveries", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_page_token"]
    rest = api.get(
        f"/webhooks/{hook['id']}/deliveries",
        params={"limit": 2, "page_token": first["next_page_token"]},
    ).json()
    assert len(rest["items"]) == 1 and rest["next_page_token"] is None
    seen = [d["id"] for d in first["items"] + rest["items"]]
    assert len(set(seen)) == 3
    versions = [api.get(f"/webhook-deliveries/{i}").json()["body"] for i in seen]
    assert [f'"version":{n}' in b for n, b in zip((3, 2, 1), versions, strict=True)] == [True] * 3


def test_backoff_grows_exponentially_and_is_capped() -> None:
    cfg = DeliveryConfig(base_delay_seconds=10, max_delay_seconds=100)
    delays = [backoff(n, cfg).total_seconds() for n in (1, 2, 3, 4, 10)]
    assert 8 <= delays[0] <= 12 and 16 <= delays[1] <= 24 and 32 <= delays[2] <= 48
    assert 64 <= delays[3] <= 96 and 80 <= delays[4] <= 120

"""The outbox sink writes its delivery rows with one Core INSERT: every column a sender
needs is set, only matching webhooks get a row, and the rows are visible in the event's
transaction (and gone with it on rollback)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from podstack.schemas import notifications as nsch
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.events import service as events
from podstack.server.notifications import service as notifications
from podstack.server.notifications import sinks  # noqa: F401 (subscribes the outbox)
from podstack.server.notifications.models import WebhookDelivery
from podstack.server.notifications.service import DEFAULT_MAX_ATTEMPTS


def _hook(s: object, settings: Settings, events_: list[str], names: list[str] | None = None) -> str:
    body = nsch.WebhookCreate(url="https://h.example/x", events=events_, model_names=names or [])
    hook, _ = notifications.create_webhook(s, "admin", body, settings=settings)  # type: ignore[arg-type]
    return hook.id


def test_rows_for_matching_webhooks_only(db: Database, settings: Settings) -> None:
    with db.session() as s:
        every = _hook(s, settings, ["*"])
        versions = _hook(s, settings, ["version.*"], ["a"])
        _hook(s, settings, ["version.*"], ["other-model"])
        _hook(s, settings, ["model.created"])
    with db.session() as s:
        ev = events.emit(s, "version.created", {"model_name": "a", "version": 7}, "alice")
        rows = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.webhook_id)).all()
        assert sorted(d.webhook_id for d in rows) == sorted([every, versions])
        for d in rows:
            assert (d.event_id, d.event_type, d.status) == (ev.id, "version.created", "pending")
            assert (d.attempts, d.max_attempts) == (0, DEFAULT_MAX_ATTEMPTS)
            assert d.next_attempt_at == d.created_at == ev.at
            assert d.claimed_until is None and d.finished_at is None
            doc = json.loads(d.body)
            assert doc["id"] == d.id and doc["event_id"] == ev.id
            assert (doc["type"], doc["actor"]) == ("version.created", "alice")
            assert doc["data"] == {"model_name": "a", "version": 7}
        assert len({d.id for d in rows}) == 2


def test_rows_roll_back_with_the_event(db: Database, settings: Settings) -> None:
    with db.session() as s:
        _hook(s, settings, ["*"])
    with pytest.raises(RuntimeError), db.session() as s:
        events.emit(s, "model.created", {"model_name": "a"}, "admin")
        raise RuntimeError("the change failed")
    with db.session(readonly=True) as s:
        assert s.scalars(select(WebhookDelivery)).all() == []

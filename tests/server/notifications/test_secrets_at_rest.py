"""Webhook signing secrets are encrypted at rest (issue 13, item 5) with a key outside the
database: the database never holds the secret, deliveries still sign with it, rows from before
are encrypted at start, and a wrong key fails deliveries with a clear message (no crash)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from podstack.server import secretbox
from podstack.server.artifacts.store_factory import open_store
from podstack.server.backup import service as backup_service
from podstack.server.config import Settings
from podstack.server.db.models_registry import metadata
from podstack.server.db.session import Database
from podstack.server.events import service as events
from podstack.server.events import signing
from podstack.server.notifications import sinks  # noqa: F401 (subscribes the outbox)
from podstack.server.notifications.delivery import DeliveryConfig, process_webhooks
from podstack.server.notifications.models import WebhookAttempt
from tests.server.notifications.receivers import WebhookReceiver

FAST = DeliveryConfig(timeout_seconds=5, base_delay_seconds=0)
SECRET = "whsec-the-receivers-own-0123456789"


def _everything_stored(db: Database) -> str:
    """Every row of every table, as text: the secret must be in none of them."""
    out = []
    with db.engine.connect() as c:
        for table in metadata.sorted_tables:
            out.extend(str(tuple(r)) for r in c.execute(select(table)))
    return "\n".join(out)


def _stored_secret(db: Database, hook_id: str) -> str:
    with db.engine.connect() as c:
        return c.execute(text("SELECT secret FROM webhooks WHERE id = :i"), {"i": hook_id}).scalar()


def test_database_never_holds_the_secret_and_deliveries_still_verify(
    api: httpx.Client, db: Database, webhook_receiver: WebhookReceiver
) -> None:
    r = api.post("/webhooks", json={"url": webhook_receiver.url, "secret": SECRET})
    assert r.status_code == 201 and r.json()["secret"] == SECRET  # shown once, in clear
    hook = r.json()
    generated = api.post("/webhooks", json={"url": webhook_receiver.url}).json()
    # The longest secret accepted still fits once encrypted (the column was widened).
    longest = api.post("/webhooks", json={"url": webhook_receiver.url, "secret": "L" * 200})
    assert longest.status_code == 201, longest.text
    stored = _stored_secret(db, hook["id"])
    assert stored.startswith("enc:v1:") and SECRET not in stored
    everything = _everything_stored(db)
    assert SECRET not in everything and generated["secret"] not in everything
    assert "secret" not in api.get(f"/webhooks/{hook['id']}").json()

    d = api.post(f"/webhooks/{hook['id']}/test").json()
    assert d["status"] == "delivered", d
    (got,) = webhook_receiver.received
    assert signing.verify(SECRET, got.headers, got.body)


def test_plaintext_rows_from_before_keep_working_and_are_encrypted_at_start(
    api: httpx.Client, db: Database, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    hook = api.post("/webhooks", json={"url": webhook_receiver.url, "events": ["*"]}).json()
    with db.engine.begin() as c:  # as a database from before this change holds it
        c.execute(
            text("UPDATE webhooks SET secret = :s WHERE id = :i"), {"s": SECRET, "i": hook["id"]}
        )
    api.post("/registered-models", json={"name": "m1"})
    assert process_webhooks(db, FAST, settings=settings).succeeded == 1
    assert signing.verify(
        SECRET, webhook_receiver.received[-1].headers, webhook_receiver.received[-1].body
    )

    secretbox.seal_at_start(db, settings, logging.getLogger("test"))
    assert _stored_secret(db, hook["id"]).startswith("enc:v1:")
    api.post("/registered-models", json={"name": "m2"})
    assert process_webhooks(db, FAST, settings=settings).succeeded == 1
    last = webhook_receiver.received[-1]
    assert last.json["data"]["model_name"] == "m2" and signing.verify(
        SECRET, last.headers, last.body
    )


def test_a_wrong_key_fails_deliveries_clearly_and_the_right_one_recovers(
    api: httpx.Client,
    db: Database,
    settings: Settings,
    webhook_receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api.post("/webhooks", json={"url": webhook_receiver.url, "events": ["*"], "secret": SECRET})
    api.post("/registered-models", json={"name": "m"})
    wrong = settings.model_copy(update={"secret_key": "not-the-key-it-was-encrypted-with"})

    with caplog.at_level(logging.WARNING):
        secretbox.seal_at_start(db, wrong, logging.getLogger("podstack.test"))  # no raise
    assert "1 webhook and 0 schedule signing secrets cannot be decrypted" in caplog.text

    report = process_webhooks(db, FAST, settings=wrong)
    assert report.claimed == 1 and report.succeeded == 0 and webhook_receiver.received == []
    with db.session(readonly=True) as s:
        (attempt,) = s.scalars(select(WebhookAttempt)).all()
        assert "cannot be decrypted with the configured key" in (attempt.error or "")
        assert "PODSTACK_SECRET_KEY" in (attempt.error or "")

    # Rotation: the new key first, the old one after it; both decrypt.
    rotated = settings.model_copy(update={"secret_key": f"brand-new-key,{settings.secret_key}"})
    with db.engine.begin() as c:
        c.execute(text("UPDATE webhook_deliveries SET next_attempt_at = created_at"))
    assert process_webhooks(db, FAST, settings=rotated).succeeded == 1
    got = webhook_receiver.received[-1]
    assert signing.verify(SECRET, got.headers, got.body)


def test_key_generated_once_into_the_home(tmp_path: Path, settings: Settings) -> None:
    home = tmp_path / "home"
    local = settings.model_copy(update={"home": home, "secret_key": None})
    sealed = secretbox.for_settings(local).encrypt(SECRET)
    key_file = home / "secret_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert secretbox.for_settings(local).decrypt(sealed) == SECRET  # same key next time
    assert SECRET not in key_file.read_text() and len(key_file.read_text()) >= 40
    with pytest.raises(secretbox.SecretKeyError, match="PODSTACK_SECRET_KEY"):
        secretbox.for_settings(settings).decrypt(sealed)


def test_backup_holds_only_ciphertext_and_restores_with_the_key(
    api: httpx.Client,
    db: Database,
    settings: Settings,
    webhook_receiver: WebhookReceiver,
    scratch_database_url: str,
    tmp_path: Path,
) -> None:
    api.post("/webhooks", json={"url": webhook_receiver.url, "events": ["*"], "secret": SECRET})
    store = open_store(settings)
    backup_service.backup(db.engine, store, tmp_path / "bk")
    for f in (tmp_path / "bk").rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    target = Database(scratch_database_url)
    try:
        backup_service.restore(target.engine, store, tmp_path / "bk")
        with target.session() as s:  # an event on the restored deployment
            events.emit(s, "model.created", {"model_name": "restored"}, "admin")
        # Same key (PODSTACK_SECRET_KEY, or the home's secret_key file copied along): the
        # restored deployment signs with the original secret.
        assert process_webhooks(target, FAST, settings=settings).succeeded == 1
    finally:
        target.dispose()
    got = webhook_receiver.received[-1]
    assert got.json["data"]["model_name"] == "restored"
    assert signing.verify(SECRET, got.headers, got.body)

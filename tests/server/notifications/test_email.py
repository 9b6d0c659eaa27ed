"""Email through the outbox: sent over real SMTP, skipped without SMTP settings, retried and
recorded when the SMTP server is down."""

from __future__ import annotations

import httpx

from podstack.server.auth import service as auth_service
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.notifications import service
from podstack.server.notifications.delivery import DeliveryConfig, process_emails
from tests.server.approvals.helpers import make_user
from tests.server.notifications.receivers import SmtpServer, free_port

FAST = DeliveryConfig(timeout_seconds=2, base_delay_seconds=0)


def _queue(db: Database, *usernames: str) -> int:
    with db.session() as s:
        users = [auth_service.get_user(s, u) for u in usernames]
        return service.enqueue_email(s, users, "Subject line", "Body text", link="/approvals/x")


def test_sent_over_smtp(
    db: Database, settings: Settings, api: httpx.Client, smtp_server: SmtpServer
) -> None:
    make_user(db, "ann", "viewer", "ann@example.com")
    make_user(db, "bob", "viewer")  # no address: nothing queued
    assert _queue(db, "ann", "bob") == 1
    smtp = settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_from": "mlops@example.com",
        }
    )
    assert process_emails(db, smtp, FAST).succeeded == 1
    (mail,) = smtp_server.sink.to("ann@example.com")
    assert mail["From"] == "mlops@example.com" and mail["Subject"] == "Subject line"
    assert "Body text" in mail.get_payload() and "/approvals/x" in mail.get_payload()
    (row,) = api.get("/email-deliveries").json()["items"]
    assert row["status"] == "sent" and row["to_username"] == "ann"
    assert process_emails(db, smtp, FAST).claimed == 0  # sent once


def test_skipped_without_smtp_settings(db: Database, settings: Settings, api: httpx.Client) -> None:
    make_user(db, "ann", "viewer", "ann@example.com")
    _queue(db, "ann")
    assert settings.smtp_host is None
    assert process_emails(db, settings, FAST).skipped == 1
    (row,) = api.get("/email-deliveries", params={"status": "skipped"}).json()["items"]
    assert "PODSTACK_SMTP_HOST" in row["last_error"]
    r = api.get("/email-deliveries", params={"status": "lost"})
    assert r.status_code == 422


def test_smtp_down_is_retried_then_failed(
    db: Database, settings: Settings, api: httpx.Client
) -> None:
    make_user(db, "ann", "viewer", "ann@example.com")
    _queue(db, "ann")
    down = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": free_port()})
    report = process_emails(db, down, FAST)
    assert report.retrying == 1
    (row,) = api.get("/email-deliveries").json()["items"]
    assert row["status"] == "pending" and "cannot connect" in row["last_error"]
    for _ in range(10):
        process_emails(db, down, FAST)
    (row,) = api.get("/email-deliveries").json()["items"]
    assert row["status"] == "failed" and row["attempts"] == 6

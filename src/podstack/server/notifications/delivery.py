"""Sending what the outbox holds: signed webhook POSTs and SMTP email.

Each pass is claim -> send -> record, in three steps so no database transaction stays open
while a receiver is slow:

1. *claim*: in one short transaction, due rows are selected (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL) and leased to this worker (``claimed_by``/``claimed_until``, attempt counted).
   Another replica's claim skips them, so two workers never send the same row.
2. *send*: outside any transaction, with a timeout.
3. *record*: the attempt (status code, first KB of the answer, error, duration) is stored
   (admins alone read deliveries; the error line carries status and size only);
   the row becomes delivered, failed (attempts exhausted) or pending again after an
   exponential backoff.

If a worker dies between claim and record, the lease expires and another worker retries it
(at-least-once: receivers de-duplicate on the ``Podstack-Webhook-Id`` header, which is the
delivery id and stays the same across retries).
"""

from __future__ import annotations

import logging
import os
import random
import smtplib
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage as MimeMessage

import httpx

import podstack
from podstack.server import egress, secretbox
from podstack.server.config import Settings
from podstack.server.db.base import new_id, utcnow
from podstack.server.db.session import Database
from podstack.server.events import signing
from podstack.server.notifications import repository as repo
from podstack.server.notifications.models import EmailMessage, WebhookAttempt, WebhookDelivery

log = logging.getLogger("podstack.notifications")
RESPONSE_EXCERPT = 2000


@dataclass(frozen=True)
class DeliveryConfig:
    timeout_seconds: float = 10.0
    # Retry n waits base * 2**(n-1) (jittered by +-20%), capped at max_delay.
    base_delay_seconds: float = 10.0
    max_delay_seconds: float = 3600.0
    # Longer than any send can take, so a live worker never loses its lease mid-send.
    lease_seconds: float = 300.0
    batch_size: int = 50
    concurrency: int = 8
    poll_interval_seconds: float = 1.0


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{new_id('w', 3)}"


def backoff(attempts: int, cfg: DeliveryConfig) -> timedelta:
    delay = min(cfg.base_delay_seconds * 2 ** max(attempts - 1, 0), cfg.max_delay_seconds)
    return timedelta(seconds=delay * random.uniform(0.8, 1.2))


@dataclass
class Report:
    claimed: int = 0
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    ids: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class WebhookJob:
    delivery_id: str
    url: str
    secret: str
    body: str
    event_type: str
    attempt: int


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    response_body: str | None
    error: str | None
    duration_ms: int
    at: datetime


def claim_webhooks(
    db: Database,
    worker: str,
    cfg: DeliveryConfig,
    *,
    only_id: str | None = None,
    now: datetime | None = None,
) -> list[WebhookJob]:
    now = now or utcnow()
    with db.session() as s:
        rows = repo.due_deliveries(s, now, cfg.batch_size, only_id=only_id)
        jobs = []
        for d, hook in rows:
            d.claimed_by = worker
            d.claimed_until = now + timedelta(seconds=cfg.lease_seconds)
            d.attempts += 1
            jobs.append(WebhookJob(d.id, hook.url, hook.secret, d.body, d.event_type, d.attempts))
        return jobs


def send_webhook(job: WebhookJob, client: egress.EgressClient, box: secretbox.SecretBox) -> Outcome:
    """One signed POST through the egress gate (checked, pinned, no redirects)."""
    body = job.body.encode()
    at = utcnow()
    start = time.monotonic()
    try:
        secret = box.decrypt(job.secret)
    except secretbox.SecretKeyError as exc:
        return Outcome(False, None, None, str(exc), _ms(start), at)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"Podstack-Webhooks/{podstack.__version__}",
        "Podstack-Event": job.event_type,
        **signing.sign_headers(secret, job.delivery_id, body),
    }
    try:
        resp = client.post(job.url, content=body, headers=headers)
    except egress.Refused as exc:
        error = f"not sent: {exc.reason} (allow it with {egress.ALLOW_ENV})"
        return Outcome(False, None, None, error, _ms(start), at)
    except httpx.TimeoutException as exc:
        return Outcome(False, None, None, f"timed out: {exc}", _ms(start), at)
    except httpx.HTTPError as exc:
        return Outcome(False, None, None, f"{type(exc).__name__}: {exc}"[:1000], _ms(start), at)
    text = resp.text[:RESPONSE_EXCERPT] if resp.content else None
    ok = 200 <= resp.status_code < 300
    error = None if ok else f"receiver answered HTTP {resp.status_code} ({len(resp.content)} bytes)"
    return Outcome(ok, resp.status_code, text, error, _ms(start), at)


def record_webhook(
    db: Database, job: WebhookJob, outcome: Outcome, worker: str, cfg: DeliveryConfig
) -> str:
    """Stores the attempt; returns the delivery's new status."""
    with db.session() as s:
        s.add(
            WebhookAttempt(
                delivery_id=job.delivery_id,
                attempt=job.attempt,
                at=outcome.at,
                duration_ms=outcome.duration_ms,
                status_code=outcome.status_code,
                response_body=outcome.response_body,
                error=outcome.error,
                worker=worker,
            )
        )
        d = s.get(WebhookDelivery, job.delivery_id, with_for_update=True)
        if d is None:  # webhook deleted meanwhile (cascade)
            return "deleted"
        if d.claimed_by != worker:  # lease lost: whoever holds it now decides
            return d.status
        d.claimed_by = None
        d.claimed_until = None
        d.last_status_code = outcome.status_code
        d.last_error = outcome.error
        now = utcnow()
        if outcome.ok:
            d.status = "delivered"
            d.finished_at = now
        elif d.attempts >= d.max_attempts:
            d.status = "failed"
            d.finished_at = now
        else:
            d.next_attempt_at = now + backoff(d.attempts, cfg)
        return d.status


def process_webhooks(
    db: Database,
    cfg: DeliveryConfig | None = None,
    worker: str | None = None,
    *,
    settings: Settings,
    only_id: str | None = None,
) -> Report:
    """One pass: claim a batch of due deliveries, send them concurrently, record results.
    ``settings`` gives the outbound allow-list and the key that decrypts signing secrets."""
    cfg = cfg or DeliveryConfig()
    worker = worker or worker_name()
    jobs = claim_webhooks(db, worker, cfg, only_id=only_id)
    report = Report(claimed=len(jobs))
    if not jobs:
        return report
    box = secretbox.for_settings(settings)
    allow = egress.allow_list(settings)
    with egress.EgressClient(allow, timeout=httpx.Timeout(cfg.timeout_seconds)) as client:

        def one(job: WebhookJob) -> str:
            outcome = send_webhook(job, client, box)
            if not outcome.ok:
                log.info("webhook %s attempt %d: %s", job.delivery_id, job.attempt, outcome.error)
            return record_webhook(db, job, outcome, worker, cfg)

        with ThreadPoolExecutor(max_workers=max(1, min(cfg.concurrency, len(jobs)))) as pool:
            statuses = list(pool.map(one, jobs))
    for job, status in zip(jobs, statuses, strict=True):
        report.ids.append(job.delivery_id)
        if status == "delivered":
            report.succeeded += 1
        elif status == "failed":
            report.failed += 1
        else:
            report.retrying += 1
    return report


def deliver_now(
    db: Database, delivery_id: str, cfg: DeliveryConfig | None = None, *, settings: Settings
) -> Report:
    """Sends one delivery immediately (the "send test" action), whatever its schedule."""
    return process_webhooks(db, cfg, settings=settings, only_id=delivery_id)


# ---------------------------------------------------------------- email


@dataclass(frozen=True)
class EmailJob:
    id: str
    to_address: str
    subject: str
    body: str
    link: str | None


def smtp_configured(settings: Settings) -> bool:
    return bool(settings.smtp_host)


def claim_emails(
    db: Database, worker: str, cfg: DeliveryConfig, settings: Settings
) -> tuple[list[EmailJob], int]:
    """Leases due emails; without SMTP settings marks them skipped instead (returns count)."""
    now = utcnow()
    with db.session() as s:
        rows = repo.due_emails(s, now, cfg.batch_size)
        if not smtp_configured(settings):
            for m in rows:
                m.status = "skipped"
                m.last_error = "SMTP is not configured (set PODSTACK_SMTP_HOST)."
            return [], len(rows)
        jobs = []
        for m in rows:
            m.claimed_by = worker
            m.claimed_until = now + timedelta(seconds=cfg.lease_seconds)
            m.attempts += 1
            jobs.append(EmailJob(m.id, m.to_address, m.subject, m.body, m.link))
        return jobs, 0


def _base_url(settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"http://{settings.host}:{settings.port}"


def send_emails(
    jobs: Sequence[EmailJob], settings: Settings, cfg: DeliveryConfig
) -> list[str | None]:
    """Sends over one SMTP connection; returns an error (or None) per job."""
    errors: list[str | None] = []
    try:
        smtp = smtplib.SMTP(
            settings.smtp_host or "", settings.smtp_port, timeout=cfg.timeout_seconds
        )
    except (OSError, smtplib.SMTPException) as exc:
        return [f"cannot connect to SMTP server: {exc}"] * len(jobs)
    try:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password or "")
        for job in jobs:
            msg = MimeMessage()
            msg["From"] = settings.smtp_from
            msg["To"] = job.to_address
            msg["Subject"] = job.subject
            text = job.body
            if job.link:
                text += f"\n\nOpen: {_base_url(settings)}{job.link}\n"
            msg.set_content(text)
            try:
                smtp.send_message(msg)
                errors.append(None)
            except (OSError, smtplib.SMTPException) as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:1000])
    except (OSError, smtplib.SMTPException) as exc:
        errors.extend([f"{type(exc).__name__}: {exc}"[:1000]] * (len(jobs) - len(errors)))
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            pass
    return errors


def record_emails(
    db: Database,
    jobs: Sequence[EmailJob],
    errors: Sequence[str | None],
    worker: str,
    cfg: DeliveryConfig,
) -> Report:
    report = Report(claimed=len(jobs))
    with db.session() as s:
        now = utcnow()
        for job, error in zip(jobs, errors, strict=True):
            report.ids.append(job.id)
            m = s.get(EmailMessage, job.id, with_for_update=True)
            if m is None or m.claimed_by != worker:
                continue
            m.claimed_by = None
            m.claimed_until = None
            m.last_error = error
            if error is None:
                m.status = "sent"
                m.sent_at = now
                report.succeeded += 1
            elif m.attempts >= m.max_attempts:
                m.status = "failed"
                report.failed += 1
            else:
                m.next_attempt_at = now + backoff(m.attempts, cfg)
                report.retrying += 1
    return report


def process_emails(
    db: Database, settings: Settings, cfg: DeliveryConfig | None = None, worker: str | None = None
) -> Report:
    cfg = cfg or DeliveryConfig()
    worker = worker or worker_name()
    jobs, skipped = claim_emails(db, worker, cfg, settings)
    if not jobs:
        return Report(skipped=skipped)
    return record_emails(db, jobs, send_emails(jobs, settings, cfg), worker, cfg)


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)

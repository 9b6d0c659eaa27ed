"""Every notifications query lives here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from podstack.server.auth.models import User
from podstack.server.notifications.models import (
    EmailMessage,
    Notification,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from podstack.server.permissions import service as permissions
from podstack.server.permissions.levels import EXPERIMENT, MODEL

# ---------------------------------------------------------------- in-app


def active_users(s: Session, usernames: Sequence[str]) -> list[User]:
    if not usernames:
        return []
    q = select(User).where(User.username.in_(list(usernames)), User.disabled.is_(False))
    return list(s.scalars(q.order_by(User.username)))


def list_notifications(
    s: Session, user_id: int, *, unread_only: bool, limit: int, before_id: int | None
) -> Sequence[Notification]:
    q = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        q = q.where(Notification.read_at.is_(None))
    if before_id is not None:
        q = q.where(Notification.id < before_id)
    return s.scalars(q.order_by(Notification.id.desc()).limit(limit + 1)).all()


def unread_count(s: Session, user_id: int) -> int:
    # FROM the entity, so the read filter's criteria reach the count (the bell must not count
    # notices about models the user can no longer read).
    q = (
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
    )
    return s.scalar(q) or 0


def _readable(s: Session) -> list[Any]:
    """The read filter's rule for statements it does not reach (UPDATE): notices about no
    resource, or about one the session's principal reads."""
    out = []
    for kind, col in ((MODEL, Notification.model_id), (EXPERIMENT, Notification.experiment_id)):
        clause = permissions.readable_clause(s, kind, col)
        if clause is not None:
            out.append(or_(col.is_(None), clause))
    return out


def mark_read(s: Session, user_id: int, ids: Sequence[int] | None, at: datetime) -> int:
    # Hidden notices stay as they are and are not counted: "marked N read" must not reveal
    # how many there are.
    stmt = update(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None), *_readable(s)
    )
    if ids is not None:
        stmt = stmt.where(Notification.id.in_(list(ids)))
    return s.execute(stmt.values(read_at=at)).rowcount or 0  # type: ignore[attr-defined]


# ---------------------------------------------------------------- webhooks


class WebhookTarget(NamedTuple):
    """What matching an event against a webhook needs (not the secret, URL, ...)."""

    id: str
    events: list[str]
    model_names: list[str]


_ENABLED_KEY = "podstack.enabled_webhooks"
# Plain columns, not ORM objects: nothing to track, and no secret loaded for nothing. Built
# once: it runs on every event.
_ENABLED = select(Webhook.id, Webhook.events, Webhook.model_names).where(Webhook.enabled.is_(True))


def enabled_webhooks(s: Session) -> list[WebhookTarget]:
    """The enabled webhooks, read once per transaction: every event of a request (a version
    created with its model, an alias moved with the deployments it rolls) reuses the first
    read. Nothing is kept across transactions, so a webhook another replica created is
    seen by the next request. Changes in this transaction call ``forget_enabled_webhooks``.
    """
    cached = s.info.get(_ENABLED_KEY)
    if cached is not None and cached[0] is s.get_transaction():
        return cached[1]
    # Plain Core on the connection (Session.execute's ORM dispatch costs more than this
    # query); flushed first, as the ORM query would be, so a pending webhook is seen.
    s.flush()
    conn = s.connection()
    rows = [WebhookTarget(i, ev or [], names or []) for i, ev, names in conn.execute(_ENABLED)]
    s.info[_ENABLED_KEY] = (s.get_transaction(), rows)  # begun by the query, if not before
    return rows


_INSERT_DELIVERIES = WebhookDelivery.__table__.insert()


def insert_deliveries(s: Session, rows: list[dict[str, Any]]) -> None:
    """New outbox rows, one (executemany) Core INSERT: no unit-of-work bookkeeping for rows
    this transaction never reads back."""
    if rows:
        s.connection().execute(_INSERT_DELIVERIES, rows)


def forget_enabled_webhooks(s: Session) -> None:
    s.info.pop(_ENABLED_KEY, None)


def list_webhooks(s: Session) -> Sequence[Webhook]:
    return s.scalars(select(Webhook).order_by(Webhook.created_at, Webhook.id)).all()


def list_deliveries(
    s: Session,
    webhook_id: str,
    *,
    status: str | None,
    limit: int,
    after: list[str] | None,
) -> Sequence[WebhookDelivery]:
    """Newest first; keyset on (created_at, id)."""
    q = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if status:
        q = q.where(WebhookDelivery.status == status)
    if after:
        at = datetime.fromisoformat(after[0])
        q = q.where(
            or_(
                WebhookDelivery.created_at < at,
                and_(WebhookDelivery.created_at == at, WebhookDelivery.id < after[1]),
            )
        )
    order = (WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    return s.scalars(q.order_by(*order).limit(limit + 1)).all()


def attempts_of(s: Session, delivery_ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
    out: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    if not delivery_ids:
        return out
    q = (
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
        .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt, WebhookAttempt.id)
    )
    for a in s.scalars(q):
        out[a.delivery_id].append(a)
    return out


def due_deliveries(
    s: Session, now: datetime, limit: int, *, only_id: str | None = None
) -> list[tuple[WebhookDelivery, Webhook]]:
    """Pending rows whose time has come and that nobody holds. On PostgreSQL rows another
    worker is claiming right now are skipped rather than waited for (SKIP LOCKED); on SQLite
    the write transaction (BEGIN IMMEDIATE) already serialises claimers."""
    q = (
        select(WebhookDelivery, Webhook)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == "pending",
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
        )
    )
    if only_id is not None:
        q = q.where(WebhookDelivery.id == only_id)
    else:
        q = q.where(WebhookDelivery.next_attempt_at <= now, Webhook.enabled.is_(True))
    q = q.order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True, of=WebhookDelivery)
    return [(d, w) for d, w in s.execute(q).all()]


# ---------------------------------------------------------------- email


def due_emails(s: Session, now: datetime, limit: int) -> Sequence[EmailMessage]:
    q = (
        select(EmailMessage)
        .where(
            EmailMessage.status == "pending",
            EmailMessage.next_attempt_at <= now,
            or_(EmailMessage.claimed_until.is_(None), EmailMessage.claimed_until < now),
        )
        .order_by(EmailMessage.next_attempt_at, EmailMessage.id)
        .limit(limit)
    )
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return s.scalars(q).all()


def list_emails(
    s: Session, *, status: str | None, limit: int, after: list[str] | None
) -> Sequence[EmailMessage]:
    q = select(EmailMessage)
    if status:
        q = q.where(EmailMessage.status == status)
    if after:
        at = datetime.fromisoformat(after[0])
        q = q.where(
            or_(
                EmailMessage.created_at < at,
                and_(EmailMessage.created_at == at, EmailMessage.id < after[1]),
            )
        )
    order = (EmailMessage.created_at.desc(), EmailMessage.id.desc())
    return s.scalars(q.order_by(*order).limit(limit + 1)).all()

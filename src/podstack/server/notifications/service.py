"""Notification rules: in-app notifications, webhook endpoints and their outbox, email outbox.

Nothing here talks to the network. Deliveries are rows written inside the caller's
transaction; ``delivery.py`` (run by ``background.py``) sends them later, so a slow or broken
receiver can never slow down or fail the request that caused the event.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import BadRequest, NotFound, ValidationFailed
from podstack.schemas import notifications as sch
from podstack.server import egress, secretbox
from podstack.server.audit import service as audit
from podstack.server.auth.models import User
from podstack.server.config import Settings
from podstack.server.db.base import model_to_dict, new_id, utcnow
from podstack.server.events.service import EVENT_TYPES, Event
from podstack.server.notifications import repository as repo
from podstack.server.notifications.models import (
    EmailMessage,
    Notification,
    Webhook,
    WebhookDelivery,
)
from podstack.server.pagination import clamp_limit, decode_token, page_of
from podstack.server.permissions import service as permissions
from podstack.server.registry.rules import is_model_name

TEST_EVENT = "webhook.test"
DELIVERY_STATUSES = ("pending", "delivered", "failed")
EMAIL_STATUSES = ("pending", "sent", "failed", "skipped")
DEFAULT_MAX_ATTEMPTS = 8
_WEBHOOK_FIELDS = ["url", "events", "model_names", "description", "enabled"]


# ---------------------------------------------------------------- in-app notifications


def notify(
    s: Session,
    usernames: Iterable[str],
    kind: str,
    title: str,
    *,
    body: str | None = None,
    link: str | None = None,
    data: dict[str, Any] | None = None,
    model_id: int | None = None,
    experiment_id: str | None = None,
) -> list[User]:
    """One in-app notification per (active) user who may read what it is about (the model
    or experiment, when it is about one); returns the users notified, for ``enqueue_email``.
    The row names the resource, so a recipient who loses READ later stops seeing it."""
    users = _readers(s, repo.active_users(s, sorted(set(usernames))), model_id, experiment_id)
    now = utcnow()
    for u in users:
        s.add(
            Notification(
                user_id=u.id,
                kind=kind,
                title=title[:300],
                body=body,
                link=link,
                data=data,
                model_id=model_id,
                experiment_id=experiment_id,
                created_at=now,
            )
        )
    return users


def _readers(
    s: Session, users: Iterable[User], model_id: int | None, experiment_id: str | None
) -> list[User]:
    """The one fan-out rule for notices and emails: only users who can read the resource hear
    about it (a reviewer named by a global policy may not see every team's models)."""
    out = permissions.readers(s, list(users), permissions.MODEL, model_id)
    return permissions.readers(s, out, permissions.EXPERIMENT, experiment_id)


def list_notifications(
    s: Session,
    user_id: int | None,
    *,
    unread_only: bool = False,
    limit: int | None = None,
    page_token: str | None = None,
) -> tuple[list[Notification], str | None]:
    n = clamp_limit(limit)
    key = decode_token(page_token, 1)
    if key is not None and not isinstance(key[0], int):
        raise BadRequest("Invalid page_token.", {"page_token": page_token})
    if user_id is None:  # no-auth / embedded: the local operator has no inbox
        return [], None
    rows = repo.list_notifications(
        s, user_id, unread_only=unread_only, limit=n, before_id=key[0] if key else None
    )
    return page_of(rows, n, lambda r: [r.id])


def open_notification(s: Session, user_id: int | None, notification_id: int) -> Notification:
    """One of the caller's notifications, marked read (following it means reading it)."""
    note = s.get(Notification, notification_id)
    if note is None or user_id is None or note.user_id != user_id:
        raise NotFound(
            f"Notification {notification_id} does not exist.",
            {"notification_id": notification_id},
        )
    if note.read_at is None:
        note.read_at = utcnow()
    return note


def unread_count(s: Session, user_id: int | None) -> int:
    return 0 if user_id is None else repo.unread_count(s, user_id)


def mark_read(s: Session, user_id: int | None, ids: Sequence[int], all_: bool) -> int:
    if not all_ and not ids:
        raise ValidationFailed(
            "Say which notifications to mark read: give 'ids', or 'all': true.",
            {"fields": ["ids", "all"]},
        )
    if user_id is None:
        return 0
    return repo.mark_read(s, user_id, None if all_ else ids, utcnow())


# ---------------------------------------------------------------- email outbox


def enqueue_email(
    s: Session,
    users: Iterable[User],
    subject: str,
    body: str,
    *,
    link: str | None = None,
    model_id: int | None = None,
    experiment_id: str | None = None,
) -> int:
    """Queues one email per user that has an address and may read what it is about. Sent by
    the delivery loop when SMTP is configured; marked ``skipped`` otherwise (so the outbox
    shows why nothing arrived)."""
    count = 0
    now = utcnow()
    for u in _readers(s, users, model_id, experiment_id):
        if not u.email:
            continue
        s.add(
            EmailMessage(
                id=new_id("eml"),
                to_address=u.email,
                to_username=u.username,
                subject=subject[:300],
                body=body,
                link=link,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        count += 1
    return count


def list_emails(
    s: Session, *, status: str | None, limit: int | None, page_token: str | None
) -> tuple[list[EmailMessage], str | None]:
    if status is not None and status not in EMAIL_STATUSES:
        raise ValidationFailed(
            f"Unknown email status {status!r}; valid: {', '.join(EMAIL_STATUSES)}.",
            {"field": "status", "valid": list(EMAIL_STATUSES)},
        )
    n = clamp_limit(limit)
    key = decode_token(page_token, 2)
    rows = repo.list_emails(s, status=status, limit=n, after=[str(k) for k in key] if key else None)
    return page_of(rows, n, lambda r: [r.created_at.isoformat(), r.id])


# ---------------------------------------------------------------- webhooks: validation


def validate_url(url: str, settings: Settings) -> str:
    """The stripped webhook URL, checked by the one outbound-address rule (egress.py): an
    absolute http(s) URL, no userinfo, no loopback/private/link-local/metadata address unless
    allow-listed; ValidationFailed (422, ``details.field == "url"``) otherwise."""
    return egress.validate_url(url, settings, what="Webhook URL", field="url")


def validate_events(events: Sequence[str]) -> list[str]:
    """Exact event types, ``*`` for all, or a family such as ``stage.*``."""
    if not events:
        raise ValidationFailed(
            "A webhook needs at least one event type (use ['*'] for all events).",
            {"field": "events", "valid": list(EVENT_TYPES)},
        )
    out: list[str] = []
    for e in events:
        e = e.strip()
        ok = (
            e == "*"
            or e in EVENT_TYPES
            or (e.endswith(".*") and any(t.startswith(e[:-1]) for t in EVENT_TYPES))
        )
        if not ok:
            raise ValidationFailed(
                f"Unknown event type {e!r}. Valid: '*', a family such as 'stage.*', or one "
                f"of {', '.join(EVENT_TYPES)}.",
                {"field": "events", "value": e[:100], "valid": list(EVENT_TYPES)},
            )
        if e not in out:
            out.append(e)
    return ["*"] if "*" in out else out


def validate_model_names(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        if not is_model_name(n):
            raise ValidationFailed(
                f"{n[:100]!r} is not a model name (1-128 letters, digits, '.', '_' or '-'; "
                "not just '.' or '..').",
                {"field": "model_names"},
            )
        if n not in out:
            out.append(n)
    return out


def event_matches(
    webhook: Webhook | repo.WebhookTarget, event_type: str, model_name: str | None
) -> bool:
    if webhook.model_names and model_name not in webhook.model_names:
        return False
    for pattern in webhook.events or []:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


# ---------------------------------------------------------------- webhooks: CRUD


def get_webhook(s: Session, webhook_id: str) -> Webhook:
    hook = s.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"Webhook {webhook_id!r} does not exist.", {"webhook_id": webhook_id})
    return hook


def list_webhooks(s: Session) -> list[Webhook]:
    return list(repo.list_webhooks(s))


def create_webhook(
    s: Session, actor: str, body: sch.WebhookCreate, *, settings: Settings
) -> tuple[Webhook, str]:
    """Returns the webhook and its secret in clear (shown once); the row holds it encrypted
    (secretbox.py)."""
    secret = body.secret or "whsec_" + secrets.token_urlsafe(32)
    now = utcnow()
    hook = Webhook(
        id=new_id("whk"),
        url=validate_url(body.url, settings),
        description=body.description,
        secret=secretbox.for_settings(settings).encrypt(secret),
        events=validate_events(body.events),
        model_names=validate_model_names(body.model_names),
        enabled=body.enabled,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    s.add(hook)
    s.flush()
    repo.forget_enabled_webhooks(s)
    audit.record(
        s, actor, "webhook.create", "webhook", hook.id, None, model_to_dict(hook, _WEBHOOK_FIELDS)
    )
    return hook, secret


def update_webhook(
    s: Session, actor: str, webhook_id: str, body: sch.WebhookUpdate, *, settings: Settings
) -> Webhook:
    hook = get_webhook(s, webhook_id)
    repo.forget_enabled_webhooks(s)
    before = model_to_dict(hook, _WEBHOOK_FIELDS)
    changes = body.model_dump(exclude_unset=True)
    if "url" in changes:
        if changes["url"] is None:
            raise ValidationFailed("url cannot be null.", {"field": "url"})
        hook.url = validate_url(changes["url"], settings)
    if "events" in changes:
        hook.events = validate_events(changes["events"] or [])
    if "model_names" in changes:
        hook.model_names = validate_model_names(changes["model_names"] or [])
    if "description" in changes:
        hook.description = changes["description"]
    if "enabled" in changes:
        if changes["enabled"] is None:
            raise ValidationFailed("enabled cannot be null.", {"field": "enabled"})
        hook.enabled = bool(changes["enabled"])
    after = model_to_dict(hook, _WEBHOOK_FIELDS)
    if after != before:
        hook.updated_at = utcnow()
        audit.record(s, actor, "webhook.update", "webhook", hook.id, before, after)
    return hook


def encrypt_stored_secrets(s: Session, box: secretbox.SecretBox) -> tuple[int, int]:
    """Encrypts webhook secrets stored in clear (rows from before encryption at rest); returns
    (encrypted now, stored values the key cannot decrypt)."""
    sealed = unreadable = 0
    for hook in repo.list_webhooks(s):
        if not box.is_encrypted(hook.secret):
            hook.secret = box.encrypt(hook.secret)
            sealed += 1
            continue
        try:
            box.decrypt(hook.secret)
        except secretbox.SecretKeyError:
            unreadable += 1
    return sealed, unreadable


def delete_webhook(s: Session, actor: str, webhook_id: str) -> None:
    hook = get_webhook(s, webhook_id)
    before = model_to_dict(hook, _WEBHOOK_FIELDS)
    s.delete(hook)
    repo.forget_enabled_webhooks(s)
    audit.record(s, actor, "webhook.delete", "webhook", webhook_id, before, None)


# ---------------------------------------------------------------- webhooks: outbox


def _body(delivery_id: str, event_id: str, event_type: str, at: str, actor: str, data: Any) -> str:
    doc = {
        "id": delivery_id,
        "event_id": event_id,
        "type": event_type,
        "created_at": at,
        "actor": actor,
        "data": data,
    }
    return json.dumps(doc, separators=(",", ":"), default=str)


def _model_name_of(payload: dict[str, Any]) -> str | None:
    name = payload.get("model_name", payload.get("model"))
    return name if isinstance(name, str) else None


def enqueue_event(s: Session, event: Event) -> list[str]:
    """The outbox sink: one delivery per matching enabled webhook, in the event's transaction.
    Returns the new deliveries' ids.

    Not filtered by permissions, on purpose: only admins create, see and change webhooks and
    their deliveries (every route is ``AdminCtx``), an admin reads every model and experiment,
    and the payload goes to the URL that admin chose; no user's permission is involved. An
    admin who wants one team's events only sets ``model_names``."""
    hooks = repo.enabled_webhooks(s)
    if not hooks:
        return []
    model_name = _model_name_of(event.payload)
    at = event.at.isoformat()
    rows = []
    for hook in hooks:
        if not event_matches(hook, event.type, model_name):
            continue
        d_id = new_id("whd")
        rows.append(
            {
                "id": d_id,
                "webhook_id": hook.id,
                "event_id": event.id,
                "event_type": event.type,
                "body": _body(d_id, event.id, event.type, at, event.actor, event.payload),
                "status": "pending",
                "attempts": 0,
                "max_attempts": DEFAULT_MAX_ATTEMPTS,
                "next_attempt_at": event.at,
                "created_at": event.at,
            }
        )
    repo.insert_deliveries(s, rows)
    return [r["id"] for r in rows]


def enqueue_test(s: Session, actor: str, webhook_id: str) -> WebhookDelivery:
    """A ``webhook.test`` delivery, tried once (the caller sends it right away)."""
    hook = get_webhook(s, webhook_id)
    now = utcnow()
    d_id = new_id("whd")
    event_id = new_id("evt", 12)
    data = {"message": "Test delivery from Podstack MLOps.", "webhook_id": hook.id}
    d = WebhookDelivery(
        id=d_id,
        webhook_id=hook.id,
        event_id=event_id,
        event_type=TEST_EVENT,
        body=_body(d_id, event_id, TEST_EVENT, now.isoformat(), actor, data),
        status="pending",
        attempts=0,
        max_attempts=1,
        next_attempt_at=now,
        created_at=now,
    )
    s.add(d)
    s.flush()
    audit.record(s, actor, "webhook.test", "webhook", hook.id, None, {"delivery_id": d_id})
    return d


def get_delivery(s: Session, delivery_id: str) -> WebhookDelivery:
    d = s.get(WebhookDelivery, delivery_id)
    if d is None:
        raise NotFound(
            f"Webhook delivery {delivery_id!r} does not exist.", {"delivery_id": delivery_id}
        )
    return d


def redeliver(s: Session, actor: str, delivery_id: str) -> WebhookDelivery:
    """Queues a finished (delivered or failed) delivery again, same id and body, so receivers
    that de-duplicate on the id see it as the same message."""
    d = get_delivery(s, delivery_id)
    if d.status != "pending":
        d.status = "pending"
        d.max_attempts = d.attempts + (1 if d.event_type == TEST_EVENT else DEFAULT_MAX_ATTEMPTS)
        d.next_attempt_at = utcnow()
        d.finished_at = None
        audit.record(s, actor, "webhook.redeliver", "webhook_delivery", d.id)
    return d


def list_deliveries(
    s: Session,
    webhook_id: str,
    *,
    status: str | None = None,
    limit: int | None = None,
    page_token: str | None = None,
) -> tuple[list[WebhookDelivery], str | None]:
    get_webhook(s, webhook_id)
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValidationFailed(
            f"Unknown delivery status {status!r}; valid: {', '.join(DELIVERY_STATUSES)}.",
            {"field": "status", "valid": list(DELIVERY_STATUSES)},
        )
    n = clamp_limit(limit)
    key = decode_token(page_token, 2)
    rows = repo.list_deliveries(
        s, webhook_id, status=status, limit=n, after=[str(k) for k in key] if key else None
    )
    return page_of(rows, n, lambda r: [r.created_at.isoformat(), r.id])


def delivery_views(
    s: Session, deliveries: Sequence[WebhookDelivery], *, with_body: bool = False
) -> list[sch.WebhookDelivery]:
    attempts = repo.attempts_of(s, [d.id for d in deliveries])
    out = []
    for d in deliveries:
        view = sch.WebhookDelivery.model_validate(d)
        view.body = d.body if with_body else None
        view.next_attempt_at = d.next_attempt_at if d.status == "pending" else None
        view.attempt_log = [sch.WebhookAttempt.model_validate(a) for a in attempts[d.id]]
        out.append(view)
    return out

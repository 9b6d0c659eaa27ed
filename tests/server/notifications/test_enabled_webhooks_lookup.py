"""The outbox reads the enabled webhooks once per transaction: later events of the same
transaction reuse the read, webhook changes made in it are seen at once, and the next
transaction reads again (so a webhook made elsewhere, e.g. on another replica, counts)."""

from __future__ import annotations

from sqlalchemy import event, func, select

from podstack.schemas import notifications as nsch
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.events import service as events
from podstack.server.notifications import service as notifications
from podstack.server.notifications import sinks  # noqa: F401 (subscribes the outbox)
from podstack.server.notifications.models import WebhookDelivery


def _count(s: object) -> int:
    return s.scalar(select(func.count()).select_from(WebhookDelivery))  # type: ignore[attr-defined]


def test_one_read_per_transaction_and_changes_seen(db: Database, settings: Settings) -> None:
    reads: list[str] = []

    def before(_conn: object, _cur: object, stmt: str, *_args: object) -> None:
        if "FROM webhooks" in stmt:
            reads.append(stmt)

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        with db.session() as s:
            events.emit(s, "model.created", {"model_name": "a"}, "admin")
            events.emit(s, "version.created", {"model_name": "a", "version": 1}, "admin")
            assert len(reads) == 1 and _count(s) == 0
            hook, _ = notifications.create_webhook(
                s,
                "admin",
                nsch.WebhookCreate(url="https://h.example/x", events=["*"]),
                settings=settings,
            )
            events.emit(s, "version.created", {"model_name": "a", "version": 2}, "admin")
            assert _count(s) == 1
            notifications.update_webhook(
                s, "admin", hook.id, nsch.WebhookUpdate(enabled=False), settings=settings
            )
            events.emit(s, "version.created", {"model_name": "a", "version": 3}, "admin")
            assert _count(s) == 1
            notifications.update_webhook(
                s, "admin", hook.id, nsch.WebhookUpdate(enabled=True), settings=settings
            )
        # Another transaction (another request, another replica) reads again.
        with db.session() as s:
            n = len(reads)
            events.emit(s, "version.created", {"model_name": "a", "version": 4}, "admin")
            assert len(reads) == n + 1 and _count(s) == 2
            notifications.delete_webhook(s, "admin", hook.id)
            events.emit(s, "version.created", {"model_name": "a", "version": 5}, "admin")
            assert _count(s) == 0  # deliveries cascade with their webhook
    finally:
        event.remove(db.engine, "before_cursor_execute", before)

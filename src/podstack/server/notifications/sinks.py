"""Subscribes the webhook outbox to domain events (imported by the app factory).

The sink runs inside the emitter's transaction: the delivery rows commit (or roll back)
together with the change they announce. Sending happens later, in ``background.py``.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from podstack.server.events.service import Event, subscribe
from podstack.server.notifications import service


def webhook_outbox(s: Session, event: Event) -> None:
    service.enqueue_event(s, event)


subscribe(webhook_outbox)

"""Domain events: capabilities ``emit`` what happened; sinks (webhook outbox, in-app
notifications, email) subscribe. Sinks run inside the emitter's transaction, so an event and
its deliveries are committed together or not at all (the durable-outbox guarantee).

Event types in use (keep this list current, webhooks filter on it):
  model.created, model.deleted, version.created, version.deleted,
  stage.transition_requested, stage.transition_approved, stage.transition_rejected,
  stage.transition_applied, alias.moved, alias.deleted,
  schedule.execution_started, schedule.execution_finished, schedule.execution_failed,
  deployment.ready, deployment.failed, deployment.updated, deployment.deleted
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from podstack.server.db.base import new_id, utcnow

EVENT_TYPES = (
    "model.created",
    "model.deleted",
    "version.created",
    "version.deleted",
    "stage.transition_requested",
    "stage.transition_approved",
    "stage.transition_rejected",
    "stage.transition_applied",
    "alias.moved",
    "alias.deleted",
    "schedule.execution_started",
    "schedule.execution_finished",
    "schedule.execution_failed",
    "deployment.ready",
    "deployment.failed",
    "deployment.updated",
    "deployment.deleted",
)


@dataclass(frozen=True)
class Event:
    type: str
    payload: dict[str, Any]
    actor: str
    id: str = field(default_factory=lambda: new_id("evt", 12))
    at: datetime = field(default_factory=utcnow)


Sink = Callable[[Session, Event], None]
_SINKS: list[Sink] = []


def subscribe(sink: Sink) -> None:
    if sink not in _SINKS:
        _SINKS.append(sink)


def emit(s: Session, event_type: str, payload: dict[str, Any], actor: str) -> Event:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")  # programming error
    event = Event(type=event_type, payload=payload, actor=actor)
    for sink in _SINKS:
        sink(s, event)
    return event

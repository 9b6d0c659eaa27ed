"""Deployments that follow an alias roll when it moves.

The sink runs inside the registry's transaction, so the deployment's desired version changes
atomically with the alias; the rollout itself starts after that transaction commits.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from podstack.server.deployments import effects, service
from podstack.server.events import service as events


def _on_event(s: Session, ev: events.Event) -> None:
    if ev.type != "alias.moved":
        return
    ids = service.follow_alias(s, ev.actor, ev.payload["model_name"], ev.payload["alias"])
    if not ids:
        return
    effects.kick(s, ids)


events.subscribe(_on_event)

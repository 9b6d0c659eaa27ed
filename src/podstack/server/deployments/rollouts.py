"""Small rules of a deployment's rollout state: ending a failed rollout's record, the health
history kept, the lease a manager takes while converging.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from podstack.server.db.base import utcnow
from podstack.server.deployments.models import Deployment

HEALTH_KEEP = 20


def clear_failed_rollout(d: Deployment) -> bool:
    """The next action on a deployment (update, rollback, start, an alias move) ends the
    record of a failed rollout, which stays visible until then; True if there was one."""
    if (d.rollout or {}).get("status") != "failed":
        return False
    d.rollout = None
    if d.status == "ready":
        d.status_reason = None  # "Rollout to vN failed ... Still serving": over now
    return True


def record_health(d: Deployment, ok: bool, latency_ms: float | None, message: str) -> None:
    entry = {"at": utcnow().isoformat(), "ok": ok, "latency_ms": latency_ms, "message": message}
    d.health = [*(d.health or [])[-(HEALTH_KEEP - 1) :], entry]


def lease_window(seconds: float) -> tuple[Any, Any]:
    now = utcnow()
    return now, now + timedelta(seconds=seconds)

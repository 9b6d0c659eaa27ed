"""Schedule and execution rows as the wire shows them (webhook secrets masked)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from podstack.schemas import schedules as sch
from podstack.server.db.base import utcnow
from podstack.server.schedules import cron
from podstack.server.schedules import repository as repo
from podstack.server.schedules.models import Schedule, ScheduleExecution

# How many upcoming fire times a schedule shows.
NEXT_FIRE_PREVIEW = 5


def redact(executor: dict[str, Any]) -> dict[str, Any]:
    """Executor settings fit for output and audit: the webhook secret never leaves."""
    out = dict(executor)
    if out.get("secret"):
        out["secret"] = sch.SECRET_MASK
    return out


def execution_view(ex: ScheduleExecution, schedule_name: str | None = None) -> sch.Execution:
    duration = None
    if ex.started_at is not None and ex.finished_at is not None:
        duration = max(0.0, (ex.finished_at - ex.started_at).total_seconds())
    return sch.Execution(
        id=ex.id,
        schedule_id=ex.schedule_id,
        schedule_name=schedule_name,
        schedule_version=ex.schedule_version,
        scheduled_time=ex.scheduled_time,
        trigger=sch.Trigger(ex.trigger),
        status=sch.ExecutionStatus(ex.status),
        run_id=ex.run_id,
        executor=ex.executor,
        started_at=ex.started_at,
        finished_at=ex.finished_at,
        duration_seconds=duration,
        exit_code=ex.exit_code,
        log_tail=ex.log_tail,
        log_artifact=ex.log_artifact,
        message=ex.message,
        cancel_requested=ex.cancel_requested,
        external_id=ex.external_id,
        created_at=ex.created_at,
    )


def execution_views(s: Session, rows: list[ScheduleExecution]) -> list[sch.Execution]:
    names = repo.schedule_names(s, [r.schedule_id for r in rows])
    return [execution_view(r, names.get(r.schedule_id)) for r in rows]


def schedule_views(
    s: Session, rows: list[Schedule], *, now: datetime | None = None
) -> list[sch.Schedule]:
    now = now or utcnow()
    last = repo.last_executions(s, [r.id for r in rows])
    exp_names = repo.experiment_names(s, [r.experiment_id for r in rows if r.experiment_id])
    out = []
    for r in rows:
        upcoming: list[datetime] = []
        if r.next_fire_at is not None:
            upcoming = [
                r.next_fire_at,
                *cron.next_n(r.cron, r.timezone, r.next_fire_at, NEXT_FIRE_PREVIEW - 1),
            ]
        ex = last.get(r.id)
        out.append(
            sch.Schedule(
                id=r.id,
                name=r.name,
                description=r.description,
                experiment_id=r.experiment_id,
                experiment_name=exp_names.get(r.experiment_id) if r.experiment_id else None,
                cron=r.cron,
                timezone=r.timezone,
                cron_description=cron.describe(r.cron),
                config=dict(r.config or {}),
                executor=redact(r.executor),
                overlap_policy=sch.OverlapPolicy(r.overlap_policy),
                misfire_policy=sch.MisfirePolicy(r.misfire_policy),
                misfire_grace_seconds=r.misfire_grace_seconds,
                timeout_seconds=r.timeout_seconds,
                paused=r.paused,
                deleted=r.deleted_at is not None,
                next_fire_at=r.next_fire_at,
                next_fire_times=upcoming,
                version=r.version,
                created_by=r.created_by,
                created_at=r.created_at,
                updated_at=r.updated_at,
                deleted_at=r.deleted_at,
                last_execution=execution_view(ex, r.name) if ex else None,
            )
        )
    return out


def schedule_view(s: Session, row: Schedule, *, now: datetime | None = None) -> sch.Schedule:
    return schedule_views(s, [row], now=now)[0]

"""Every schedule and execution query lives here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from podstack.server.schedules.models import Schedule, ScheduleExecution
from podstack.server.tracking.models import Experiment

ACTIVE = ("queued", "running")


# ---------------------------------------------------------------- schedules


def get_schedule(s: Session, ref: str, *, for_update: bool = False) -> Schedule | None:
    """By id (deleted ones included: their history stays reachable) or by live name."""
    q = select(Schedule).where(Schedule.id == ref)
    if for_update:
        q = q.with_for_update()
    row = s.scalar(q)
    if row is None:
        q = select(Schedule).where(Schedule.name == ref, Schedule.deleted_at.is_(None))
        if for_update:
            q = q.with_for_update()
        row = s.scalar(q)
    return row


def deleted_named(s: Session, name: str) -> Schedule | None:
    return s.scalar(
        select(Schedule)
        .where(Schedule.name == name, Schedule.deleted_at.is_not(None))
        .order_by(Schedule.deleted_at.desc())
        .limit(1)
    )


def webhook_schedules(s: Session) -> list[Schedule]:
    """Every schedule (deleted ones too) whose executor is a webhook. The executor is JSON, so
    the type is filtered here; there are few schedules, and this runs once at start."""
    rows = s.scalars(select(Schedule).order_by(Schedule.id)).all()
    return [r for r in rows if (r.executor or {}).get("type") == "webhook"]


def live_name_taken(s: Session, name: str) -> bool:
    q = select(Schedule.id).where(Schedule.name == name, Schedule.deleted_at.is_(None))
    return s.scalar(q) is not None


def list_schedules(
    s: Session,
    *,
    q: str | None,
    include_deleted: bool,
    paused: bool | None,
    experiment_id: str | None,
    limit: int,
    after: list[Any] | None,
) -> Sequence[Schedule]:
    stmt = select(Schedule).order_by(Schedule.name, Schedule.id).limit(limit + 1)
    if not include_deleted:
        stmt = stmt.where(Schedule.deleted_at.is_(None))
    if paused is not None:
        stmt = stmt.where(Schedule.paused.is_(paused))
    if experiment_id is not None:
        stmt = stmt.where(Schedule.experiment_id == experiment_id)
    if q:
        text = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(func.lower(Schedule.name).like(f"%{text}%", escape="\\"))
    if after:
        stmt = stmt.where(
            or_(Schedule.name > after[0], and_(Schedule.name == after[0], Schedule.id > after[1]))
        )
    return s.scalars(stmt).all()


def due_schedule_ids(s: Session, now: datetime, limit: int) -> list[str]:
    q = (
        select(Schedule.id)
        .where(
            Schedule.paused.is_(False),
            Schedule.deleted_at.is_(None),
            Schedule.next_fire_at.is_not(None),
            Schedule.next_fire_at <= now,
        )
        .order_by(Schedule.next_fire_at)
        .limit(limit)
    )
    return list(s.scalars(q))


def lock_due_schedule(s: Session, schedule_id: str, now: datetime) -> Schedule | None:
    """The schedule if it is still due, row-locked; None if another replica holds it (SKIP
    LOCKED on PostgreSQL; SQLite writers are serialised by BEGIN IMMEDIATE) or already fired
    it (its next_fire_at moved on)."""
    q = (
        select(Schedule)
        .where(
            Schedule.id == schedule_id,
            Schedule.paused.is_(False),
            Schedule.deleted_at.is_(None),
            Schedule.next_fire_at.is_not(None),
            Schedule.next_fire_at <= now,
        )
        .with_for_update(skip_locked=True)
    )
    return s.scalar(q)


# ---------------------------------------------------------------- executions


def add_execution(s: Session, row: ScheduleExecution) -> None:
    s.add(row)
    s.flush()


def execution_exists(s: Session, schedule_id: str, scheduled_time: datetime) -> bool:
    q = select(ScheduleExecution.id).where(
        ScheduleExecution.schedule_id == schedule_id,
        ScheduleExecution.scheduled_time == scheduled_time,
    )
    return s.scalar(q) is not None


def get_execution(
    s: Session, execution_id: str, *, for_update: bool = False
) -> ScheduleExecution | None:
    q = select(ScheduleExecution).where(ScheduleExecution.id == execution_id)
    if for_update:
        q = q.with_for_update()
    return s.scalar(q)


def execution_for_run(
    s: Session, run_id: str, *, for_update: bool = False
) -> ScheduleExecution | None:
    q = select(ScheduleExecution).where(ScheduleExecution.run_id == run_id)
    if for_update:
        q = q.with_for_update()
    return s.scalar(q)


def has_active_execution(s: Session, schedule_id: str) -> bool:
    q = select(ScheduleExecution.id).where(
        ScheduleExecution.schedule_id == schedule_id, ScheduleExecution.status.in_(ACTIVE)
    )
    return s.scalar(q.limit(1)) is not None


def queued_of_older_version(
    s: Session, schedule_id: str, version: int
) -> Sequence[ScheduleExecution]:
    q = select(ScheduleExecution).where(
        ScheduleExecution.schedule_id == schedule_id,
        ScheduleExecution.status == "queued",
        ScheduleExecution.schedule_version < version,
    )
    return s.scalars(q).all()


def queued_of_schedule(s: Session, schedule_id: str) -> Sequence[ScheduleExecution]:
    q = select(ScheduleExecution).where(
        ScheduleExecution.schedule_id == schedule_id, ScheduleExecution.status == "queued"
    )
    return s.scalars(q).all()


def ready_execution_ids(s: Session, now: datetime, limit: int) -> list[str]:
    q = (
        select(ScheduleExecution.id)
        .where(
            ScheduleExecution.status == "queued",
            or_(ScheduleExecution.retry_at.is_(None), ScheduleExecution.retry_at <= now),
        )
        .order_by(ScheduleExecution.scheduled_time, ScheduleExecution.id)
        .limit(limit)
    )
    return list(s.scalars(q))


def lock_execution(
    s: Session, execution_id: str, status: str | Sequence[str]
) -> ScheduleExecution | None:
    """The execution if it is (still) in ``status``, row-locked, skipping rows another
    replica is working on."""
    statuses = [status] if isinstance(status, str) else list(status)
    q = (
        select(ScheduleExecution)
        .where(ScheduleExecution.id == execution_id, ScheduleExecution.status.in_(statuses))
        .with_for_update(skip_locked=True)
    )
    return s.scalar(q)


def running_ids(s: Session, executor: str | None = None) -> list[str]:
    q = select(ScheduleExecution.id).where(ScheduleExecution.status == "running")
    if executor is not None:
        q = q.where(ScheduleExecution.executor == executor)
    return list(s.scalars(q.order_by(ScheduleExecution.id)))


def expired_leases(s: Session, now: datetime) -> list[str]:
    """Running executions whose claiming server stopped renewing (local jobs) or died before
    handing the job to its external system."""
    q = select(ScheduleExecution.id).where(
        ScheduleExecution.status == "running",
        ScheduleExecution.lease_until.is_not(None),
        ScheduleExecution.lease_until < now,
    )
    return list(s.scalars(q))


@dataclass(frozen=True)
class RemoteRunning:
    id: str
    executor: str
    external_id: str | None
    started_at: datetime | None
    cancel_requested: bool
    lease_until: datetime | None
    timeout_seconds: int | None
    config: dict[str, Any]


def running_remote(s: Session) -> list[RemoteRunning]:
    """Running webhook and Kubernetes executions with their schedule's timeout and executor."""
    q = (
        select(ScheduleExecution, Schedule.timeout_seconds, Schedule.executor)
        .join(Schedule, Schedule.id == ScheduleExecution.schedule_id)
        .where(ScheduleExecution.status == "running", ScheduleExecution.executor != "local")
        .order_by(ScheduleExecution.id)
    )
    return [
        RemoteRunning(
            ex.id,
            ex.executor,
            ex.external_id,
            ex.started_at,
            bool(ex.cancel_requested),
            ex.lease_until,
            timeout,
            dict(executor or {}),
        )
        for ex, timeout, executor in s.execute(q)
    ]


def renew_leases(s: Session, ids: Sequence[str], worker: str, until: datetime) -> None:
    if ids:
        s.execute(
            update(ScheduleExecution)
            .where(
                ScheduleExecution.id.in_(list(ids)),
                ScheduleExecution.claimed_by == worker,
                ScheduleExecution.status == "running",
            )
            .values(lease_until=until)
        )


def cancel_flags(s: Session, ids: Sequence[str]) -> dict[str, bool]:
    if not ids:
        return {}
    q = select(ScheduleExecution.id, ScheduleExecution.cancel_requested, ScheduleExecution.status)
    rows = s.execute(q.where(ScheduleExecution.id.in_(list(ids)))).all()
    return {r[0]: bool(r[1]) or r[2] != "running" for r in rows}


def list_executions(
    s: Session,
    schedule_id: str,
    *,
    status: str | None,
    limit: int,
    after: list[Any] | None,
) -> Sequence[ScheduleExecution]:
    """Newest first."""
    stmt = (
        select(ScheduleExecution)
        .where(ScheduleExecution.schedule_id == schedule_id)
        .order_by(ScheduleExecution.scheduled_time.desc(), ScheduleExecution.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        stmt = stmt.where(ScheduleExecution.status == status)
    if after:
        t = datetime.fromisoformat(after[0])  # validated by the service
        stmt = stmt.where(
            or_(
                ScheduleExecution.scheduled_time < t,
                and_(ScheduleExecution.scheduled_time == t, ScheduleExecution.id < after[1]),
            )
        )
    return s.scalars(stmt).all()


def last_executions(s: Session, schedule_ids: Sequence[str]) -> dict[str, ScheduleExecution]:
    """The latest execution of each schedule, in one query."""
    if not schedule_ids:
        return {}
    latest = (
        select(
            ScheduleExecution.schedule_id.label("sid"),
            func.max(ScheduleExecution.scheduled_time).label("t"),
        )
        .where(ScheduleExecution.schedule_id.in_(list(schedule_ids)))
        .group_by(ScheduleExecution.schedule_id)
        .subquery()
    )
    q = select(ScheduleExecution).join(
        latest,
        and_(
            ScheduleExecution.schedule_id == latest.c.sid,
            ScheduleExecution.scheduled_time == latest.c.t,
        ),
    )
    return {row.schedule_id: row for row in s.scalars(q)}


def schedule_names(s: Session, ids: Sequence[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = s.execute(select(Schedule.id, Schedule.name).where(Schedule.id.in_(list(set(ids)))))
    return {r[0]: r[1] for r in rows}


def experiment_names(s: Session, ids: Sequence[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = s.execute(
        select(Experiment.id, Experiment.name).where(Experiment.id.in_(list(set(ids))))
    )
    return {r[0]: r[1] for r in rows}

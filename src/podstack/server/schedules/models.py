"""Schedules and their executions (the history)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from podstack.server.db.base import Base, JSONType, UTCDateTime, utcnow


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (
        # Names are unique among live schedules; a deleted one keeps its name in the history
        # and frees it for reuse.
        Index(
            "uq_schedules_live_name",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # The scheduler's one hot query: live, unpaused schedules due by now.
        Index("ix_schedules_due", "paused", "next_fire_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    # SET NULL: deleting the experiment leaves the schedule (it then fails to fire, clearly).
    experiment_id: Mapped[str | None] = mapped_column(
        ForeignKey("experiments.id", ondelete="SET NULL")
    )
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    executor: Mapped[dict[str, Any]] = mapped_column(JSONType)
    overlap_policy: Mapped[str] = mapped_column(String(16), default="skip")
    misfire_policy: Mapped[str] = mapped_column(String(16), default="run_latest")
    misfire_grace_seconds: Mapped[int | None] = mapped_column(Integer)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # None while paused or deleted.
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped by every edit; queued executions of an older version are dropped.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ScheduleExecution(Base):
    __tablename__ = "schedule_executions"
    __table_args__ = (
        # Exactly once: a second replica or a retried tick cannot insert the same fire again.
        # Its index also serves the history listing (newest first per schedule).
        UniqueConstraint("schedule_id", "scheduled_time", name="uq_schedule_executions_fire"),
        Index("ix_schedule_executions_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    schedule_version: Mapped[int] = mapped_column(Integer)
    scheduled_time: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))
    executor: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    # The run-scoped API token handed to the job; revoked when the execution ends.
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    log_tail: Mapped[str | None] = mapped_column(Text)
    log_artifact: Mapped[str | None] = mapped_column(String(512))
    message: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Kubernetes Job name; for webhooks the idempotency key sent.
    external_id: Mapped[str | None] = mapped_column(String(253))
    # Which server process runs a local job, and until when that claim holds.
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Webhook delivery: attempts so far and when to try again.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

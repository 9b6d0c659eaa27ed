"""Execution lifecycle rules: firing a due schedule (misfire and overlap policies), starting
an execution (its run, params and run-scoped token), finishing it (log artifact, run status,
token revoked, event), cancelling, and the webhook executor's completion callback.

Each function works inside the caller's transaction; the scheduler decides when to call them
and does the I/O (processes, HTTP, Kubernetes) outside transactions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, PodstackError
from podstack.schemas import schedules as sch
from podstack.schemas import tracking as tsch
from podstack.server.artifacts import service as artifacts
from podstack.server.artifacts.store import StoredBlob
from podstack.server.audit import service as audit
from podstack.server.auth import service as auth
from podstack.server.auth.models import User
from podstack.server.auth.principal import Principal
from podstack.server.db.base import new_id, utcnow
from podstack.server.events import service as events
from podstack.server.permissions import service as permissions
from podstack.server.schedules import cron, wakeup
from podstack.server.schedules import repository as repo
from podstack.server.schedules.models import Schedule, ScheduleExecution
from podstack.server.tracking import service as tracking

# The account scheduled jobs act as: an editor without a password whose tokens are each
# limited to one run (scope "run:<id>") and revoked when the execution ends.
SYSTEM_USER = "podstack-scheduler"
SYSTEM_PRINCIPAL = Principal(username=SYSTEM_USER, role="admin", via="local")
LOG_ARTIFACT = "logs/execution.log"
LOG_TAIL_CHARS = 8000
_TERMINAL_RUN = {
    sch.ExecutionStatus.SUCCEEDED.value: tsch.RunStatus.FINISHED,
    sch.ExecutionStatus.FAILED.value: tsch.RunStatus.FAILED,
    sch.ExecutionStatus.TIMED_OUT.value: tsch.RunStatus.FAILED,
    sch.ExecutionStatus.CANCELLED.value: tsch.RunStatus.KILLED,
}
_ACTIVE = {s.value for s in sch.ACTIVE_STATUSES}


@dataclass(frozen=True)
class FirePolicy:
    misfire_threshold_seconds: int
    default_grace_seconds: int
    # How often the scheduler looks for due ticks: a tick reached later than two of these
    # (at least 10 s) was missed at its time (server down or overloaded) even if it is still
    # within the misfire threshold, and the execution says so.
    tick_seconds: float = 5.0

    @property
    def late_note_seconds(self) -> float:
        return max(2 * self.tick_seconds, 10.0)


@dataclass
class JobSpec:
    """Everything an executor needs to run one execution."""

    execution_id: str
    schedule_id: str
    schedule_name: str
    run_id: str
    experiment_id: str
    scheduled_time: datetime
    trigger: str
    params: dict[str, str]
    config: dict[str, Any]
    executor: dict[str, Any]
    timeout_seconds: int | None
    api_url: str
    api_token: str
    attempt: int
    callback_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The variables a job sees, so ``MLOpsClient()`` logs into its run."""
        env = {
            "PODSTACK_URL": self.api_url,
            "PODSTACK_API_TOKEN": self.api_token,
            "PODSTACK_RUN_ID": self.run_id,
            "PODSTACK_EXPERIMENT_ID": self.experiment_id,
            "PODSTACK_SCHEDULE": self.schedule_name,
            "PODSTACK_EXECUTION_ID": self.execution_id,
            "PODSTACK_SCHEDULED_TIME": self.scheduled_time.isoformat(),
            "PODSTACK_PARAMS": json.dumps(self.config, sort_keys=True),
        }
        for k, v in self.params.items():
            env["PODSTACK_PARAM_" + re.sub(r"[^A-Za-z0-9]", "_", k).upper()] = v
        return env


def param_value(v: Any) -> str:
    return "" if v is None else str(v)


# ---------------------------------------------------------------- firing


def fire(s: Session, row: Schedule, now: datetime, policy: FirePolicy) -> list[ScheduleExecution]:
    """Handles every tick of ``row`` due by ``now`` (the caller holds its row lock) and moves
    ``next_fire_at`` past ``now``. At most one execution is recorded per call: ticks missed
    during downtime are coalesced into the latest one, which runs (``catch_up``) if the
    policy allows and it is within the grace window, and is recorded as skipped otherwise."""
    assert row.next_fire_at is not None
    latest, count = cron.due(row.cron, row.timezone, row.next_fire_at, now)
    first_missed = row.next_fire_at
    row.next_fire_at = cron.next_after(row.cron, row.timezone, now)
    if latest is None:
        return []
    lateness = (now - latest).total_seconds()
    grace = row.misfire_grace_seconds or policy.default_grace_seconds
    notes: list[str] = []
    if count > 1:
        more = "at least " if count >= 100_000 else ""
        notes.append(
            f"{more}{count - 1} earlier tick(s) from {first_missed:%Y-%m-%d %H:%M} UTC were "
            "missed while no scheduler was running."
        )
    status = sch.ExecutionStatus.QUEUED
    trigger = sch.Trigger.CRON
    if lateness > policy.misfire_threshold_seconds:
        late = f"{_span(lateness)} late"
        if row.misfire_policy == sch.MisfirePolicy.RUN_LATEST.value and lateness <= grace:
            trigger = sch.Trigger.CATCH_UP
            notes.insert(0, f"Catch-up: this tick ran {late} (grace window {_span(grace)}).")
        else:
            status = sch.ExecutionStatus.SKIPPED_MISFIRE
            why = (
                f"outside the {_span(grace)} grace window"
                if row.misfire_policy == sch.MisfirePolicy.RUN_LATEST.value
                else "misfire policy is 'skip'"
            )
            notes.insert(0, f"Skipped: the scheduler reached this tick {late} ({why}).")
    elif lateness > policy.late_note_seconds:
        # Within the threshold it runs as an ordinary tick, but not silently: the history
        # shows that the scheduler was not there at the tick's time.
        notes.insert(
            0,
            f"Late: the scheduler reached this tick {_span(lateness)} after its time "
            f"{latest:%Y-%m-%d %H:%M:%S} UTC (no scheduler was running, or it was overloaded); "
            f"within the {_span(policy.misfire_threshold_seconds)} misfire threshold, so it "
            "ran as usual.",
        )
    if (
        status == sch.ExecutionStatus.QUEUED
        and row.overlap_policy == sch.OverlapPolicy.SKIP.value
        and repo.has_active_execution(s, row.id)
    ):
        status = sch.ExecutionStatus.SKIPPED_OVERLAP
        notes.insert(0, "Skipped: the previous execution was still running.")
    if repo.execution_exists(s, row.id, latest):
        return []  # another scheduler recorded this fire already
    ex = ScheduleExecution(
        id=new_id("exe"),
        schedule_id=row.id,
        schedule_version=row.version,
        scheduled_time=latest,
        trigger=trigger.value,
        status=status.value,
        executor=row.executor.get("type", "local"),
        message=" ".join(notes) or None,
        finished_at=None if status == sch.ExecutionStatus.QUEUED else now,
        created_at=now,
    )
    try:
        with s.begin_nested():
            repo.add_execution(s, ex)
    except IntegrityError:
        # The unique (schedule, scheduled time) key: a concurrent replica won the race.
        return []
    return [ex]


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


# ---------------------------------------------------------------- starting


def _system_user(s: Session) -> User | str:
    """The scheduler's account, created on first use; a string says why it cannot be used."""
    try:
        user = auth.get_user(s, SYSTEM_USER)
    except NotFound:
        try:
            with s.begin_nested():
                user = auth.create_user(
                    s,
                    "system",
                    SYSTEM_USER,
                    role="editor",
                    display_name="Scheduled jobs (system account)",
                )
        except (IntegrityError, Conflict):
            # Created concurrently by another replica: Conflict if it committed before our
            # existence check, IntegrityError if it committed while we inserted.
            user = auth.get_user(s, SYSTEM_USER)
    if user.disabled or user.role == "viewer":
        return (
            f"The system account {SYSTEM_USER!r} is disabled or only a viewer, so the job could "
            "not get a token for its run; enable it with the editor role."
        )
    return user


def start(
    s: Session,
    ex: ScheduleExecution,
    *,
    worker: str,
    now: datetime,
    lease_seconds: int,
    api_url: str,
) -> JobSpec | None:
    """Creates the run (params = configuration, tags linking it to the schedule) and a token
    limited to it, and marks the execution running under ``worker``'s lease. Returns None if
    the execution could not start (it is then finished as failed, with the reason)."""
    row = s.get(Schedule, ex.schedule_id)
    assert row is not None
    problem = None
    if row.experiment_id is None:
        problem = "The schedule's experiment was deleted; edit the schedule to pick another one."
    else:
        exp = tracking.get_experiment(s, row.experiment_id)
        if exp.archived and ex.run_id is None:
            problem = f"Experiment {exp.name!r} is archived; unarchive it to run this schedule."
    user = _system_user(s)
    if problem is None and isinstance(user, str):
        problem = user
    if problem is not None:
        finish(s, ex, sch.ExecutionStatus.FAILED.value, now=now, message=problem)
        return None
    params = {k: param_value(v) for k, v in (row.config or {}).items()}
    if ex.run_id is None:
        local = ex.scheduled_time.astimezone(cron.zone(row.timezone))
        run = tracking.create_run(
            s,
            SYSTEM_USER,
            tsch.RunCreate(
                experiment_id=row.experiment_id or "",
                run_name=f"{row.name} {local:%Y-%m-%d %H:%M}",
                tags={
                    "podstack.schedule": row.name,
                    "podstack.schedule_id": row.id,
                    "podstack.execution_id": ex.id,
                    "podstack.trigger": ex.trigger,
                    "podstack.scheduled_time": ex.scheduled_time.isoformat(),
                },
            ),
        )
        if params:
            tracking.log_params(s, SYSTEM_USER, run.id, params)
        ex.run_id = run.id
    if ex.token_id is not None:  # a retried webhook delivery gets a fresh token
        auth.revoke_token(s, SYSTEM_PRINCIPAL, ex.token_id)
    # Token expiry is wall-clock (tokens are checked against real time), a safety net only:
    # the token is revoked as soon as the execution ends.
    ttl = (
        timedelta(seconds=row.timeout_seconds + 3600) if row.timeout_seconds else timedelta(days=30)
    )
    issued = auth.create_token(
        s,
        SYSTEM_USER,
        SYSTEM_USER,
        f"execution {ex.id}",
        expires_at=utcnow() + ttl,
        scope=f"run:{ex.run_id}",
    )
    ex.token_id = issued.token.id
    first_start = ex.started_at is None
    ex.status = sch.ExecutionStatus.RUNNING.value
    ex.started_at = ex.started_at or now
    ex.claimed_by = worker
    ex.lease_until = now + timedelta(seconds=lease_seconds)
    ex.attempts += 1
    ex.retry_at = None
    ex.external_id = ex.external_id or ex.id
    if first_start:
        events.emit(s, "schedule.execution_started", _event_payload(ex, row.name), SYSTEM_USER)
    api = api_url.rstrip("/")
    return JobSpec(
        execution_id=ex.id,
        schedule_id=row.id,
        schedule_name=row.name,
        run_id=ex.run_id,
        experiment_id=row.experiment_id or "",
        scheduled_time=ex.scheduled_time,
        trigger=ex.trigger,
        params=params,
        config=dict(row.config or {}),
        executor=dict(row.executor),
        timeout_seconds=row.timeout_seconds,
        api_url=api,
        api_token=issued.value,
        attempt=ex.attempts,
        callback_url=f"{api}/api/v1/runs/{ex.run_id}/execution/callback",
    )


def submitted(s: Session, ex: ScheduleExecution, external_id: str | None) -> None:
    """An external system (webhook receiver, Kubernetes) owns the job now: no lease."""
    ex.lease_until = None
    ex.claimed_by = None
    if external_id:
        ex.external_id = external_id


def retry_later(s: Session, ex: ScheduleExecution, now: datetime, error: str) -> None:
    """A delivery that may work later (webhook receiver down): back to queued."""
    ex.status = sch.ExecutionStatus.QUEUED.value
    ex.lease_until = None
    ex.claimed_by = None
    ex.retry_at = now + timedelta(seconds=30 * ex.attempts)
    ex.message = f"Attempt {ex.attempts} failed: {error}; retrying at {ex.retry_at:%H:%M:%S} UTC."


# ---------------------------------------------------------------- finishing


def finish(
    s: Session,
    ex: ScheduleExecution,
    status: str,
    *,
    now: datetime,
    exit_code: int | None = None,
    message: str | None = None,
    log_tail: str | None = None,
    log_blob: StoredBlob | None = None,
) -> bool:
    """Records the outcome once (False if the execution had already ended): the log as a run
    artifact, the run ended to match, the run token revoked, the event emitted."""
    if ex.status not in _ACTIVE:
        return False
    if log_blob is not None and ex.run_id is not None:
        _attach_log(s, ex.run_id, log_blob)
        ex.log_artifact = LOG_ARTIFACT
    ex.status = status
    ex.finished_at = now
    ex.exit_code = exit_code
    if log_tail is not None:
        ex.log_tail = log_tail[-LOG_TAIL_CHARS:]
    if message is not None:
        ex.message = message
    ex.lease_until = None
    ex.retry_at = None
    if ex.run_id is not None:
        run = tracking.get_run(s, ex.run_id)
        if run.status == tsch.RunStatus.RUNNING.value:
            tracking.update_run(
                s, SYSTEM_USER, ex.run_id, tsch.RunUpdate(status=_TERMINAL_RUN[status])
            )
    if ex.token_id is not None:
        auth.revoke_token(s, SYSTEM_PRINCIPAL, ex.token_id)
    if ex.started_at is not None:
        name = s.get(Schedule, ex.schedule_id)
        kind = (
            "schedule.execution_failed"
            if status in (sch.ExecutionStatus.FAILED.value, sch.ExecutionStatus.TIMED_OUT.value)
            else "schedule.execution_finished"
        )
        events.emit(s, kind, _event_payload(ex, name.name if name else None), SYSTEM_USER)
    return True


def _attach_log(s: Session, run_id: str, blob: StoredBlob) -> None:
    # A clash with a directory the job logged at that path leaves the tail only.
    artifacts.attach_system_file(s, SYSTEM_USER, run_id, LOG_ARTIFACT, blob)


def _event_payload(ex: ScheduleExecution, schedule_name: str | None) -> dict[str, Any]:
    return {
        "execution_id": ex.id,
        "schedule_id": ex.schedule_id,
        "schedule_name": schedule_name,
        "run_id": ex.run_id,
        "status": ex.status,
        "trigger": ex.trigger,
        "scheduled_time": ex.scheduled_time.isoformat(),
        "exit_code": ex.exit_code,
        "message": ex.message,
    }


def reap(s: Session, execution_id: str, now: datetime) -> bool:
    """Fails a running execution whose owner's lease ran out (that server stopped)."""
    ex = repo.lock_execution(s, execution_id, sch.ExecutionStatus.RUNNING.value)
    if ex is None or ex.lease_until is None or ex.lease_until >= now:
        return False
    return finish(
        s,
        ex,
        sch.ExecutionStatus.FAILED.value,
        now=now,
        message=(
            f"The server running this job ({ex.claimed_by}) stopped renewing its claim at "
            f"{ex.lease_until:%Y-%m-%d %H:%M:%S} UTC; the job was interrupted or orphaned."
        ),
    )


# ---------------------------------------------------------------- cancelling and callbacks


def request_cancel(s: Session, actor: str, execution_id: str, now: datetime) -> ScheduleExecution:
    """Queued: cancelled at once. Running: flagged; the scheduler that owns it kills the
    process group (local), deletes the Job (Kubernetes) or stops waiting (webhook)."""
    ex = repo.get_execution(s, execution_id, for_update=True)
    # A queued execution has no run yet, so the read filter does not hide it; its schedule
    # is hidden from whoever cannot read the schedule's experiment (404 then, as for a
    # missing one), and stopping training there needs EDIT, like Run now.
    sched = s.get(Schedule, ex.schedule_id) if ex is not None else None
    if ex is None or sched is None:
        raise NotFound(
            f"Execution {execution_id!r} does not exist.", {"execution_id": execution_id}
        )
    if sched.experiment_id is not None:
        permissions.require_experiment_id(s, sched.experiment_id, permissions.EDIT)
    if ex.status == sch.ExecutionStatus.QUEUED.value:
        finish(
            s,
            ex,
            sch.ExecutionStatus.CANCELLED.value,
            now=now,
            message=f"Cancelled by {actor} before it started.",
        )
    elif ex.status == sch.ExecutionStatus.RUNNING.value:
        if not ex.cancel_requested:
            ex.cancel_requested = True
            ex.message = f"Cancellation requested by {actor}."
    else:
        raise Conflict(
            f"Execution {ex.id} is already {ex.status}; only queued or running executions can "
            "be cancelled.",
            {"execution_id": ex.id, "status": ex.status},
        )
    audit.record(
        s,
        actor,
        "schedule.cancel_execution",
        "schedule",
        ex.schedule_id,
        None,
        {"execution_id": ex.id, "status": ex.status},
    )
    wakeup.after_commit(s)  # the owning scheduler kills a running one at its next tick: now
    return ex


def callback(
    s: Session, principal: Principal, run_id: str, body: sch.ExecutionCallback, now: datetime
) -> ScheduleExecution:
    """The webhook executor's completion report, authenticated with the run's token (or by
    an editor). Repeating the same report is harmless; a different one is a conflict."""
    principal.require_run_access(run_id)
    ex = repo.execution_for_run(s, run_id, for_update=True)
    if ex is None:
        raise NotFound(
            f"Run {run_id!r} was not started by a schedule, so there is no execution to report on.",
            {"run_id": run_id},
        )
    if ex.executor != "webhook":
        raise Conflict(
            f"Execution {ex.id} uses the {ex.executor} executor, which reports its own outcome; "
            "callbacks are for webhook executions.",
            {"execution_id": ex.id},
        )
    if ex.status not in _ACTIVE:
        if ex.status == body.status:
            return ex
        raise Conflict(
            f"Execution {ex.id} already ended as {ex.status}.",
            {"execution_id": ex.id, "status": ex.status},
        )
    finish(
        s,
        ex,
        body.status,
        now=now,
        exit_code=body.exit_code,
        message=body.message or f"Reported {body.status} by the external system.",
        log_tail=body.log_tail,
    )
    return ex


def error_text(exc: BaseException) -> str:
    if isinstance(exc, PodstackError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"

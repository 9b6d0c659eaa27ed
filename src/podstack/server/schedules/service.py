"""Schedule rules: create, edit, pause, resume, delete, Run now, views.

The execution lifecycle (firing, starting, finishing, cancelling) lives in ``executions.py``;
the loop that drives it in ``scheduler.py``. ``now`` is always passed in, so the scheduler's
injectable clock governs every time decision and tests are deterministic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from podstack.errors import BadRequest, Conflict, NotFound, PermissionDenied, ValidationFailed
from podstack.schemas import schedules as sch
from podstack.server.audit import service as audit
from podstack.server.auth.principal import Principal
from podstack.server.config import Settings
from podstack.server.db.base import model_to_dict, new_id, utcnow
from podstack.server.pagination import clamp_limit, decode_token, page_of
from podstack.server.schedules import cron
from podstack.server.schedules import repository as repo
from podstack.server.schedules.models import Schedule, ScheduleExecution
from podstack.server.tracking import service as tracking

NEXT_FIRE_PREVIEW = 5
# Running arbitrary commands on the server host is an admin's call, not an editor's.
LOCAL_EXECUTOR_ROLE = "admin"
_AUDIT_FIELDS = [
    "name",
    "description",
    "experiment_id",
    "cron",
    "timezone",
    "config",
    "overlap_policy",
    "misfire_policy",
    "misfire_grace_seconds",
    "timeout_seconds",
    "paused",
    "version",
]
_executor_adapter: TypeAdapter[Any] = TypeAdapter(sch.ExecutorConfig)


def _audit_doc(row: Schedule) -> dict[str, Any]:
    doc = model_to_dict(row, _AUDIT_FIELDS)
    doc["executor"] = redact(row.executor)
    return doc


def redact(executor: dict[str, Any]) -> dict[str, Any]:
    """Executor settings fit for output and audit: the webhook secret never leaves."""
    out = dict(executor)
    if out.get("secret"):
        out["secret"] = sch.SECRET_MASK
    return out


# ---------------------------------------------------------------- validation


def _validate_executor(
    raw: dict[str, Any], principal: Principal, settings: Settings
) -> dict[str, Any]:
    try:
        model = _executor_adapter.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(["executor", *(str(p) for p in err["loc"])])
        raise ValidationFailed(
            f"Invalid {where}: {err['msg']}",
            {
                "errors": [
                    {
                        "field": ".".join(["executor", *(str(p) for p in e["loc"])]),
                        "message": e["msg"],
                    }
                    for e in exc.errors()
                ]
            },
        ) from None
    if model.type == "webhook" and model.secret == sch.SECRET_MASK:
        raise ValidationFailed(
            f"Invalid executor.secret: {sch.SECRET_MASK!r} stands for a stored secret; give the "
            "real secret (16+ characters).",
            {"field": "executor.secret"},
        )
    if model.type == "local" and not principal.has_role(LOCAL_EXECUTOR_ROLE):
        raise PermissionDenied(
            "Schedules with the local executor run commands on the server host, so only admins "
            f"may create or change them; you ({principal.username}) are {principal.role}. Use the "
            "webhook or kubernetes executor, or ask an admin.",
            {"required_role": LOCAL_EXECUTOR_ROLE, "executor": "local"},
        )
    if model.type == "kubernetes":
        if model.gpu_type is not None and model.gpu_type not in settings.kubernetes_gpu_types:
            valid = sorted(settings.kubernetes_gpu_types)
            raise ValidationFailed(
                f"Unknown gpu_type {model.gpu_type!r}; configured GPU types are: "
                f"{', '.join(valid) or 'none (set PODSTACK_KUBERNETES_GPU_TYPES)'}.",
                {"field": "executor.gpu_type", "valid": valid},
            )
        if not settings.public_url:
            raise ValidationFailed(
                "Kubernetes jobs reach the server through PODSTACK_PUBLIC_URL, which is not set; "
                "configure it (e.g. https://podstack.example.com) before using this executor.",
                {"field": "executor.type", "setting": "PODSTACK_PUBLIC_URL"},
            )
    return model.model_dump(mode="json", exclude_none=True)


def _experiment_id(s: Session, ref: str) -> str:
    try:
        exp = tracking.get_experiment(s, ref)
    except NotFound:
        raise ValidationFailed(
            f"Experiment {ref!r} does not exist; create it first (scheduled runs are logged "
            "into an existing experiment).",
            {"field": "experiment_id", "value": ref},
        ) from None
    if exp.archived:
        raise Conflict(
            f"Experiment {exp.name!r} is archived; unarchive it or pick another experiment.",
            {"field": "experiment_id", "experiment": exp.id},
        )
    return exp.id


# ---------------------------------------------------------------- reading


def get_schedule(s: Session, ref: str, *, for_update: bool = False) -> Schedule:
    row = repo.get_schedule(s, ref, for_update=for_update)
    if row is None:
        gone = repo.deleted_named(s, ref)
        hint = f" A schedule named {ref!r} was deleted (id {gone.id})." if gone else ""
        raise NotFound(f"Schedule {ref!r} does not exist.{hint}", {"schedule": ref})
    return row


def require_live(s: Session, ref: str) -> Schedule:
    """The schedule, row-locked against the scheduler, refusing deleted ones with a 409 (by
    id) or 404 (by name: deleted schedules no longer own their name)."""
    row = get_schedule(s, ref, for_update=True)
    if row.deleted_at is not None:
        raise Conflict(
            f"Schedule {row.name!r} ({row.id}) was deleted on {row.deleted_at:%Y-%m-%d %H:%M} UTC; "
            "deleted schedules cannot be changed or run. Create a new one.",
            {"schedule": row.id, "deleted_at": row.deleted_at.isoformat()},
        )
    return row


def list_schedules(
    s: Session,
    *,
    q: str | None = None,
    include_deleted: bool = False,
    paused: bool | None = None,
    experiment: str | None = None,
    limit: int | None = None,
    page_token: str | None = None,
) -> tuple[list[Schedule], str | None]:
    lim = clamp_limit(limit)
    exp_id = None
    if experiment is not None:
        exp_id = tracking.get_experiment(s, experiment).id
    rows = repo.list_schedules(
        s,
        q=q,
        include_deleted=include_deleted,
        paused=paused,
        experiment_id=exp_id,
        limit=lim,
        after=decode_token(page_token, 2),
    )
    return page_of(rows, lim, lambda r: [r.name, r.id])


def preview(expr: str, tz: str, now: datetime, n: int = NEXT_FIRE_PREVIEW) -> sch.CronPreview:
    text = cron.validate(expr)
    cron.zone(tz)
    return sch.CronPreview(
        cron=text,
        timezone=tz,
        description=cron.describe(text),
        next_fire_times=cron.next_n(text, tz, now, n),
    )


# ---------------------------------------------------------------- writing


def create_schedule(
    s: Session,
    principal: Principal,
    body: sch.ScheduleCreate,
    *,
    settings: Settings,
    now: datetime | None = None,
) -> Schedule:
    now = now or utcnow()
    expr = cron.validate(body.cron)
    cron.zone(body.timezone)
    executor = _validate_executor(body.executor.model_dump(mode="json"), principal, settings)
    experiment_id = _experiment_id(s, body.experiment_id)
    if repo.live_name_taken(s, body.name):
        raise Conflict(
            f"A schedule named {body.name!r} already exists; pick another name or edit it.",
            {"field": "name", "name": body.name},
        )
    row = Schedule(
        id=new_id("sch"),
        name=body.name,
        description=body.description,
        experiment_id=experiment_id,
        cron=expr,
        timezone=body.timezone,
        config=dict(body.config),
        executor=executor,
        overlap_policy=body.overlap_policy.value,
        misfire_policy=body.misfire_policy.value,
        misfire_grace_seconds=body.misfire_grace_seconds,
        timeout_seconds=body.timeout_seconds,
        paused=body.paused,
        next_fire_at=None if body.paused else cron.next_after(expr, body.timezone, now),
        version=1,
        created_by=principal.username,
        created_at=now,
        updated_at=now,
    )
    s.add(row)
    s.flush()
    audit.record(
        s, principal.username, "schedule.create", "schedule", row.id, None, _audit_doc(row)
    )
    return row


def update_schedule(
    s: Session,
    principal: Principal,
    ref: str,
    body: sch.ScheduleUpdate,
    *,
    settings: Settings,
    now: datetime | None = None,
) -> Schedule:
    """Applies the fields sent. Any real change is a new version: the next fire is recomputed
    and executions still queued for the old definition are dropped."""
    now = now or utcnow()
    row = require_live(s, ref)
    before = _audit_doc(row)
    sent = body.model_fields_set
    for field in ("cron", "timezone", "experiment_id", "overlap_policy", "misfire_policy"):
        if field in sent and getattr(body, field) is None:
            raise ValidationFailed(f"{field} cannot be null.", {"field": field})
    changes: dict[str, Any] = {}
    if "cron" in sent:
        changes["cron"] = cron.validate(body.cron or "")
    if "timezone" in sent:
        cron.zone(body.timezone or "")
        changes["timezone"] = body.timezone
    if "experiment_id" in sent:
        changes["experiment_id"] = _experiment_id(s, body.experiment_id or "")
    if "config" in sent:
        changes["config"] = dict(body.config or {})
    if "executor" in sent:
        if body.executor is None:
            raise ValidationFailed("executor cannot be null.", {"field": "executor"})
        raw = dict(body.executor)
        old = row.executor
        # The stored webhook secret is never shown, so an edit form sends it masked or not at
        # all: keep it then, as long as the executor stays a webhook.
        if (
            raw.get("type") == "webhook"
            and old.get("type") == "webhook"
            and raw.get("secret") in (None, "", sch.SECRET_MASK)
        ):
            raw["secret"] = old.get("secret")
        changes["executor"] = _validate_executor(raw, principal, settings)
    elif row.executor.get("type") == "local" and sent:
        # Editing any part of a job that runs on the server host is an admin's call too.
        _validate_executor(row.executor, principal, settings)
    for field in ("description", "misfire_grace_seconds", "timeout_seconds"):
        if field in sent:
            changes[field] = getattr(body, field)
    for field in ("overlap_policy", "misfire_policy"):
        if field in sent:
            changes[field] = getattr(body, field).value
    changed = {k: v for k, v in changes.items() if getattr(row, k) != v}
    if not changed:
        return row
    for k, v in changed.items():
        setattr(row, k, v)
    row.version += 1
    row.updated_at = now
    if not row.paused and ({"cron", "timezone"} & changed.keys() or row.next_fire_at is None):
        row.next_fire_at = cron.next_after(row.cron, row.timezone, now)
    _drop_queued(
        s,
        repo.queued_of_older_version(s, row.id, row.version),
        now,
        f"Dropped: the schedule was edited (now version {row.version}) before this "
        "execution started.",
    )
    audit.record(
        s, principal.username, "schedule.update", "schedule", row.id, before, _audit_doc(row)
    )
    return row


def _drop_queued(s: Session, rows: Any, now: datetime, message: str) -> None:
    for ex in rows:
        ex.status = sch.ExecutionStatus.CANCELLED.value
        ex.finished_at = now
        ex.message = message


def pause_schedule(s: Session, actor: str, ref: str, *, now: datetime | None = None) -> Schedule:
    now = now or utcnow()
    row = require_live(s, ref)
    if row.paused:
        return row
    row.paused = True
    row.next_fire_at = None
    row.updated_at = now
    audit.record(
        s, actor, "schedule.pause", "schedule", row.id, {"paused": False}, {"paused": True}
    )
    return row


def resume_schedule(s: Session, actor: str, ref: str, *, now: datetime | None = None) -> Schedule:
    """The next fire is computed from now: ticks missed while paused are not run."""
    now = now or utcnow()
    row = require_live(s, ref)
    if not row.paused:
        return row
    row.paused = False
    row.next_fire_at = cron.next_after(row.cron, row.timezone, now)
    row.updated_at = now
    audit.record(
        s,
        actor,
        "schedule.resume",
        "schedule",
        row.id,
        {"paused": True},
        {
            "paused": False,
            "next_fire_at": row.next_fire_at.isoformat() if row.next_fire_at else None,
        },
    )
    return row


def delete_schedule(s: Session, actor: str, ref: str, *, now: datetime | None = None) -> Schedule:
    """Soft delete: the schedule stops firing and frees its name; its executions and their
    runs stay. Queued executions are dropped; running ones finish (cancel them first to stop
    them)."""
    now = now or utcnow()
    row = require_live(s, ref)
    before = _audit_doc(row)
    row.deleted_at = now
    row.next_fire_at = None
    row.updated_at = now
    _drop_queued(
        s,
        repo.queued_of_schedule(s, row.id),
        now,
        "Dropped: the schedule was deleted before this execution started.",
    )
    audit.record(s, actor, "schedule.delete", "schedule", row.id, before, None)
    return row


def trigger_schedule(
    s: Session, actor: str, ref: str, *, now: datetime | None = None
) -> ScheduleExecution:
    """Run now: one execution at the current time, paused or not. With overlap policy
    ``skip`` a second one is refused while the previous still runs (the caller asked for a
    run and should hear why there is none)."""
    now = now or utcnow()
    row = require_live(s, ref)
    if row.overlap_policy == sch.OverlapPolicy.SKIP.value and repo.has_active_execution(s, row.id):
        raise Conflict(
            f"Schedule {row.name!r} already has an execution queued or running and its overlap "
            "policy is 'skip'; wait for it, cancel it, or set overlap_policy to 'allow'.",
            {"schedule": row.id},
        )
    if row.experiment_id is None:
        raise Conflict(
            f"Schedule {row.name!r} has no experiment (it was deleted); edit the schedule to "
            "pick one.",
            {"schedule": row.id},
        )
    ex = ScheduleExecution(
        id=new_id("exe"),
        schedule_id=row.id,
        schedule_version=row.version,
        scheduled_time=now,
        trigger=sch.Trigger.MANUAL.value,
        status=sch.ExecutionStatus.QUEUED.value,
        executor=row.executor.get("type", "local"),
        created_at=now,
    )
    repo.add_execution(s, ex)
    audit.record(s, actor, "schedule.trigger", "schedule", row.id, None, {"execution_id": ex.id})
    return ex


# ---------------------------------------------------------------- views


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


def list_executions(
    s: Session,
    ref: str,
    *,
    status: str | None = None,
    limit: int | None = None,
    page_token: str | None = None,
) -> tuple[list[sch.Execution], str | None]:
    row = get_schedule(s, ref)
    if status is not None and status not in {x.value for x in sch.ExecutionStatus}:
        raise ValidationFailed(
            f"Unknown status {status!r}; valid: {', '.join(x.value for x in sch.ExecutionStatus)}.",
            {"field": "status"},
        )
    lim = clamp_limit(limit)
    after = decode_token(page_token, 2)
    if after is not None:
        try:
            after = [datetime.fromisoformat(str(after[0])).isoformat(), str(after[1])]
        except ValueError:
            raise BadRequest("Invalid page_token.", {"page_token": page_token}) from None
    rows = repo.list_executions(s, row.id, status=status, limit=lim, after=after)
    items, token = page_of(rows, lim, lambda e: [e.scheduled_time.isoformat(), e.id])
    return [execution_view(e, row.name) for e in items], token


def get_execution(s: Session, execution_id: str) -> ScheduleExecution:
    ex = repo.get_execution(s, execution_id)
    if ex is None:
        raise NotFound(
            f"Execution {execution_id!r} does not exist.", {"execution_id": execution_id}
        )
    return ex

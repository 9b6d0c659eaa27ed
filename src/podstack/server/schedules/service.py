"""Schedule rules: create, edit, pause, resume, delete, Run now (their views: ``views.py``).

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
from podstack.server import egress, secretbox
from podstack.server.audit import service as audit
from podstack.server.auth.principal import Principal
from podstack.server.config import Settings
from podstack.server.db.base import model_to_dict, new_id, utcnow
from podstack.server.pagination import clamp_limit, decode_token, page_of
from podstack.server.permissions import service as permissions
from podstack.server.schedules import cron, wakeup
from podstack.server.schedules import repository as repo
from podstack.server.schedules.models import Schedule, ScheduleExecution
from podstack.server.schedules.views import (
    NEXT_FIRE_PREVIEW,
    execution_view,
    execution_views,
    redact,
    schedule_view,
    schedule_views,
)
from podstack.server.tracking import service as tracking

# Row-to-response code lives in views.py; re-exported for the entry points.
__all__ = [
    "execution_view",
    "execution_views",
    "redact",
    "schedule_view",
    "schedule_views",
]

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
    if model.type == "webhook":
        # Editors set this URL and the server POSTs to it: the egress rules (no loopback,
        # private, link-local or metadata address unless allow-listed) apply here and again
        # at every send.
        egress.validate_url(model.url, settings, what="Webhook executor URL", field="executor.url")
    if model.type == "ray":
        # The egress rules, then a live Ray job server at the address (clear 422 otherwise).
        from podstack.server.schedules.executors import ray as ray_executor

        ray_executor.validate(model.address, settings)
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


def _seal(
    executor: dict[str, Any], settings: Settings, old: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The executor as stored: a webhook secret encrypted (secretbox.py). An unchanged secret
    keeps its stored ciphertext, so re-saving the same settings is not a change."""
    secret = executor.get("secret")
    if executor.get("type") != "webhook" or not secret:
        return executor
    box = secretbox.for_settings(settings)
    previous = (old or {}).get("secret")
    if old and old.get("type") == "webhook" and previous and box.is_encrypted(previous):
        try:
            if box.decrypt(previous) == secret:
                return {**executor, "secret": previous}
        except secretbox.SecretKeyError:
            pass
    return {**executor, "secret": box.encrypt(secret)}


def _stored_secret(executor: dict[str, Any], settings: Settings) -> str | None:
    try:
        return secretbox.for_settings(settings).decrypt(executor.get("secret") or "") or None
    except secretbox.SecretKeyError as exc:
        raise ValidationFailed(
            f"{exc} Give executor.secret to replace it.", {"field": "executor.secret"}
        ) from None


def encrypt_stored_secrets(s: Session, box: secretbox.SecretBox) -> tuple[int, int]:
    """Encrypts webhook-executor secrets stored in clear (rows from before encryption at rest);
    returns (encrypted now, stored values the key cannot decrypt)."""
    sealed = unreadable = 0
    for row in repo.webhook_schedules(s):
        secret = (row.executor or {}).get("secret")
        if not secret:
            continue
        if not box.is_encrypted(secret):
            row.executor = {**row.executor, "secret": box.encrypt(secret)}
            sealed += 1
            continue
        try:
            box.decrypt(secret)
        except secretbox.SecretKeyError:
            unreadable += 1
    return sealed, unreadable


def _experiment_id(s: Session, ref: str) -> str:
    try:
        exp = tracking.get_experiment(s, ref)
    except NotFound:
        raise ValidationFailed(
            f"Experiment {ref!r} does not exist; create it first (scheduled runs are logged "
            "into an existing experiment).",
            {"field": "experiment_id", "value": ref},
        ) from None
    # A schedule logs runs into its experiment as the scheduler's system user, so whoever
    # points one at an experiment must hold EDIT on it (as for creating a run there by hand);
    # READ would let a reader write into someone else's experiment through the scheduler.
    # (Schedules only train into experiments: they register nothing into a model, so no
    # model permission is involved.)
    permissions.require_experiment(s, exp, permissions.EDIT, ref=ref)
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
    if row.experiment_id is not None:
        # Every caller changes the schedule or runs it (edit, pause, resume, delete, Run
        # now): each decides what is trained into its experiment, so each needs EDIT there.
        # One who cannot read the experiment never gets here: the read filter hides its
        # schedules (get_schedule answers 404).
        permissions.require_experiment_id(s, row.experiment_id, permissions.EDIT)
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
    executor = _seal(executor, settings)
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
            raw["secret"] = _stored_secret(old, settings)
        checked = _validate_executor(raw, principal, settings)
        changes["executor"] = _seal(checked, settings, old)
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
    wakeup.after_commit(s)  # start it now, not at the next interval
    return ex


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

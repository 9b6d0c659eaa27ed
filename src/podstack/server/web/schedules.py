"""MLOps > Schedules: the list (cron in words, next fire in the viewer's timezone, last
execution), Create Schedule, a schedule's page (details, next fire times, execution history
with log tails and run links) with Run now, Pause, Resume, Edit, Delete and Cancel.
Rules live in the schedules service; this module only turns forms into its calls."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from podstack.errors import PodstackError
from podstack.schemas import schedules as sch
from podstack.server.db.base import utcnow
from podstack.server.schedules import executions, service
from podstack.server.tracking import service as tracking
from podstack.server.web.core import (
    EditorAction,
    ViewerPage,
    WebCtx,
    WebRoute,
    form_errors,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PAGE_SIZE = 50
HISTORY_PAGE = 25
STATUS_LABELS = {
    "queued": "Queued",
    "running": "Running",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "timed_out": "Timed out",
    "skipped_overlap": "Skipped (overlap)",
    "skipped_misfire": "Skipped (misfire)",
    "cancelled": "Cancelled",
}
TRIGGER_LABELS = {"cron": "Cron", "manual": "Run now", "catch_up": "Catch-up"}
COMMON_ZONES = (
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
)
# Form field names for the schema/service field a message concerns.
_FIELD = {
    "name": "name",
    "experiment_id": "experiment",
    "cron": "cron",
    "timezone": "timezone",
    "config": "config",
    "timeout_seconds": "timeout",
    "misfire_grace_seconds": "grace",
    "overlap_policy": "overlap",
    "misfire_policy": "misfire",
    "description": "description",
}


def schedule_url(ref: str) -> str:
    return f"/schedules/{ref}"


# ---------------------------------------------------------------- form <-> body


def _config_text(config: dict[str, Any]) -> str:
    return "\n".join(
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(config.items())
    )


def _parse_config(text: str) -> dict[str, Any]:
    """``key=value`` lines; numbers and true/false keep their type (as the CLI's --param)."""
    out: dict[str, Any] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep or not key.strip():
            raise _FormError("config", f"Line {n} ({line[:60]!r}) is not key=value.")
        raw = raw.strip()
        try:
            value = json.loads(raw)
            if isinstance(value, (dict, list)):
                value = raw
        except ValueError:
            value = raw
        out[key.strip()] = value
    return out


class _FormError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _int_or_none(text: str, field: str, label: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise _FormError(field, f"{label} must be a whole number of seconds.") from None


def _executor_from_form(f: dict[str, str]) -> dict[str, Any]:
    kind = f.get("executor_type") or "local"
    if kind == "webhook":
        return {
            "type": "webhook",
            "url": f.get("webhook_url", "").strip(),
            "secret": f.get("webhook_secret", "").strip() or sch.SECRET_MASK,
        }
    if kind == "kubernetes":
        k8s: dict[str, Any] = {"type": "kubernetes", "image": f.get("k8s_image", "").strip()}
        if f.get("k8s_gpu_type", "").strip():
            k8s["gpu_type"] = f["k8s_gpu_type"].strip()
            k8s["gpu_count"] = (
                _int_or_none(f.get("k8s_gpu_count", ""), "k8s_gpu_count", "GPU count") or 1
            )
        if f.get("k8s_namespace", "").strip():
            k8s["namespace"] = f["k8s_namespace"].strip()
        command = [a for a in f.get("k8s_command", "").splitlines() if a.strip()]
        if command:
            k8s["command"] = command
        return k8s
    if kind == "ray":
        return _ray_from_form(f)
    # One argument per line: nothing is ever split by a shell.
    return {
        "type": "local",
        "command": [a.rstrip("\r") for a in f.get("command", "").splitlines() if a.strip()],
    }


def _float_or_none(text: str, field: str, label: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise _FormError(field, f"{label} must be a number.") from None


def _lines(text: str) -> list[str]:
    return [a.rstrip("\r") for a in text.splitlines() if a.strip()]


def _ray_from_form(f: dict[str, str]) -> dict[str, Any]:
    """The ``ray`` executor from its form fields; the schema checks the values (address
    scheme, remote working_dir, resource bounds) and the service the egress rule."""
    env: dict[str, Any] = {}
    if f.get("ray_working_dir", "").strip():
        env["working_dir"] = f["ray_working_dir"].strip()
    if pip := _lines(f.get("ray_pip", "")):
        env["pip"] = pip
    ray: dict[str, Any] = {
        "type": "ray",
        "address": f.get("ray_address", "").strip(),
        "entrypoint": _lines(f.get("ray_entrypoint", "")),
        "runtime_env": env,
    }
    for key, label in (("num_cpus", "CPUs"), ("num_gpus", "GPUs")):
        value = _float_or_none(f.get(f"ray_{key}", ""), f"ray_{key}", label)
        if value is not None:
            ray[key] = value
    if f.get("ray_gpu_type", "").strip():
        ray["gpu_type"] = f["ray_gpu_type"].strip()
    return ray


def _form_from_schedule(s: sch.Schedule) -> dict[str, str]:
    ex = s.executor
    form = {
        "name": s.name,
        "experiment": s.experiment_name or s.experiment_id or "",
        "cron": s.cron,
        "timezone": s.timezone,
        "config": _config_text(s.config),
        "description": s.description or "",
        "overlap": s.overlap_policy.value,
        "misfire": s.misfire_policy.value,
        "grace": str(s.misfire_grace_seconds or ""),
        "timeout": str(s.timeout_seconds or ""),
        "executor_type": ex.type,
    }
    if ex.type == "local":
        form["command"] = "\n".join(ex.command)
    elif ex.type == "webhook":
        form["webhook_url"] = ex.url
    elif ex.type == "ray":
        form.update(
            ray_address=ex.address,
            ray_entrypoint="\n".join(ex.entrypoint),
            ray_working_dir=ex.runtime_env.working_dir or "",
            ray_pip="\n".join(ex.runtime_env.pip),
            ray_num_cpus="" if ex.num_cpus is None else f"{ex.num_cpus:g}",
            ray_num_gpus="" if ex.num_gpus is None else f"{ex.num_gpus:g}",
            ray_gpu_type=ex.gpu_type or "",
        )
    else:
        form.update(
            k8s_image=ex.image,
            k8s_gpu_type=ex.gpu_type or "",
            k8s_gpu_count=str(ex.gpu_count),
            k8s_namespace=ex.namespace or "",
            k8s_command="\n".join(ex.command or []),
        )
    return form


def _errors_from(exc: ValidationError | PodstackError) -> dict[str, str]:
    if isinstance(exc, PodstackError):
        field = exc.details.get("field") if isinstance(exc.details, dict) else None
        if isinstance(field, str) and field.startswith("executor"):
            return {"executor": exc.message}
        errors = form_errors(exc)
        return {_FIELD.get(k, k): v for k, v in errors.items()}
    out: dict[str, str] = {}
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        msg = e.get("msg", "Invalid value.").removeprefix("Value error, ")
        if loc and loc[0] == "executor":
            out.setdefault("executor", msg)
        else:
            out.setdefault(_FIELD.get(loc[0], "_form") if loc else "_form", msg)
    return out


def _preview(cron: str, timezone: str) -> tuple[sch.CronPreview | None, str | None]:
    if not cron.strip():
        return None, None
    try:
        return service.preview(cron, timezone.strip() or "UTC", utcnow(), 3), None
    except PodstackError as exc:
        return None, exc.message


def _form_context(ctx: WebCtx, form: dict[str, str]) -> dict[str, Any]:
    with ctx.read() as s:
        exps, _ = tracking.list_experiments(s, limit=1000)
        names = [e.name for e in exps]
    preview, error = _preview(form.get("cron", ""), form.get("timezone", "UTC"))
    return {
        "preview": preview,
        "error": error,
        "experiments": names,
        "zones": COMMON_ZONES,
        "gpu_types": sorted(ctx.settings.kubernetes_gpu_types),
        "k8s_ready": bool(ctx.settings.public_url),
    }


def _render_form(
    ctx: WebCtx,
    form: dict[str, str],
    errors: dict[str, str],
    *,
    mode: str,
    schedule: sch.Schedule | None = None,
    status: int = 422,
) -> Response:
    return ctx.render(
        "schedules/_form.html",
        status_code=status,
        form=form,
        errors=errors,
        mode=mode,
        schedule=schedule,
        **_form_context(ctx, form),
    )


# ---------------------------------------------------------------- pages


@router.get("/schedules")
def schedules_page(
    ctx: ViewerPage, q: str = "", state: str = "", page_token: str | None = None
) -> Response:
    paused = {"active": False, "paused": True}.get(state)
    with ctx.read() as s:
        rows, token = service.list_schedules(
            s, q=q.strip() or None, paused=paused, limit=PAGE_SIZE, page_token=page_token
        )
        items = service.schedule_views(s, rows)
    default_form = {
        "timezone": "UTC",
        "overlap": "skip",
        "misfire": "run_latest",
        "executor_type": "local" if ctx.is_admin else "webhook",
    }
    return ctx.render(
        "schedules/list.html",
        section="schedules",
        items=items,
        q=q.strip(),
        state=state if paused is not None else "",
        next_page_token=token,
        first_page=page_token is not None,
        form=default_form,
        errors={},
        mode="create",
        schedule=None,
        status_labels=STATUS_LABELS,
        **_form_context(ctx, default_form),
    )


@router.get("/schedules/-/describe")
def describe(ctx: ViewerPage, cron: str = "", timezone: str = "UTC") -> Response:
    """The live "in words" preview under the cron field (htmx)."""
    preview, error = _preview(cron, timezone)
    return ctx.render("schedules/_describe.html", preview=preview, error=error)


class ScheduleForm(BaseModel):
    """The fields of the schedule form, which creating and editing both post (editing has no
    name: it cannot change)."""

    name: str = ""
    experiment: str = ""
    cron: str = ""
    timezone: str = "UTC"
    config: str = ""
    description: str = ""
    overlap: str = "skip"
    misfire: str = "run_latest"
    grace: str = ""
    timeout: str = ""
    executor_type: str = "local"
    command: str = ""
    webhook_url: str = ""
    webhook_secret: str = ""
    k8s_image: str = ""
    k8s_gpu_type: str = ""
    k8s_gpu_count: str = ""
    k8s_namespace: str = ""
    k8s_command: str = ""
    ray_address: str = ""
    ray_entrypoint: str = ""
    ray_working_dir: str = ""
    ray_pip: str = ""
    ray_num_cpus: str = ""
    ray_num_gpus: str = ""
    ray_gpu_type: str = ""


def _fields_from_form(data: ScheduleForm) -> dict[str, Any]:
    """The schedule fields both ScheduleCreate and ScheduleUpdate take, from the form."""
    return {
        "experiment_id": data.experiment.strip(),
        "cron": data.cron.strip(),
        "timezone": data.timezone.strip() or "UTC",
        "config": _parse_config(data.config),
        "executor": _executor_from_form(data.model_dump()),
        "description": data.description.strip() or None,
        "overlap_policy": data.overlap,
        "misfire_policy": data.misfire,
        "misfire_grace_seconds": _int_or_none(data.grace, "grace", "Grace window"),
        "timeout_seconds": _int_or_none(data.timeout, "timeout", "Timeout"),
    }


@router.post("/schedules")
def create_schedule(
    ctx: EditorAction,
    data: Annotated[ScheduleForm, Form()],
) -> Response:
    form = {**data.model_dump(), "webhook_secret": ""}  # the secret is never echoed back
    try:
        fields = _fields_from_form(data)
        if fields["executor"].get("secret") == sch.SECRET_MASK:
            fields["executor"]["secret"] = ""
        body = sch.ScheduleCreate.model_validate({"name": data.name.strip(), **fields})
        with ctx.write() as s:
            row = service.create_schedule(s, ctx.principal, body, settings=ctx.settings)
            ref, created = row.id, row.name
    except _FormError as exc:
        return _render_form(ctx, form, {exc.field: exc.message}, mode="create")
    except (ValidationError, PodstackError) as exc:
        if isinstance(exc, PodstackError) and exc.status == 403:
            raise
        return _render_form(ctx, form, _errors_from(exc), mode="create")
    return ctx.redirect(schedule_url(ref), f"Schedule {created} created.")


def _load(ctx: WebCtx, ref: str) -> sch.Schedule:
    with ctx.read() as s:
        return service.schedule_view(s, service.get_schedule(s, ref))


@router.get("/schedules/{ref}")
def schedule_page(
    ctx: ViewerPage, ref: str, status: str = "", page_token: str | None = None
) -> Response:
    with ctx.read() as s:
        row = service.get_schedule(s, ref)
        schedule = service.schedule_view(s, row)
        history, token = service.list_executions(
            s, row.id, status=status or None, limit=HISTORY_PAGE, page_token=page_token
        )
    form = _form_from_schedule(schedule)
    return ctx.render(
        "schedules/detail.html",
        section="schedules",
        s=schedule,
        history=history,
        status=status,
        next_page_token=token,
        first_page=page_token is not None,
        status_labels=STATUS_LABELS,
        trigger_labels=TRIGGER_LABELS,
        form=form,
        errors={},
        mode="edit",
        schedule=schedule,
        can_manage_local=ctx.is_admin or schedule.executor.type != "local",
        **_form_context(ctx, form),
    )


@router.post("/schedules/{ref}/edit")
def edit_schedule(
    ctx: EditorAction,
    ref: str,
    data: Annotated[ScheduleForm, Form()],
) -> Response:
    current = _load(ctx, ref)
    form = {**data.model_dump(), "webhook_secret": "", "name": current.name}
    try:
        body = sch.ScheduleUpdate.model_validate(_fields_from_form(data))
        with ctx.write() as s:
            row = service.update_schedule(s, ctx.principal, ref, body, settings=ctx.settings)
            version = row.version
    except _FormError as exc:
        return _render_form(ctx, form, {exc.field: exc.message}, mode="edit", schedule=current)
    except (ValidationError, PodstackError) as exc:
        if isinstance(exc, PodstackError) and exc.status in (403, 404, 409):
            return ctx.redirect(schedule_url(ref), exc.message, "error")
        return _render_form(ctx, form, _errors_from(exc), mode="edit", schedule=current)
    changed = "saved" if version != current.version else "unchanged"
    return ctx.redirect(schedule_url(ref), f"Schedule {current.name} {changed}.")


def _action(ctx: WebCtx, ref: str, fn: Any, done: str) -> Response:
    try:
        with ctx.write() as s:
            result = fn(s)
    except PodstackError as exc:
        if exc.status in (404, 409, 422):
            return ctx.redirect(schedule_url(ref), exc.message, "error")
        raise
    return ctx.redirect(schedule_url(ref), done.format(result=result))


@router.post("/schedules/{ref}/pause")
def pause(ctx: EditorAction, ref: str) -> Response:
    return _action(
        ctx,
        ref,
        lambda s: service.pause_schedule(s, ctx.actor, ref).name,
        "Paused {result}: it will not fire until resumed.",
    )


@router.post("/schedules/{ref}/resume")
def resume(ctx: EditorAction, ref: str) -> Response:
    return _action(
        ctx,
        ref,
        lambda s: service.resume_schedule(s, ctx.actor, ref).name,
        "Resumed {result}: it fires again from now on (missed times are not run).",
    )


@router.post("/schedules/{ref}/trigger")
def trigger(ctx: EditorAction, ref: str) -> Response:
    return _action(
        ctx,
        ref,
        lambda s: service.trigger_schedule(s, ctx.actor, ref).id,
        "Run queued ({result}); it starts within a few seconds.",
    )


@router.post("/schedules/{ref}/delete")
def delete(ctx: EditorAction, ref: str) -> Response:
    try:
        with ctx.write() as s:
            name = service.delete_schedule(s, ctx.actor, ref).name
    except PodstackError as exc:
        if exc.status in (404, 409):
            return ctx.redirect(schedule_url(ref), exc.message, "error")
        raise
    return ctx.redirect("/schedules", f"Schedule {name} deleted; its history and runs are kept.")


@router.post("/schedules/{ref}/executions/{execution_id}/cancel")
def cancel(ctx: EditorAction, ref: str, execution_id: str) -> Response:
    return _action(
        ctx,
        ref,
        lambda s: executions.request_cancel(s, ctx.actor, execution_id, utcnow()).id,
        "Cancelling {result}.",
    )

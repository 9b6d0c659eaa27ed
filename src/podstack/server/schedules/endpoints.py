"""REST for schedules and their executions. Rules live in ``service.py`` and
``executions.py``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from podstack.schemas import schedules as sch
from podstack.schemas.common import Page
from podstack.server.db.base import utcnow
from podstack.server.deps import EditorCtx, ViewerCtx
from podstack.server.schedules import executions, service

router = APIRouter(tags=["schedules"])

Limit = Annotated[int | None, Query(description="Page size (1-1000, default 100).")]
PageToken = Annotated[str | None, Query(description="next_page_token of the previous page.")]


@router.post(
    "/schedules", status_code=201, response_model=sch.Schedule, summary="Create a schedule"
)
def create_schedule(body: sch.ScheduleCreate, ctx: EditorCtx) -> sch.Schedule:
    with ctx.write() as s:
        row = service.create_schedule(s, ctx.principal, body, settings=ctx.settings)
        return service.schedule_view(s, row)


@router.get("/schedules", response_model=Page[sch.Schedule], summary="List schedules")
def list_schedules(
    ctx: ViewerCtx,
    q: Annotated[str | None, Query(description="Name contains (case-insensitive).")] = None,
    include_deleted: bool = False,
    paused: bool | None = None,
    experiment: Annotated[str | None, Query(description="Experiment id or name.")] = None,
    limit: Limit = None,
    page_token: PageToken = None,
) -> Page[sch.Schedule]:
    with ctx.read() as s:
        rows, token = service.list_schedules(
            s,
            q=q,
            include_deleted=include_deleted,
            paused=paused,
            experiment=experiment,
            limit=limit,
            page_token=page_token,
        )
        return Page(items=service.schedule_views(s, rows), next_page_token=token)


@router.get(
    "/cron/describe",
    response_model=sch.CronPreview,
    summary="Describe a cron expression and list its next fire times",
)
def preview(
    ctx: ViewerCtx,
    cron: Annotated[str, Query(description="e.g. '0 2 * * *' or '@daily'")],
    timezone: str = "UTC",
    count: Annotated[int, Query(ge=1, le=50)] = 5,
) -> sch.CronPreview:
    return service.preview(cron, timezone, utcnow(), count)


@router.get("/schedules/{ref}", response_model=sch.Schedule, summary="Get a schedule (id or name)")
def get_schedule(ref: str, ctx: ViewerCtx) -> sch.Schedule:
    with ctx.read() as s:
        return service.schedule_view(s, service.get_schedule(s, ref))


@router.patch("/schedules/{ref}", response_model=sch.Schedule, summary="Edit a schedule")
def update_schedule(ref: str, body: sch.ScheduleUpdate, ctx: EditorCtx) -> sch.Schedule:
    with ctx.write() as s:
        row = service.update_schedule(s, ctx.principal, ref, body, settings=ctx.settings)
        return service.schedule_view(s, row)


@router.post("/schedules/{ref}/pause", response_model=sch.Schedule, summary="Pause a schedule")
def pause_schedule(ref: str, ctx: EditorCtx) -> sch.Schedule:
    with ctx.write() as s:
        return service.schedule_view(s, service.pause_schedule(s, ctx.actor, ref))


@router.post("/schedules/{ref}/resume", response_model=sch.Schedule, summary="Resume a schedule")
def resume_schedule(ref: str, ctx: EditorCtx) -> sch.Schedule:
    with ctx.write() as s:
        return service.schedule_view(s, service.resume_schedule(s, ctx.actor, ref))


@router.delete(
    "/schedules/{ref}",
    status_code=204,
    summary="Delete a schedule (its execution history and runs are kept)",
)
def delete_schedule(ref: str, ctx: EditorCtx) -> Response:
    with ctx.write() as s:
        service.delete_schedule(s, ctx.actor, ref)
    return Response(status_code=204)


@router.post(
    "/schedules/{ref}/trigger",
    status_code=202,
    response_model=sch.Execution,
    summary="Run now",
)
def trigger_schedule(ref: str, ctx: EditorCtx) -> sch.Execution:
    with ctx.write() as s:
        ex = service.trigger_schedule(s, ctx.actor, ref)
        return service.execution_views(s, [ex])[0]


@router.get(
    "/schedules/{ref}/executions",
    response_model=Page[sch.Execution],
    summary="Execution history, newest first",
)
def list_executions(
    ref: str,
    ctx: ViewerCtx,
    status: str | None = None,
    limit: Limit = None,
    page_token: PageToken = None,
) -> Page[sch.Execution]:
    with ctx.read() as s:
        items, token = service.list_executions(
            s, ref, status=status, limit=limit, page_token=page_token
        )
        return Page(items=items, next_page_token=token)


@router.get(
    "/schedule-executions/{execution_id}", response_model=sch.Execution, summary="Get an execution"
)
def get_execution(execution_id: str, ctx: ViewerCtx) -> sch.Execution:
    with ctx.read() as s:
        return service.execution_views(s, [service.get_execution(s, execution_id)])[0]


@router.post(
    "/schedule-executions/{execution_id}/cancel",
    response_model=sch.Execution,
    summary="Cancel a queued or running execution",
)
def cancel_execution(execution_id: str, ctx: EditorCtx) -> sch.Execution:
    with ctx.write() as s:
        ex = executions.request_cancel(s, ctx.actor, execution_id, utcnow())
        return service.execution_views(s, [ex])[0]


@router.post(
    "/runs/{run_id}/execution/callback",
    response_model=sch.Execution,
    summary="Webhook executor: report that the job of this run ended",
)
def execution_callback(run_id: str, body: sch.ExecutionCallback, ctx: EditorCtx) -> sch.Execution:
    with ctx.write() as s:
        ex = executions.callback(s, ctx.principal, run_id, body, utcnow())
        return service.execution_views(s, [ex])[0]

"""REST adapter for tracking: parse, authorise, call the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from podstack.schemas import tracking as sch
from podstack.schemas.common import Page
from podstack.server.deps import EditorCtx, ViewerCtx
from podstack.server.json_body import json_body, json_body_doc
from podstack.server.tracking import service

router = APIRouter(tags=["tracking"])


@router.post("/experiments", status_code=201, response_model=sch.Experiment)
def create_experiment(body: sch.ExperimentCreate, ctx: EditorCtx) -> sch.Experiment:
    with ctx.write() as s:
        return sch.Experiment.model_validate(service.create_experiment(s, ctx.actor, body))


@router.get("/experiments", response_model=Page[sch.Experiment])
def list_experiments(
    ctx: ViewerCtx,
    q: str | None = None,
    include_archived: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_token: str | None = None,
) -> Page[sch.Experiment]:
    with ctx.read() as s:
        items, token = service.list_experiments(
            s, q=q, include_archived=include_archived, limit=limit, page_token=page_token
        )
        return Page(items=[sch.Experiment.model_validate(e) for e in items], next_page_token=token)


@router.get("/experiments/{ref}", response_model=sch.Experiment)
def get_experiment(ref: str, ctx: ViewerCtx) -> sch.Experiment:
    with ctx.read() as s:
        return sch.Experiment.model_validate(service.get_experiment(s, ref))


@router.patch("/experiments/{ref}", response_model=sch.Experiment)
def update_experiment(ref: str, body: sch.ExperimentUpdate, ctx: EditorCtx) -> sch.Experiment:
    with ctx.write() as s:
        return sch.Experiment.model_validate(service.update_experiment(s, ctx.actor, ref, body))


@router.delete("/experiments/{ref}", status_code=204)
def delete_experiment(ref: str, ctx: EditorCtx) -> Response:
    with ctx.write() as s:
        service.delete_experiment(s, ctx.actor, ref)
    return Response(status_code=204)


@router.post("/runs", status_code=201, response_model=sch.Run)
def create_run(body: sch.RunCreate, ctx: EditorCtx) -> sch.Run:
    with ctx.write() as s:
        return service.run_view(s, service.create_run(s, ctx.actor, body))


@router.post("/runs/search", response_model=Page[sch.Run])
def search_runs(body: sch.RunSearch, ctx: ViewerCtx) -> Page[sch.Run]:
    with ctx.read() as s:
        items, token = service.search_runs(s, body)
        return Page(items=items, next_page_token=token)


@router.get("/runs/{run_id}", response_model=sch.Run)
def get_run(run_id: str, ctx: ViewerCtx) -> sch.Run:
    with ctx.read() as s:
        return service.run_view(s, service.get_run(s, run_id))


@router.patch("/runs/{run_id}", response_model=sch.Run)
def update_run(run_id: str, body: sch.RunUpdate, ctx: EditorCtx) -> sch.Run:
    ctx.principal.require_run_access(run_id)
    with ctx.write() as s:
        return service.run_view(s, service.update_run(s, ctx.actor, run_id, body))


@router.delete("/runs/{run_id}", status_code=204)
def delete_run(run_id: str, ctx: EditorCtx) -> Response:
    ctx.principal.require_run_access(run_id)
    with ctx.write() as s:
        service.delete_run(s, ctx.actor, run_id)
    return Response(status_code=204)


@router.post("/runs/{run_id}/params", status_code=204)
def log_params(run_id: str, body: sch.LogParams, ctx: EditorCtx) -> Response:
    ctx.principal.require_run_access(run_id)
    with ctx.write() as s:
        service.log_params(s, ctx.actor, run_id, body.params)
    return Response(status_code=204)


@router.post("/runs/{run_id}/metrics", openapi_extra=json_body_doc(sch.LogMetrics))
def log_metrics(
    run_id: str,
    ctx: EditorCtx,  # first: the caller is authenticated before the body is looked at
    body: Annotated[sch.LogMetrics, Depends(json_body(sch.LogMetrics))],
) -> dict[str, int]:
    ctx.principal.require_run_access(run_id)
    with ctx.write() as s:
        return {"logged": service.log_metrics(s, ctx.actor, run_id, body)}


@router.get("/runs/{run_id}/metrics/{key:path}/history", response_model=Page[sch.MetricPoint])
def metric_history(
    run_id: str,
    key: str,
    ctx: ViewerCtx,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    page_token: str | None = None,
) -> Page[sch.MetricPoint]:
    with ctx.read() as s:
        rows, token = service.metric_history(s, run_id, key, limit, page_token)
        return Page(items=[service.metric_point(m) for m in rows], next_page_token=token)


@router.post("/runs/{run_id}/tags", status_code=204)
def set_tags(run_id: str, body: sch.SetTags, ctx: EditorCtx) -> Response:
    ctx.principal.require_run_access(run_id)
    with ctx.write() as s:
        service.set_tags(s, ctx.actor, run_id, dict(body.tags))
    return Response(status_code=204)


@router.delete("/runs/{run_id}/tags/{key:path}", status_code=204)
def delete_tag(run_id: str, key: str, ctx: EditorCtx) -> Response:
    ctx.principal.require_run_access(run_id)
    with ctx.write() as s:
        service.delete_tag(s, ctx.actor, run_id, key)
    return Response(status_code=204)


@router.post("/runs/{run_id}/datasets", status_code=201, response_model=sch.Dataset)
def log_dataset(run_id: str, body: sch.DatasetIn, ctx: EditorCtx) -> sch.Dataset:
    ctx.principal.require_run_access(run_id)
    with ctx.write() as s:
        return sch.Dataset.model_validate(service.log_dataset(s, ctx.actor, run_id, body))

"""REST adapter for the model registry: parse, authorise, call the service, shape the reply.

Version numbers in paths are taken as strings and checked by the service, so ``/versions/abc``
gets the registry's own message ("a version number is a positive integer…"), not a generic one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from podstack.errors import ValidationFailed
from podstack.schemas import registry as sch
from podstack.schemas.common import Page
from podstack.server.artifacts.responses import DOWNLOAD_RESPONSES, blob_download
from podstack.server.deps import EditorCtx, ViewerCtx
from podstack.server.registry import aliases, lookup, service, stages, views

log = logging.getLogger("podstack.server.registry")
router = APIRouter(tags=["registry"])

M = "/registered-models/{name}"
V = M + "/versions/{version}"
Limit = Annotated[int, Query(ge=1, le=1000)]
# Hot paths (alias resolution, version creation) answer with the lean version view, like
# list entries; the files and the source run's params/metrics cost several queries more.
Detail = Annotated[
    bool, Query(description="Include the version's files and its source run (params, metrics)")
]


# ---------------------------------------------------------------- registered models


@router.post("/registered-models", status_code=201, response_model=sch.RegisteredModel)
def register_model(body: sch.RegisteredModelCreate, ctx: EditorCtx) -> sch.RegisteredModel:
    with ctx.write() as s:
        m = service.register_model(s, ctx.actor, body.name, body.description, body.tags)
        return views.model_view(s, m)


@router.get("/registered-models", response_model=Page[sch.RegisteredModel])
def search_models(
    ctx: ViewerCtx,
    q: Annotated[
        str | None, Query(max_length=200, description="Text in name or description")
    ] = None,
    stage: Annotated[str | None, Query(description="Has a version in this stage")] = None,
    label: Annotated[list[str], Query(description="Has every one of these labels")] = [],  # noqa: B006
    order_by: Annotated[str, Query(description="name | updated | stage")] = "name",
    limit: Limit = 100,
    page_token: str | None = None,
) -> Response:
    with ctx.read() as s:
        items, token = service.search_models(
            s,
            q=q,
            stage=stage,
            labels=label,
            order_by=order_by,
            limit=limit,
            page_token=page_token,
        )
        body = views.model_page_json(s, items, token)
    # Serialised here, like the version hot paths (see _json): the declared response_model
    # stays the documented shape.
    return Response(body, media_type="application/json")


@router.get(M, response_model=sch.RegisteredModel)
def get_model(name: str, ctx: ViewerCtx) -> sch.RegisteredModel:
    with ctx.read() as s:
        return views.model_view(s, lookup.get_model(s, name))


@router.patch(M, response_model=sch.RegisteredModel)
def update_model(name: str, body: sch.RegisteredModelUpdate, ctx: EditorCtx) -> sch.RegisteredModel:
    with ctx.write() as s:
        m = service.update_model(s, ctx.actor, name, body.description, body.tags)
        return views.model_view(s, m)


@router.delete(M, status_code=204)
def delete_model(name: str, ctx: EditorCtx) -> Response:
    with ctx.write() as s:
        service.delete_model(s, ctx.actor, name)
    return Response(status_code=204)


@router.get(M + "/history", response_model=Page[sch.HistoryEntry])
def model_history(
    name: str, ctx: ViewerCtx, limit: Limit = 100, page_token: str | None = None
) -> Page[sch.HistoryEntry]:
    with ctx.read() as s:
        items, token = views.model_history(s, name, limit, page_token)
        return Page(items=items, next_page_token=token)


@router.get(M + "/compare", response_model=sch.VersionComparison)
def compare_versions(
    name: str,
    ctx: ViewerCtx,
    versions: Annotated[str, Query(description="Comma-separated, e.g. 1,2,3")],
    higher_is_better: Annotated[
        list[str], Query(description="Metric keys where larger is better (overrides names)")
    ] = [],  # noqa: B006
    lower_is_better: Annotated[
        list[str], Query(description="Metric keys where smaller is better (overrides names)")
    ] = [],  # noqa: B006
    max_points: Annotated[int, Query(description="Points per history series")] = 500,
) -> sch.VersionComparison:
    refs = [v.strip() for v in versions.split(",") if v.strip()]
    overrides = {k: True for k in higher_is_better} | {k: False for k in lower_is_better}
    with ctx.read() as s:
        return views.compare_versions(s, name, refs, overrides=overrides, max_points=max_points)


@router.get(M + "/stages/{stage}", response_model=sch.ModelVersion)
def version_by_stage(
    name: str, stage: str, ctx: ViewerCtx, at: datetime | None = None
) -> sch.ModelVersion:
    with ctx.read() as s:
        m, mv = lookup.version_by_stage(s, name, stage, at)
        return views.version_view(s, m, mv)


# ---------------------------------------------------------------- versions


def _json(view: sch.ModelVersion, status_code: int = 200) -> Response:
    """The hot paths serialise their answer themselves, in the endpoint's worker thread: a
    returned model is validated again by FastAPI, in one more threadpool hop, before being
    serialised (the documented response_model stays what the route declares)."""
    return Response(view.model_dump_json(), status_code, media_type="application/json")


@router.post(M + "/versions", status_code=201, response_model=sch.ModelVersion)
def create_version(
    name: str, body: sch.ModelVersionCreate, ctx: EditorCtx, detail: Detail = False
) -> Response:
    with ctx.write() as s:
        new = service.add_version(
            s,
            ctx.actor,
            name,
            body.source_run_id,
            body.artifact_path,
            description=body.description,
            tags=dict(body.tags),
            parent=body.parent,
        )
        view = views.new_version_view(s, new, detail=detail)
    return _json(view, 201)  # after the commit: a failing commit must not answer 201


@router.get(M + "/versions", response_model=Page[sch.ModelVersion])
def list_versions(
    name: str,
    ctx: ViewerCtx,
    stage: str | None = None,
    limit: Limit = 100,
    page_token: str | None = None,
) -> Page[sch.ModelVersion]:
    with ctx.read() as s:
        m, items, token = service.list_versions(
            s, name, stage=stage, limit=limit, page_token=page_token
        )
        return Page(items=views.version_views(s, [(m, v) for v in items]), next_page_token=token)


@router.get(V, response_model=sch.ModelVersion)
def get_version(name: str, version: str, ctx: ViewerCtx) -> sch.ModelVersion:
    with ctx.read() as s:
        m, mv = lookup.get_version(s, name, version)
        return views.version_view(s, m, mv)


@router.patch(V, response_model=sch.ModelVersion)
def update_version(
    name: str, version: str, body: sch.ModelVersionUpdate, ctx: EditorCtx
) -> sch.ModelVersion:
    with ctx.write() as s:
        m, mv = service.update_version(s, ctx.actor, name, version, body.description)
        return views.version_view(s, m, mv)


@router.delete(V, status_code=204)
def delete_version(name: str, version: str, ctx: EditorCtx) -> Response:
    with ctx.write() as s:
        service.delete_version(s, ctx.actor, name, version)
    return Response(status_code=204)


@router.post(
    V + "/stage",
    response_model=sch.ModelVersion,
    responses={202: {"description": "Intercepted (e.g. approval required); see pending_request"}},
)
def transition_stage(
    name: str, version: str, body: sch.StageTransitionIn, ctx: EditorCtx, response: Response
) -> sch.ModelVersion:
    with ctx.write() as s:
        outcome = stages.transition_stage(
            s,
            ctx.actor,
            name,
            version,
            body.stage,
            note=body.note,
            archive_existing=body.archive_existing,
        )
        m = lookup.get_model(s, name)
        view = views.version_view(s, m, outcome.version)
        if outcome.interception is not None:
            response.status_code = 202
            view.pending_request = sch.PendingRequest(
                id=outcome.interception.request_id,
                message=outcome.interception.message,
                details=outcome.interception.details,
            )
        return view


@router.get(V + "/transitions", response_model=list[sch.StageTransition])
def stage_history(name: str, version: str, ctx: ViewerCtx) -> list[sch.StageTransition]:
    with ctx.read() as s:
        m, rows = stages.stage_history(s, name, version)
        return views.transition_views(m, rows)


@router.post(V + "/tags", status_code=204)
def set_tag(name: str, version: str, body: sch.VersionTagIn, ctx: EditorCtx) -> Response:
    with ctx.write() as s:
        service.set_version_tag(s, ctx.actor, name, version, body.key, body.value)
    return Response(status_code=204)


@router.delete(V + "/tags/{key:path}", status_code=204)
def delete_tag(name: str, version: str, key: str, ctx: EditorCtx) -> Response:
    with ctx.write() as s:
        service.delete_version_tag(s, ctx.actor, name, version, key)
    return Response(status_code=204)


@router.post(V + "/metrics", response_model=sch.ModelVersion)
def log_metrics(
    name: str, version: str, body: sch.VersionMetricsIn, ctx: EditorCtx
) -> sch.ModelVersion:
    with ctx.write() as s:
        service.log_version_metrics(s, ctx.actor, name, version, dict(body.metrics))
        m, mv = lookup.get_version(s, name, version)
        return views.version_view(s, m, mv)


@router.get(V + "/lineage", response_model=sch.LineageGraph)
def lineage(name: str, version: str, ctx: ViewerCtx) -> sch.LineageGraph:
    with ctx.read() as s:
        return views.lineage(s, name, version)


@router.get(V + "/files", response_model=list[sch.VersionFile])
def list_files(name: str, version: str, ctx: ViewerCtx) -> list[sch.VersionFile]:
    with ctx.read() as s:
        return [sch.VersionFile.model_validate(f) for f in service.version_files(s, name, version)]


@router.get(
    V + "/files/{path:path}",
    response_class=StreamingResponse,
    responses=DOWNLOAD_RESPONSES,
    summary="Download one file of a model version (streamed, verified against its sha256)",
)
def download_file(
    name: str,
    version: str,
    path: str,
    ctx: ViewerCtx,
    if_none_match: Annotated[str | None, Header()] = None,
    range: Annotated[str | None, Header(description="bytes=N- to resume a download")] = None,
) -> Response:
    with ctx.read() as s:
        row = service.version_file(s, name, version, path)
        size, sha256 = row.size, row.sha256
    where = f"{path!r} of {name} v{version}"
    details = {"model_name": name, "version": version, "path": path, "sha256": sha256}
    # Ranged answers (206) let the SDK resume a cut download.
    conditional = (if_none_match, range)
    return blob_download(ctx.state.store, sha256, size, path, conditional, log, where, details)


# ---------------------------------------------------------------- aliases


@router.get(M + "/aliases", response_model=list[sch.ModelAlias])
def list_aliases(name: str, ctx: ViewerCtx) -> list[sch.ModelAlias]:
    with ctx.read() as s:
        _, rows = aliases.list_aliases(s, name)
        return [
            sch.ModelAlias(
                alias=a.alias, version=n, updated_by=a.updated_by, updated_at=a.updated_at
            )
            for a, n in rows
        ]


@router.put(M + "/aliases/{alias}", response_model=sch.ModelAlias)
def set_alias(name: str, alias: str, body: sch.AliasSet, ctx: EditorCtx) -> sch.ModelAlias:
    with ctx.write() as s:
        _, a, n = aliases.set_alias(s, ctx.actor, name, alias, body.version)
        return sch.ModelAlias(
            alias=a.alias, version=n, updated_by=a.updated_by, updated_at=a.updated_at
        )


@router.get(M + "/aliases/{alias}", response_model=sch.ModelVersion)
def get_by_alias(
    name: str,
    alias: str,
    ctx: ViewerCtx,
    at: Annotated[datetime | None, Query(description="Resolve as of this date/time")] = None,
    detail: Detail = False,
) -> Response:
    with ctx.read() as s:
        m, mv = lookup.version_by_alias(s, name, alias, at)
        return _json(views.version_view(s, m, mv, detail=detail))


@router.delete(M + "/aliases/{alias}", status_code=204)
def delete_alias(name: str, alias: str, ctx: EditorCtx) -> Response:
    with ctx.write() as s:
        aliases.delete_alias(s, ctx.actor, name, alias)
    return Response(status_code=204)


@router.post(M + "/aliases/{alias}/rollback", response_model=sch.ModelAlias)
def rollback_alias(name: str, alias: str, ctx: EditorCtx) -> sch.ModelAlias:
    with ctx.write() as s:
        _, a, n = aliases.rollback_alias(s, ctx.actor, name, alias)
        return sch.ModelAlias(
            alias=a.alias, version=n, updated_by=a.updated_by, updated_at=a.updated_at
        )


# ---------------------------------------------------------------- models:/ references


@router.get("/model-versions/resolve", response_model=sch.ModelVersion)
def resolve(
    ctx: ViewerCtx,
    uri: Annotated[str, Query(max_length=2000, description="e.g. models:/name/Production")],
    model_name: Annotated[
        str | None, Query(description="If given, the URI must name a version of this model")
    ] = None,
) -> sch.ModelVersion:
    if not uri:
        raise ValidationFailed("uri is required, e.g. models:/name/3.", {})
    with ctx.read() as s:
        if model_name is not None:
            m = lookup.get_model(s, model_name)
            return views.version_view(s, m, lookup.resolve_in_model(s, m, uri))
        m, mv = lookup.resolve_uri(s, uri)
        return views.version_view(s, m, mv)

"""REST adapter for deployments, deployment targets, inference and the endpoint gateway."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from podstack.errors import BadRequest, NotFound, ServiceUnavailable
from podstack.schemas import deployments as sch
from podstack.schemas.common import Page
from podstack.server.deployments import gateway, service
from podstack.server.deployments.manager import get_manager
from podstack.server.deps import AdminCtx, Ctx, EditorCtx, ViewerCtx

router = APIRouter(tags=["deployments"])


def _base(ctx: Ctx, request: Request) -> str | None:
    if ctx.settings.embedded:
        return None
    return ctx.settings.public_url or str(request.base_url)


def _view(ctx: Ctx, request: Request, s: object, d: object) -> sch.Deployment:
    return service.view(s, d, ctx.settings, ctx.state.store, _base(ctx, request))  # type: ignore[arg-type]


# ---------------------------------------------------------------- deployments


@router.post("/deployments", status_code=201, response_model=sch.Deployment)
def create_deployment(
    body: sch.DeploymentCreate, ctx: EditorCtx, request: Request
) -> sch.Deployment:
    with ctx.write() as s:
        d = service.create_deployment(
            s, ctx.actor, body, ctx.settings, ctx.state.store, principal=ctx.principal
        )
        return _view(ctx, request, s, d)


@router.get("/deployments", response_model=Page[sch.Deployment])
def list_deployments(
    ctx: ViewerCtx,
    request: Request,
    model_name: str | None = None,
    version: int | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_token: str | None = None,
) -> Page[sch.Deployment]:
    with ctx.read() as s:
        rows, token = service.list_deployments(
            s,
            model_name=model_name,
            version=version,
            status=status,
            limit=limit,
            page_token=page_token,
        )
        items = service.views(s, rows, ctx.settings, ctx.state.store, _base(ctx, request))
        return Page(items=items, next_page_token=token)


@router.get("/deployments/{name}", response_model=sch.Deployment)
def get_deployment(name: str, ctx: ViewerCtx, request: Request) -> sch.Deployment:
    with ctx.read() as s:
        return _view(ctx, request, s, service.get(s, name))


@router.patch("/deployments/{name}", response_model=sch.Deployment)
def update_deployment(
    name: str, body: sch.DeploymentUpdate, ctx: EditorCtx, request: Request
) -> sch.Deployment:
    with ctx.write() as s:
        d = service.update_deployment(
            s, ctx.actor, name, body, ctx.settings, ctx.state.store, principal=ctx.principal
        )
        return _view(ctx, request, s, d)


@router.post("/deployments/{name}/rollback", response_model=sch.Deployment)
def rollback_deployment(name: str, ctx: EditorCtx, request: Request) -> sch.Deployment:
    with ctx.write() as s:
        d = service.rollback_deployment(
            s,
            ctx.actor,
            name,
            principal=ctx.principal,
            settings=ctx.settings,
            store=ctx.state.store,
        )
        return _view(ctx, request, s, d)


@router.post("/deployments/{name}/stop", response_model=sch.Deployment)
def stop_deployment(name: str, ctx: EditorCtx, request: Request) -> sch.Deployment:
    with ctx.write() as s:
        service.set_desired_state(
            s, ctx.actor, name, "stopped", settings=ctx.settings, store=ctx.state.store
        )
    # The stop waited for the model server to be gone: answer with the stopped deployment.
    with ctx.read() as s:
        return _view(ctx, request, s, service.get(s, name))


@router.post("/deployments/{name}/start", response_model=sch.Deployment)
def start_deployment(name: str, ctx: EditorCtx, request: Request) -> sch.Deployment:
    with ctx.write() as s:
        d = service.set_desired_state(
            s, ctx.actor, name, "running", settings=ctx.settings, store=ctx.state.store
        )
        return _view(ctx, request, s, d)


@router.delete("/deployments/{name}", status_code=204)
def delete_deployment(name: str, ctx: EditorCtx) -> Response:
    with ctx.write() as s:
        store = ctx.state.store
        service.delete_deployment(
            s, ctx.actor, name, principal=ctx.principal, settings=ctx.settings, store=store
        )
    return Response(status_code=204)


@router.post("/deployments/{name}/predict", response_model=sch.InferResponse)
def predict(name: str, body: sch.InferRequest, ctx: ViewerCtx) -> sch.InferResponse:
    """Inference through Podstack with its error shape (the SDK's ``predict``)."""
    with ctx.read() as s:
        d = service.get(s, name)
        status = d.status
    payload = body.model_dump(exclude_none=True)
    res = gateway.forward(
        get_manager(ctx.state), name, "POST", f"/models/{name}/infer", json.dumps(payload).encode()
    )
    try:
        doc = json.loads(res.body)
    except ValueError:
        doc = {"error": res.body[:300].decode(errors="replace")}
    if res.status >= 400:
        message = doc.get("error") if isinstance(doc, dict) else str(doc)
        if res.status == 503:
            raise ServiceUnavailable(
                f"{message} (status: {status})", {"endpoint_name": name, "status": status}
            )
        if res.status == 404:
            raise NotFound(str(message), {"endpoint_name": name})
        raise BadRequest(str(message), {"endpoint_name": name, "protocol_status": res.status})
    return sch.InferResponse.model_validate(doc)


# ---------------------------------------------------------------- the endpoint gateway


def _require_deployment(ctx: Ctx, name: str) -> None:
    with ctx.read() as s:
        service.get(s, name)  # unknown endpoint: our 404, not the protocol's 503


# The model server answers errors in the protocol's own shape ({"error": "..."}); only an
# unknown endpoint name (404) comes from Podstack itself.
_V2_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_V2_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/json": {"schema": _V2_ERROR}}}
    for status, text in {
        400: "Malformed inference request (protocol error shape).",
        503: "The deployment exists but no server is ready (protocol error shape).",
        504: "The model server did not answer in time (protocol error shape).",
    }.items()
} | {
    404: {
        "description": "Unknown endpoint (Podstack error envelope) or unknown model path on "
        "the model server (protocol error shape).",
        "content": {
            "application/json": {
                "schema": {"anyOf": [{"$ref": "#/components/schemas/ErrorResponse"}, _V2_ERROR]}
            }
        },
    },
}


async def _gateway(name: str, path: str, request: Request, ctx: Ctx) -> Response:
    await run_in_threadpool(_require_deployment, ctx, name)
    body = await request.body() if request.method == "POST" else None
    length = request.headers.get(gateway.HEADER_LENGTH)
    headers = {gateway.HEADER_LENGTH: length} if length else None
    res = await run_in_threadpool(
        gateway.forward, get_manager(ctx.state), name, request.method, path, body, headers
    )
    return Response(
        res.body, status_code=res.status, media_type=res.content_type, headers=res.headers
    )


@router.api_route("/endpoints/{name}/v2", methods=["GET"], include_in_schema=False)
async def endpoint_root(name: str, request: Request, ctx: ViewerCtx) -> Response:
    return await _gateway(name, "", request, ctx)


@router.get(
    "/endpoints/{name}/v2/{path:path}",
    summary="Open Inference Protocol (KServe V2) for a deployment: health and metadata",
    responses=_V2_RESPONSES,
)
async def endpoint_get(name: str, path: str, request: Request, ctx: ViewerCtx) -> Response:
    return await _gateway(name, "/" + path, request, ctx)


@router.post(
    "/endpoints/{name}/v2/{path:path}",
    summary="Open Inference Protocol (KServe V2) for a deployment: inference",
    responses=_V2_RESPONSES,
)
async def endpoint_post(name: str, path: str, request: Request, ctx: ViewerCtx) -> Response:
    return await _gateway(name, "/" + path, request, ctx)


# ---------------------------------------------------------------- targets


@router.get("/deployment-targets", response_model=list[sch.Target])
def list_targets(ctx: ViewerCtx) -> list[sch.Target]:
    with ctx.read() as s:
        return service.list_targets(s, ctx.settings, ctx.state.store)


@router.put("/deployment-targets/{name}", response_model=sch.Target)
def put_target(name: str, body: sch.TargetIn, ctx: AdminCtx) -> sch.Target:
    with ctx.write() as s:
        return service.put_target(s, ctx.actor, name, body, ctx.settings, ctx.state.store)


@router.delete("/deployment-targets/{name}", status_code=204)
def delete_target(name: str, ctx: AdminCtx) -> Response:
    with ctx.write() as s:
        service.delete_target(s, ctx.actor, name)
    return Response(status_code=204)

"""MLOps > Deployments (list, detail with health, test inference, stop/start/rollback/delete),
the Deploy dialog on a version page and the deployment status panels on model and version
pages (loaded into the registry's pages with htmx, so those pages need no deployment code)."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from podstack.errors import (
    ApprovalPending,
    BadRequest,
    Conflict,
    PermissionDenied,
    PodstackError,
    ValidationFailed,
)
from podstack.schemas import deployments as sch
from podstack.server.deployments import gateway, service
from podstack.server.deployments.manager import get_manager
from podstack.server.deployments.models import Deployment
from podstack.server.registry import service as registry
from podstack.server.web.core import (
    EditorAction,
    ViewerAction,
    ViewerPage,
    WebCtx,
    WebRoute,
    form_errors,
)
from podstack.serving import formats as fmt

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def deployment_url(name: str) -> str:
    return f"/deployments/{quote(name, safe='')}"


def _base(ctx: WebCtx) -> str | None:
    if ctx.settings.embedded:
        return None
    return ctx.settings.public_url or str(ctx.request.base_url)


def _view(ctx: WebCtx, s: Session, d: Deployment) -> sch.Deployment:
    return service.view(s, d, ctx.settings, ctx.state.store, _base(ctx))


def _settled(d: sch.Deployment) -> bool:
    return sch.is_settled(d)


def _example(ctx: WebCtx, s: Session, d: Deployment) -> str:
    """A ready-to-send request for the test form: the version's input example, else zeros
    shaped like the signature."""
    version_id = d.serving_version_id or d.version_id
    for f in registry.files_of_version(s, version_id):
        if f.path.rsplit("/", 1)[-1] == fmt.INPUT_EXAMPLE and f.size < 64 * 1024:
            try:
                with ctx.state.store.open_blob(f.sha256) as fh:
                    return json.dumps(json.loads(fh.read()), indent=2)
            except (OSError, ValueError):
                break
    inputs = []
    for t in (d.signature or {}).get("inputs", []):
        shape = [1 if n < 0 else n for n in t.get("shape") or [1]]
        count = 1
        for n in shape:
            count *= n
        zero: Any = False if t["datatype"] == "BOOL" else "" if t["datatype"] == "BYTES" else 0
        inputs.append(
            {"name": t["name"], "datatype": t["datatype"], "shape": shape, "data": [zero] * count}
        )
    return json.dumps({"inputs": inputs}, indent=2)


# ---------------------------------------------------------------- list and detail


@router.get("/deployments")
def deployments_page(ctx: ViewerPage, status: str | None = None) -> Response:
    with ctx.read() as s:
        rows, _ = service.list_deployments(s, status=status or None, limit=1000)
        items = service.views(s, rows, ctx.settings, ctx.state.store, _base(ctx))
    return ctx.render(
        "deployments/list.html",
        section="deployments",
        items=items,
        status=status or "",
        statuses=service.STATUSES,
        polling=any(not _settled(d) for d in items),
    )


@router.get("/deployments/{name}")
def deployment_page(ctx: ViewerPage, name: str) -> Response:
    with ctx.read() as s:
        row = service.get(s, name)
        d = _view(ctx, s, row)
        example = _example(ctx, s, row)
    return ctx.render(
        "deployments/detail.html",
        section="deployments",
        d=d,
        example=example,
        polling=not _settled(d),
    )


@router.get("/deployments/{name}/status")
def deployment_status(ctx: ViewerPage, name: str) -> Response:
    """The status card alone, polled by the detail page while a rollout is under way."""
    with ctx.read() as s:
        d = _view(ctx, s, service.get(s, name))
    return ctx.render("deployments/_status.html", d=d, polling=not _settled(d))


@router.post("/deployments/{name}/test")
def test_inference(ctx: ViewerAction, name: str, inputs: Annotated[str, Form()] = "") -> Response:
    try:
        body = json.loads(inputs)
        if not isinstance(body, dict) or "inputs" not in body:
            raise ValueError('expected an object like {"inputs": [...]}')
    except ValueError as exc:
        return ctx.render(
            "deployments/_inference_result.html",
            error=f"The request is not valid JSON for the protocol: {exc}",
        )
    with ctx.read() as s:
        service.get(s, name)
    res = gateway.forward(
        get_manager(ctx.state), name, "POST", f"/models/{name}/infer", json.dumps(body).encode()
    )
    try:
        doc = json.loads(res.body)
    except ValueError:
        doc = {"error": res.body[:300].decode(errors="replace")}
    if res.status >= 400:
        return ctx.render(
            "deployments/_inference_result.html",
            error=f"HTTP {res.status}: {doc.get('error', doc)}",
        )
    outputs = []
    for t in doc.get("outputs", []):
        data = t.get("data", [])
        shown = json.dumps(data[:50]) + (" …" if len(data) > 50 else "")
        outputs.append({**t, "shown": shown})
    return ctx.render(
        "deployments/_inference_result.html",
        outputs=outputs,
        model_version=doc.get("model_version"),
    )


def _action(ctx: WebCtx, name: str, what: str) -> Response:
    try:
        return _do_action(ctx, name, what)
    except (ApprovalPending, PermissionDenied, Conflict) as exc:
        # A production endpoint's rollback waits for approval; a pickle needs an admin.
        return ctx.redirect(deployment_url(name), exc.message, "error")


def _runtime(ctx: WebCtx) -> dict[str, Any]:
    """What the service needs to have this app's deployment manager act after the commit."""
    return {"settings": ctx.settings, "store": ctx.state.store}


def _do_action(ctx: WebCtx, name: str, what: str) -> Response:
    runtime = _runtime(ctx)
    with ctx.write() as s:
        if what == "stop":
            service.set_desired_state(s, ctx.actor, name, "stopped", **runtime)
            message = f"Deployment {name} is stopping."
        elif what == "start":
            service.set_desired_state(s, ctx.actor, name, "running", **runtime)
            message = f"Deployment {name} is starting."
        else:
            d = service.rollback_deployment(
                s,
                ctx.actor,
                name,
                principal=ctx.principal,
                **runtime,
            )
            message = f"Rolling {name} back to version {d.version}."
    return ctx.redirect(deployment_url(name), message)


@router.post("/deployments/{name}/stop")
def stop(ctx: EditorAction, name: str) -> Response:
    return _action(ctx, name, "stop")


@router.post("/deployments/{name}/start")
def start(ctx: EditorAction, name: str) -> Response:
    return _action(ctx, name, "start")


@router.post("/deployments/{name}/rollback")
def rollback(ctx: EditorAction, name: str) -> Response:
    return _action(ctx, name, "rollback")


@router.post("/deployments/{name}/delete")
def delete(ctx: EditorAction, name: str) -> Response:
    try:
        with ctx.write() as s:
            service.delete_deployment(s, ctx.actor, name, principal=ctx.principal, **_runtime(ctx))
    except PermissionDenied as exc:
        return ctx.redirect(deployment_url(name), exc.message, "error")
    return ctx.redirect("/deployments", f"Deployment {name} deleted.")


# ---------------------------------------------------------------- panels on registry pages


@router.get("/deployments/-/panel")
def panel(
    ctx: ViewerPage,
    model: Annotated[str, Query()],
    version: Annotated[int | None, Query()] = None,
) -> Response:
    with ctx.read() as s:
        rows, _ = service.list_deployments(s, model_name=model, version=version, limit=1000)
        items = service.views(s, rows, ctx.settings, ctx.state.store, _base(ctx))
    return ctx.render("deployments/_panel.html", items=items, model=model, version=version)


def _deploy_form_context(ctx: WebCtx, s: Session, model: str, version: int) -> dict[str, Any]:
    m, mv = registry.get_version(s, model, version)
    targets = service.list_targets(s, ctx.settings, ctx.state.store)
    gpu_types = sorted({g for t in targets for g in t.gpu_types})
    aliases = [a.alias for a in registry.aliases_of_versions(s, [mv.id])]
    servable_reason = None
    try:
        service.servable_of(s, ctx.state.store, m, mv)
    except ValidationFailed as exc:
        servable_reason = exc.message
    return {
        "model": m.name,
        "version": mv.version,
        "targets": targets,
        "default_target": service.default_target_name(s),
        "gpu_types": gpu_types,
        "aliases": aliases,
        "servable_reason": servable_reason,
    }


@router.get("/deployments/-/deploy-form")
def deploy_form(
    ctx: ViewerPage, model: Annotated[str, Query()], version: Annotated[int, Query()]
) -> Response:
    ctx.principal.require("editor")
    from podstack.schemas.deployments import default_endpoint_name

    with ctx.read() as s:
        extra = _deploy_form_context(ctx, s, model, version)
    form = {
        "endpoint_name": default_endpoint_name(model),
        "target": extra["default_target"],
        "gpu_type": "cpu",
        "min_replicas": "1",
        "max_replicas": "1",
        "follow": "pin",
    }
    return ctx.render("deployments/_deploy_form.html", form=form, errors={}, **extra)


_FIELD_FOR = {
    "endpoint_name": "endpoint_name",
    "gpu_type": "gpu_type",
    "target": "target",
    "min_replicas": "replicas",
    "max_replicas": "replicas",
}


def _int(value: str, label: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValidationFailed(f"{label} must be a whole number.", {"field": "replicas"}) from None


@router.post("/deployments/-/deploy")
def deploy(
    ctx: EditorAction,
    model: Annotated[str, Form()],
    version: Annotated[int, Form()],
    endpoint_name: Annotated[str, Form()] = "",
    target: Annotated[str, Form()] = "",
    gpu_type: Annotated[str, Form()] = "cpu",
    min_replicas: Annotated[str, Form()] = "1",
    max_replicas: Annotated[str, Form()] = "1",
    follow: Annotated[str, Form()] = "pin",
    production: Annotated[str, Form()] = "",
) -> Response:
    form = {
        "endpoint_name": endpoint_name,
        "target": target,
        "gpu_type": gpu_type,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "follow": follow,
        "production": production,
    }
    try:
        alias = follow.removeprefix("alias:") if follow.startswith("alias:") else None
        body = sch.DeploymentCreate(
            model_name=model,
            version=None if alias else version,
            alias=alias,
            endpoint_name=endpoint_name.strip(),
            gpu_type=None if gpu_type.strip().lower() in ("", "cpu") else gpu_type.strip(),
            min_replicas=_int(min_replicas, "Min replicas"),
            max_replicas=_int(max_replicas, "Max replicas"),
            target=target or None,
            production=production.lower() in ("1", "on", "true", "yes"),
        )
        with ctx.write() as s:
            d = service.create_deployment(
                s, ctx.actor, body, ctx.settings, ctx.state.store, principal=ctx.principal
            )
            name = d.name
    except ApprovalPending as exc:
        # Opened (and committed) an approval request: show it, with what happens next.
        return ctx.redirect(f"/approvals/{exc.request_id}", exc.message, "error")
    except (ValidationFailed, Conflict, BadRequest, PermissionDenied) as exc:
        errors = form_errors(exc, by_detail=_FIELD_FOR.items(), rename=_FIELD_FOR)
        if isinstance(exc, Conflict):
            # A name already taken is the one conflict this form can cause.
            errors = {"endpoint_name": exc.message}
        with ctx.read() as s:
            extra = _deploy_form_context(ctx, s, model, version)
        return ctx.render(
            "deployments/_deploy_form.html",
            status_code=422,
            form=form,
            errors=errors,
            **extra,
        )
    except PodstackError:
        raise
    return ctx.redirect(deployment_url(name), f"Deploying {model} v{version} as {name}.")

"""REST for permissions on registered models and experiments.

``/registered-models/{name}/permissions`` and ``/experiments/{ref}/permissions`` (``ref``: an
experiment id or name, as on every experiment route): read the owner, the default and the
grants; put or delete one grantee's grant. All need MANAGE on the resource; a caller who
cannot read it gets the resource's ordinary 404.

``/registered-models/{name}/protections``: the model's protected aliases and stages (read by
anyone who can read the model); ``PUT``/``DELETE .../protections/aliases/{alias}`` and
``.../protections/stages/{stage}`` protect or unprotect one (MANAGE).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from podstack.schemas import permissions as sch
from podstack.server.deps import EditorCtx, ViewerCtx
from podstack.server.permissions import protections, service
from podstack.server.permissions.levels import EXPERIMENT, MODEL
from podstack.server.permissions.views import (
    grant_view,
    permissions_view,
    protection_view,
    protections_view,
)
from podstack.server.registry import lookup
from podstack.server.tracking import service as tracking

router = APIRouter(tags=["permissions"])

MP = "/registered-models/{name}/permissions"
EP = "/experiments/{ref}/permissions"
# :path: directory group names may hold slashes (Keycloak sends "/team/ml").
GRANTEE = "/{grantee_type}/{grantee:path}"


def _model(s: Session, name: str) -> tuple[str, Any, str]:
    m = lookup.get_model(s, name)  # 404 for a model the caller cannot read
    return MODEL, m.id, m.name


def _experiment(s: Session, ref: str) -> tuple[str, Any, str]:
    exp = tracking.get_experiment(s, ref)
    return EXPERIMENT, exp.id, ref


def _get(ctx: ViewerCtx, find: Any, ref: str) -> sch.ResourcePermissions:
    with ctx.read() as s:
        kind, rid, label = find(s, ref)
        return permissions_view(service.list_grants(s, ctx.principal, kind, rid, label))


def _put(
    ctx: EditorCtx,
    find: Any,
    ref: str,
    grantee_type: str,
    grantee: str,
    body: sch.GrantIn,
    response: Response,
) -> sch.Grant:
    with ctx.write() as s:
        kind, rid, label = find(s, ref)
        row, created = service.grant(
            s, ctx.principal, ctx.actor, kind, rid, label, grantee_type, grantee, body.permission
        )
        response.status_code = 201 if created else 200
        return grant_view(row)


def _delete(ctx: EditorCtx, find: Any, ref: str, grantee_type: str, grantee: str) -> Response:
    with ctx.write() as s:
        kind, rid, label = find(s, ref)
        service.revoke(s, ctx.principal, ctx.actor, kind, rid, label, grantee_type, grantee)
    return Response(status_code=204)


@router.get(MP, response_model=sch.ResourcePermissions)
def get_model_permissions(name: str, ctx: ViewerCtx) -> sch.ResourcePermissions:
    return _get(ctx, _model, name)


@router.put(
    MP + GRANTEE,
    response_model=sch.Grant,
    responses={201: {"model": sch.Grant, "description": "Grant created"}},
)
def put_model_grant(
    name: str,
    grantee_type: str,
    grantee: str,
    body: sch.GrantIn,
    ctx: EditorCtx,
    response: Response,
) -> sch.Grant:
    return _put(ctx, _model, name, grantee_type, grantee, body, response)


@router.delete(MP + GRANTEE, status_code=204)
def delete_model_grant(name: str, grantee_type: str, grantee: str, ctx: EditorCtx) -> Response:
    return _delete(ctx, _model, name, grantee_type, grantee)


@router.get(EP, response_model=sch.ResourcePermissions)
def get_experiment_permissions(ref: str, ctx: ViewerCtx) -> sch.ResourcePermissions:
    return _get(ctx, _experiment, ref)


@router.put(
    EP + GRANTEE,
    response_model=sch.Grant,
    responses={201: {"model": sch.Grant, "description": "Grant created"}},
)
def put_experiment_grant(
    ref: str, grantee_type: str, grantee: str, body: sch.GrantIn, ctx: EditorCtx, response: Response
) -> sch.Grant:
    return _put(ctx, _experiment, ref, grantee_type, grantee, body, response)


@router.delete(EP + GRANTEE, status_code=204)
def delete_experiment_grant(ref: str, grantee_type: str, grantee: str, ctx: EditorCtx) -> Response:
    return _delete(ctx, _experiment, ref, grantee_type, grantee)


# ---------------------------------------------------------------- protected aliases and stages

PP = "/registered-models/{name}/protections"


@router.get(PP, response_model=sch.ModelProtections)
def get_model_protections(name: str, ctx: ViewerCtx) -> sch.ModelProtections:
    with ctx.read() as s:
        m = lookup.get_model(s, name)  # 404 for a model the caller cannot read
        return protections_view(protections.list_protections(s, m))


def _protect(
    ctx: EditorCtx, name: str, kind: str, ref: str, body: sch.ProtectionIn, response: Response
) -> sch.Protection:
    with ctx.write() as s:
        m = lookup.get_model(s, name, for_update=True)
        row, created = protections.protect(s, ctx.principal, ctx.actor, m, kind, ref, body.group)
        response.status_code = 201 if created else 200
        return protection_view(row)


def _unprotect(ctx: EditorCtx, name: str, kind: str, ref: str) -> Response:
    with ctx.write() as s:
        m = lookup.get_model(s, name, for_update=True)
        protections.unprotect(s, ctx.principal, ctx.actor, m, kind, ref)
    return Response(status_code=204)


_CREATED = {201: {"model": sch.Protection, "description": "Protection created"}}


@router.put(PP + "/aliases/{alias}", response_model=sch.Protection, responses=_CREATED)
def protect_alias(
    name: str, alias: str, body: sch.ProtectionIn, ctx: EditorCtx, response: Response
) -> sch.Protection:
    return _protect(ctx, name, protections.ALIAS, alias, body, response)


@router.delete(PP + "/aliases/{alias}", status_code=204)
def unprotect_alias(name: str, alias: str, ctx: EditorCtx) -> Response:
    return _unprotect(ctx, name, protections.ALIAS, alias)


@router.put(PP + "/stages/{stage}", response_model=sch.Protection, responses=_CREATED)
def protect_stage(
    name: str, stage: str, body: sch.ProtectionIn, ctx: EditorCtx, response: Response
) -> sch.Protection:
    return _protect(ctx, name, protections.STAGE, stage, body, response)


@router.delete(PP + "/stages/{stage}", status_code=204)
def unprotect_stage(name: str, stage: str, ctx: EditorCtx) -> Response:
    return _unprotect(ctx, name, protections.STAGE, stage)

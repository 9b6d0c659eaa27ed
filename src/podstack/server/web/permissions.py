"""The Permissions tab of a model's and an experiment's page: the owner, the default
permission and the grants; add or change a grant; revoke one (after a confirmation).

The tab is shown only to callers who hold MANAGE (``can_manage``): only they may see and
change grants, as over REST. A direct visit by anyone else answers what the REST API does: the
resource's ordinary 404 when they cannot read it, a 403 page saying what they hold when they
can. Every rule is the permissions service's; this module only maps its errors onto the form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from podstack.errors import PodstackError, ValidationFailed
from podstack.server.permissions import service as permissions
from podstack.server.permissions.levels import (
    EXPERIMENT,
    GRANTABLE,
    GRANTEE_TYPES,
    MODEL,
    READ,
    USER,
)
from podstack.server.permissions.views import permissions_view
from podstack.server.registry import service as registry
from podstack.server.tracking import service as tracking
from podstack.server.web.core import EditorAction, ViewerPage, WebCtx, WebRoute, form_errors

router = APIRouter(route_class=WebRoute, include_in_schema=False)

FIELDS = ("grantee_type", "grantee", "permission")
# Which form field a service error is about, by the detail it carries; the order matters: an
# unknown user names both its type and its name, and the name is what to fix.
_BY_DETAIL = (
    ("grantee", "grantee"),
    ("grantee_type", "grantee_type"),
    ("permission", "permission"),
)


@dataclass(frozen=True)
class Resource:
    kind: str
    id: Any
    ref: str  # what the service names it by (messages, audit)
    title: str
    url: str  # its page
    crumb: tuple[str, str]  # (section label, section url)
    section: str


Find = Callable[[Session, str], Resource]


def _model(s: Session, name: str) -> Resource:
    m = registry.get_model(s, name)  # 404 for a model the caller cannot read
    return Resource(
        MODEL,
        m.id,
        m.name,
        m.name,
        "/models/" + quote(m.name, safe=""),
        ("Model Registry", "/models"),
        "registry",
    )


def _experiment(s: Session, ref: str) -> Resource:
    exp = tracking.get_experiment(s, ref)
    return Resource(
        EXPERIMENT,
        exp.id,
        exp.id,
        exp.name,
        "/experiments/" + quote(exp.id, safe=""),
        ("Experiments", "/experiments"),
        "experiments",
    )


def can_manage(s: Session, kind: str, resource_id: Any) -> bool:
    """Whether the session's caller may change the resource's grants (MANAGE in their own
    right, ``permissions.own_manage``): the model and experiment pages show the Permissions tab
    only then."""
    return permissions.own_manage(s, permissions.principal_of(s), kind, resource_id)


def _page(
    ctx: WebCtx,
    find: Find,
    ref: str,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    with ctx.read() as s:
        res = find(s, ref)
        # MANAGE needed: a reader gets the service's 403 (as a page), a stranger its 404.
        perms = permissions_view(
            permissions.list_grants(s, ctx.principal, res.kind, res.id, res.ref)
        )
    return ctx.render(
        "permissions/page.html",
        status_code=status,
        section=res.section,
        res=res,
        perms=perms,
        levels=GRANTABLE,
        grantee_types=GRANTEE_TYPES,
        form=form or {"grantee_type": USER, "grantee": "", "permission": READ},
        errors=errors or {},
    )


def _form_error(exc: PodstackError) -> bool:
    """Errors about what was typed into the form (shown under it); anything else (the caller
    may not manage the resource, it is gone) is the page's own 403/404."""
    details = exc.details if isinstance(exc.details, dict) else {}
    return isinstance(exc, ValidationFailed) or "grantee" in details or "grantee_type" in details


def _grant(
    ctx: WebCtx, find: Find, ref: str, grantee_type: str, grantee: str, permission: str
) -> Response:
    grantee = grantee.strip()
    form = {"grantee_type": grantee_type, "grantee": grantee, "permission": permission}
    if not grantee:
        errors = {"grantee": "Enter the name of a user (or service account) or a group."}
        return _page(ctx, find, ref, form=form, errors=errors, status=422)
    try:
        with ctx.write() as s:
            res = find(s, ref)
            row, created = permissions.grant(
                s,
                ctx.principal,
                ctx.actor,
                res.kind,
                res.id,
                res.ref,
                grantee_type,
                grantee,
                permission,
            )
            who = f"{row.grantee_type.capitalize()} {row.grantee}"
            done = (
                f"{who} now holds {row.permission} on {res.title}."
                if created
                else f"{who}'s permission on {res.title} changed to {row.permission}."
            )
    except PodstackError as exc:
        if not _form_error(exc):
            raise
        errors = form_errors(exc, by_detail=_BY_DETAIL, fields=FIELDS)
        return _page(ctx, find, ref, form=form, errors=errors, status=exc.status)
    return ctx.redirect(res.url + "/permissions", done)


def _revoke(ctx: WebCtx, find: Find, ref: str, grantee_type: str, grantee: str) -> Response:
    if not grantee_type or not grantee:
        errors = {"_form": "Choose the grant to revoke (its grantee type and name are missing)."}
        return _page(ctx, find, ref, errors=errors, status=422)
    try:
        with ctx.write() as s:
            res = find(s, ref)
            permissions.revoke(
                s, ctx.principal, ctx.actor, res.kind, res.id, res.ref, grantee_type, grantee
            )
    except PodstackError as exc:
        if not _form_error(exc):
            raise
        return _page(ctx, find, ref, errors={"_form": exc.message}, status=exc.status)
    return ctx.redirect(
        res.url + "/permissions", f"Revoked {grantee_type} {grantee}'s grant on {res.title}."
    )


GranteeType = Annotated[str, Form()]
Grantee = Annotated[str, Form()]
Permission = Annotated[str, Form()]
# Revoke is posted by the shared confirmation dialog, which sends only the CSRF token: the
# grant it is about travels in the query string of the dialog's action.
RevokeType = Annotated[str, Query()]
RevokeGrantee = Annotated[str, Query()]


# ---------------------------------------------------------------- models


@router.get("/models/{name}/permissions")
def model_permissions(ctx: ViewerPage, name: str) -> Response:
    return _page(ctx, _model, name)


@router.post("/models/{name}/permissions")
def grant_model_permission(
    ctx: EditorAction,
    name: str,
    grantee_type: GranteeType = USER,
    grantee: Grantee = "",
    permission: Permission = READ,
) -> Response:
    return _grant(ctx, _model, name, grantee_type, grantee, permission)


@router.post("/models/{name}/permissions/revoke")
def revoke_model_permission(
    ctx: EditorAction, name: str, grantee_type: RevokeType = "", grantee: RevokeGrantee = ""
) -> Response:
    return _revoke(ctx, _model, name, grantee_type, grantee)


# ---------------------------------------------------------------- experiments


@router.get("/experiments/{ref}/permissions")
def experiment_permissions(ctx: ViewerPage, ref: str) -> Response:
    return _page(ctx, _experiment, ref)


@router.post("/experiments/{ref}/permissions")
def grant_experiment_permission(
    ctx: EditorAction,
    ref: str,
    grantee_type: GranteeType = USER,
    grantee: Grantee = "",
    permission: Permission = READ,
) -> Response:
    return _grant(ctx, _experiment, ref, grantee_type, grantee, permission)


@router.post("/experiments/{ref}/permissions/revoke")
def revoke_experiment_permission(
    ctx: EditorAction, ref: str, grantee_type: RevokeType = "", grantee: RevokeGrantee = ""
) -> Response:
    return _revoke(ctx, _experiment, ref, grantee_type, grantee)

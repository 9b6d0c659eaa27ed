"""REST for approval policies, reviewer groups and approval requests. Rules live in
``service.py`` / ``policies.py``; this parses, authorises and calls them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from podstack.schemas import approvals as sch
from podstack.schemas.common import Page
from podstack.server.approvals import policies, service, views
from podstack.server.approvals.models import ReviewerGroup
from podstack.server.deps import AdminCtx, EditorCtx, ViewerCtx

router = APIRouter(tags=["approvals"])

Limit = Annotated[int | None, Query(description="Page size (1-1000, default 100).")]
PageToken = Annotated[str | None, Query(description="next_page_token of the previous page.")]


# ---------------------------------------------------------------- policies


@router.get("/approval-policy", response_model=sch.ApprovalPolicy, summary="The default policy")
def get_default_policy(ctx: ViewerCtx) -> sch.ApprovalPolicy:
    with ctx.read() as s:
        return policies.get_policy(s, None).to_schema()


@router.put("/approval-policy", response_model=sch.ApprovalPolicy, summary="Set the default policy")
def set_default_policy(body: sch.ApprovalPolicyIn, ctx: AdminCtx) -> sch.ApprovalPolicy:
    with ctx.write() as s:
        return policies.set_policy(s, ctx.actor, None, body).to_schema()


@router.get(
    "/approval-policies",
    response_model=Page[sch.ApprovalPolicy],
    summary="The default policy and every model's own policy",
)
def list_policies(ctx: ViewerCtx) -> Page[sch.ApprovalPolicy]:
    with ctx.read() as s:
        return Page(items=[p.to_schema() for p in policies.list_policies(s)])


@router.get(
    "/registered-models/{name}/approval-policy",
    response_model=sch.ApprovalPolicy,
    summary="The policy that applies to a model (its own, else the default)",
)
def get_model_policy(name: str, ctx: ViewerCtx) -> sch.ApprovalPolicy:
    with ctx.read() as s:
        return policies.get_policy(s, name).to_schema()


@router.put("/registered-models/{name}/approval-policy", response_model=sch.ApprovalPolicy)
def set_model_policy(name: str, body: sch.ApprovalPolicyIn, ctx: AdminCtx) -> sch.ApprovalPolicy:
    with ctx.write() as s:
        return policies.set_policy(s, ctx.actor, name, body).to_schema()


@router.delete(
    "/registered-models/{name}/approval-policy",
    response_model=sch.ApprovalPolicy,
    summary="Drop a model's own policy; returns the default that now applies",
)
def delete_model_policy(name: str, ctx: AdminCtx) -> sch.ApprovalPolicy:
    with ctx.write() as s:
        return policies.delete_policy(s, ctx.actor, name).to_schema()


# ---------------------------------------------------------------- groups


def _group_view(s: Session, g: ReviewerGroup) -> sch.Group:
    view = sch.Group.model_validate(g)
    view.members = policies.members(s, [g])[g.id]
    return view


@router.post("/groups", status_code=201, response_model=sch.Group)
def create_group(body: sch.GroupCreate, ctx: AdminCtx) -> sch.Group:
    with ctx.write() as s:
        g = policies.create_group(s, ctx.actor, body.name, body.description, body.members)
        return _group_view(s, g)


@router.get("/groups", response_model=Page[sch.Group])
def list_groups(ctx: ViewerCtx) -> Page[sch.Group]:
    with ctx.read() as s:
        groups = policies.list_groups(s)
        members = policies.members(s, groups)
        items = []
        for g in groups:
            view = sch.Group.model_validate(g)
            view.members = members[g.id]
            items.append(view)
        return Page(items=items)


@router.get("/groups/{name}", response_model=sch.Group)
def get_group(name: str, ctx: ViewerCtx) -> sch.Group:
    with ctx.read() as s:
        return _group_view(s, policies.get_group(s, name))


@router.delete("/groups/{name}", status_code=204)
def delete_group(name: str, ctx: AdminCtx) -> Response:
    with ctx.write() as s:
        policies.delete_group(s, ctx.actor, name)
    return Response(status_code=204)


@router.post("/groups/{name}/members", response_model=sch.Group)
def add_group_member(name: str, body: sch.GroupMemberIn, ctx: AdminCtx) -> sch.Group:
    with ctx.write() as s:
        return _group_view(s, policies.add_member(s, ctx.actor, name, body.username))


@router.delete("/groups/{name}/members/{username}", response_model=sch.Group)
def remove_group_member(name: str, username: str, ctx: AdminCtx) -> sch.Group:
    with ctx.write() as s:
        return _group_view(s, policies.remove_member(s, ctx.actor, name, username))


# ---------------------------------------------------------------- requests


@router.post(
    "/approval-requests",
    status_code=201,
    response_model=sch.ApprovalRequestDetail,
    summary="Request a stage transition (reviewed under the model's policy)",
)
def create_request(body: sch.ApprovalRequestCreate, ctx: EditorCtx) -> sch.ApprovalRequestDetail:
    with ctx.write() as s:
        req = service.create_request(
            s,
            ctx.actor,
            body.model_name,
            body.version,
            body.stage,
            note=body.note,
            archive_existing=body.archive_existing,
        )
        return views.request_detail(s, ctx.principal, req)


@router.get("/approval-requests", response_model=Page[sch.ApprovalRequest])
def list_requests(
    ctx: ViewerCtx,
    status: Annotated[
        list[str] | None,
        Query(description="pending | approved | rejected | cancelled | stale (repeatable)"),
    ] = None,
    model_name: str | None = None,
    requester: str | None = None,
    limit: Limit = None,
    page_token: PageToken = None,
) -> Page[sch.ApprovalRequest]:
    with ctx.read() as s:
        items, token = service.list_requests(
            s,
            status=status,
            model_name=model_name,
            requester=requester,
            limit=limit,
            page_token=page_token,
        )
        return Page(items=views.request_views(s, items), next_page_token=token)


@router.get("/approval-requests/{request_id}", response_model=sch.ApprovalRequestDetail)
def get_request(request_id: str, ctx: ViewerCtx) -> sch.ApprovalRequestDetail:
    with ctx.read() as s:
        return views.request_detail(s, ctx.principal, service.get_request(s, request_id))


@router.post("/approval-requests/{request_id}/approve", response_model=sch.ApprovalRequestDetail)
def approve(
    request_id: str, ctx: ViewerCtx, body: sch.DecisionIn | None = None
) -> sch.ApprovalRequestDetail:
    # Committed on its own: a request found stale stays stale although the approval fails.
    with ctx.write() as s:
        service.refresh(s, request_id)
    with ctx.write() as s:
        req = service.approve(
            s, ctx.principal, request_id, (body.comment if body else None), state=ctx.state
        )
        return views.request_detail(s, ctx.principal, req)


@router.post("/approval-requests/{request_id}/reject", response_model=sch.ApprovalRequestDetail)
def reject(
    request_id: str, ctx: ViewerCtx, body: sch.DecisionIn | None = None
) -> sch.ApprovalRequestDetail:
    with ctx.write() as s:
        req = service.reject(s, ctx.principal, request_id, (body.comment if body else None))
        return views.request_detail(s, ctx.principal, req)


@router.post("/approval-requests/{request_id}/cancel", response_model=sch.ApprovalRequestDetail)
def cancel(
    request_id: str, ctx: ViewerCtx, body: sch.DecisionIn | None = None
) -> sch.ApprovalRequestDetail:
    with ctx.write() as s:
        req = service.cancel(s, ctx.principal, request_id, (body.comment if body else None))
        return views.request_detail(s, ctx.principal, req)


@router.post(
    "/approval-requests/{request_id}/comments",
    status_code=201,
    response_model=sch.ApprovalComment,
)
def comment(request_id: str, body: sch.CommentIn, ctx: ViewerCtx) -> sch.ApprovalComment:
    with ctx.write() as s:
        return sch.ApprovalComment.model_validate(
            service.add_comment(s, ctx.actor, request_id, body.body)
        )

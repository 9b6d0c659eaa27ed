"""MLOps > Approvals: pending requests and decided history, a request's page (gate results,
metrics beside Production, comments) with Approve / Reject / Cancel; the notification bell
and inbox. Rules live in the approvals and notifications services."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse, Response

from podstack.errors import PodstackError, ValidationFailed
from podstack.schemas import approvals as sch
from podstack.schemas import notifications as nsch
from podstack.server.approvals import policies, service, views
from podstack.server.notifications import service as notifications
from podstack.server.web.core import (
    AdminAction,
    ViewerAction,
    ViewerPage,
    WebCtx,
    WebRoute,
    form_errors,
    safe_next,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PAGE_SIZE = 25
VIEWS = {"pending": ["pending"], "history": ["approved", "rejected", "cancelled", "stale"]}


def request_url(request_id: str) -> str:
    return f"/approvals/{request_id}"


@router.get("/approvals")
def approvals_page(
    ctx: ViewerPage,
    view: str = "pending",
    model: str = "",
    page_token: str | None = None,
) -> Response:
    view = view if view in VIEWS else "pending"
    with ctx.read() as s:
        rows, token = service.list_requests(
            s,
            status=VIEWS[view],
            model_name=model.strip() or None,
            limit=PAGE_SIZE,
            page_token=page_token,
        )
        items = views.request_views(s, rows)
        pending_count = service.pending_count(s)
    return ctx.render(
        "approvals/list.html",
        section="approvals",
        view=view,
        model=model.strip(),
        items=items,
        next_page_token=token,
        first_page=page_token is not None,
        pending_count=pending_count,
        me=ctx.actor,
    )


# ---------------------------------------------------------------- policies and groups


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.replace("\n", ",").split(",") if x.strip()]


def _policy_form(p: policies.Policy | None, model: str = "") -> dict[str, Any]:
    if p is None:
        return {
            "model": model,
            "gated_stages": [],
            "reviewers": "",
            "reviewer_groups": "",
            "required_approvals": 1,
            "gates": "",
        }
    return {
        "model": model,
        "gated_stages": p.gated_stages,
        "reviewers": ", ".join(p.reviewers),
        "reviewer_groups": ", ".join(p.reviewer_groups),
        "required_approvals": p.required_approvals,
        "gates": "\n".join(p.gates),
    }


def _policies_page(
    ctx: WebCtx,
    *,
    edit: str = "",
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    group_errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    with ctx.read() as s:
        rows = policies.list_policies(s)
        groups = policies.list_groups(s)
        members = policies.members(s, groups)
        group_views = [
            {"name": g.name, "description": g.description, "members": members[g.id]} for g in groups
        ]
        if form is None:
            current: policies.Policy | None = rows[0]
            if edit:
                try:
                    current = policies.get_policy(s, edit)
                except PodstackError:
                    current = None  # unknown model: an empty form, refused on save
            # A model without its own policy yet starts from the default's values.
            form = _policy_form(current, edit)
    return ctx.render(
        "approvals/policies.html",
        status_code=status,
        section="approvals",
        view="policies",
        policies=rows,
        groups=group_views,
        form=form,
        errors=errors or {},
        group_errors=group_errors or {},
        editing=form.get("model", ""),
    )


@router.get("/approvals/policies")
def policies_page(ctx: ViewerPage, edit: str = "") -> Response:
    return _policies_page(ctx, edit=edit.strip())


@router.post("/approvals/policies")
def save_policy(
    ctx: AdminAction,
    model: Annotated[str, Form()] = "",
    gated_stages: Annotated[list[str] | None, Form()] = None,
    reviewers: Annotated[str, Form()] = "",
    reviewer_groups: Annotated[str, Form()] = "",
    required_approvals: Annotated[str, Form()] = "1",
    gates: Annotated[str, Form()] = "",
) -> Response:
    form = {
        "model": model.strip(),
        "gated_stages": gated_stages or [],
        "reviewers": reviewers,
        "reviewer_groups": reviewer_groups,
        "required_approvals": required_approvals,
        "gates": gates,
    }
    try:
        try:
            quorum = int(required_approvals)
        except ValueError:
            raise ValidationFailed(
                "Required approvals is a whole number (1 or more).",
                {"field": "required_approvals"},
            )
        body = sch.ApprovalPolicyIn(
            gated_stages=gated_stages or [],
            reviewers=_split(reviewers),
            reviewer_groups=_split(reviewer_groups),
            required_approvals=quorum,
            gates=[g.strip() for g in gates.splitlines() if g.strip()],
        )
        with ctx.write() as s:
            policies.set_policy(s, ctx.actor, form["model"] or None, body)
    except PodstackError as exc:
        # A stage named in the details is one of the gated stages; a 404 is the model.
        errors = form_errors(
            exc, "model" if exc.status == 404 else "_form", by_detail=[("stage", "gated_stages")]
        )
        return _policies_page(ctx, form=form, errors=errors, status=exc.status)
    where = f"model {form['model']}" if form["model"] else "the default"
    return ctx.redirect(url_with_edit(form["model"]), f"Approval policy of {where} saved.")


def url_with_edit(model: str) -> str:
    return "/approvals/policies" + (f"?edit={quote(model, safe='')}" if model else "")


@router.post("/approvals/policies/{model}/delete")
def delete_policy(ctx: AdminAction, model: str) -> Response:
    with ctx.write() as s:
        policies.delete_policy(s, ctx.actor, model)
    return ctx.redirect("/approvals/policies", f"{model} follows the default policy again.")


@router.post("/approvals/groups")
def create_group(
    ctx: AdminAction,
    group_name: Annotated[str, Form()] = "",
    group_members: Annotated[str, Form()] = "",
) -> Response:
    name = group_name.strip()
    try:
        with ctx.write() as s:
            policies.create_group(s, ctx.actor, name, None, _split(group_members))
    except PodstackError as exc:
        errors = form_errors(
            exc,
            "group_name" if exc.status == 409 else "group_members",
            rename={"name": "group_name"},
            fields={"group_name"},
        )
        return _policies_page(ctx, group_errors=errors, status=exc.status)
    return ctx.redirect("/approvals/policies#groups", f"Group {name} created.")


@router.post("/approvals/groups/{name}/members")
def add_member(ctx: AdminAction, name: str, username: Annotated[str, Form()] = "") -> Response:
    try:
        with ctx.write() as s:
            policies.add_member(s, ctx.actor, name, username.strip())
    except PodstackError as exc:
        return ctx.redirect("/approvals/policies#groups", exc.message, "error")
    return ctx.redirect("/approvals/policies#groups", f"{username.strip()} added to {name}.")


@router.post("/approvals/groups/{name}/members/{username}/delete")
def remove_member(ctx: AdminAction, name: str, username: str) -> Response:
    with ctx.write() as s:
        policies.remove_member(s, ctx.actor, name, username)
    return ctx.redirect("/approvals/policies#groups", f"{username} removed from {name}.")


@router.post("/approvals/groups/{name}/delete")
def delete_group(ctx: AdminAction, name: str) -> Response:
    try:
        with ctx.write() as s:
            policies.delete_group(s, ctx.actor, name)
    except PodstackError as exc:
        return ctx.redirect("/approvals/policies#groups", exc.message, "error")
    return ctx.redirect("/approvals/policies#groups", f"Group {name} deleted.")


# ---------------------------------------------------------------- requests


def _detail(ctx: WebCtx, request_id: str) -> sch.ApprovalRequestDetail:
    with ctx.read() as s:
        return views.request_detail(s, ctx.principal, service.get_request(s, request_id))


def _metric_rows(d: sch.ApprovalRequestDetail) -> list[dict[str, Any]]:
    if d.metrics is None:
        return []
    mine, prod = d.metrics.metrics, d.metrics.production_metrics
    rows = []
    for key in sorted(set(mine) | set(prod)):
        a, b = mine.get(key), prod.get(key)
        rows.append(
            {
                "key": key,
                "value": a,
                "production": b,
                "delta": (a - b) if a is not None and b is not None else None,
            }
        )
    return rows


def _render_detail(
    ctx: WebCtx,
    request_id: str,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
    open_dialog: str | None = None,
    comment: str = "",
) -> Response:
    d = _detail(ctx, request_id)
    return ctx.render(
        "approvals/detail.html",
        status_code=status,
        section="approvals",
        r=d,
        metric_rows=_metric_rows(d),
        gates=d.current_gate_results if d.status == "pending" else d.gate_results,
        errors=errors or {},
        open_dialog=open_dialog,
        comment=comment,
        me=ctx.actor,
    )


@router.get("/approvals/{request_id}")
def request_page(ctx: ViewerPage, request_id: str) -> Response:
    return _render_detail(ctx, request_id)


def _decision_form(
    ctx: WebCtx, request_id: str, action: str, error: PodstackError, comment: str
) -> Response:
    """A refused decision re-rendered in its dialog (htmx), or the page with the dialog open."""
    errors = form_errors(error, fields={"comment"})
    status = 422 if error.status in (400, 422) else error.status
    if ctx.htmx:
        return ctx.render(
            "approvals/_decision_form.html",
            status_code=status,
            r=_detail(ctx, request_id),
            action=action,
            errors=errors,
            comment=comment,
        )
    return _render_detail(
        ctx,
        request_id,
        errors=errors,
        status=status,
        open_dialog=f"{action}-dialog",
        comment=comment,
    )


@router.post("/approvals/{request_id}/approve")
def approve(ctx: ViewerAction, request_id: str, comment: Annotated[str, Form()] = "") -> Response:
    try:
        # Committed on its own so a request found stale stays stale (as in the REST API).
        with ctx.write() as s:
            service.refresh(s, request_id)
        with ctx.write() as s:
            req = service.approve(
                s, ctx.principal, request_id, comment.strip() or None, state=ctx.state
            )
            view = views.request_views(s, [req])[0]
    except PodstackError as exc:
        if exc.status == 409:
            # The page shows why (stale, already decided); the toast says what happened.
            return ctx.redirect(request_url(request_id), exc.message, "error")
        if exc.status == 422:
            return _decision_form(ctx, request_id, "approve", exc, comment)
        raise
    if view.status == "approved" and view.kind != "stage":
        return ctx.redirect(request_url(request_id), f"Approved and carried out: {view.id}.")
    if view.status == "approved":
        moved = f"{view.model_name} v{view.version} is now in {view.to_stage}."
        return ctx.redirect(request_url(request_id), f"Approved: {moved}")
    return ctx.redirect(
        request_url(request_id),
        f"Approval recorded ({view.approvals} of {view.required_approvals}); still pending.",
    )


@router.post("/approvals/{request_id}/reject")
def reject(ctx: ViewerAction, request_id: str, comment: Annotated[str, Form()] = "") -> Response:
    try:
        with ctx.write() as s:
            service.reject(s, ctx.principal, request_id, comment)
    except PodstackError as exc:
        if exc.status == 409:
            return ctx.redirect(request_url(request_id), exc.message, "error")
        if exc.status == 422:
            return _decision_form(ctx, request_id, "reject", exc, comment)
        raise
    return ctx.redirect(request_url(request_id), "Request rejected; the requester is notified.")


@router.post("/approvals/{request_id}/cancel")
def cancel(ctx: ViewerAction, request_id: str) -> Response:
    try:
        with ctx.write() as s:
            service.cancel(s, ctx.principal, request_id)
    except PodstackError as exc:
        if exc.status == 409:
            return ctx.redirect(request_url(request_id), exc.message, "error")
        raise
    return ctx.redirect(request_url(request_id), "Request cancelled.")


@router.post("/approvals/{request_id}/comments")
def add_comment(ctx: ViewerAction, request_id: str, body: Annotated[str, Form()] = "") -> Response:
    try:
        with ctx.write() as s:
            service.add_comment(s, ctx.actor, request_id, body)
    except PodstackError as exc:
        if exc.status == 422:
            return _render_detail(
                ctx, request_id, errors={"body": exc.message}, status=422, comment=body
            )
        raise
    return ctx.redirect(request_url(request_id) + "#comments", "Comment added.")


# ---------------------------------------------------------------- notifications


@router.get("/notifications/bell")
def bell(ctx: ViewerPage) -> Response:
    with ctx.read() as s:
        unread = notifications.unread_count(s, ctx.principal.user_id)
    return ctx.render("notifications/_bell.html", unread=unread, loaded=True)


@router.get("/notifications")
def notifications_page(
    ctx: ViewerPage, unread: bool = False, page_token: str | None = None
) -> Response:
    with ctx.read() as s:
        rows, token = notifications.list_notifications(
            s, ctx.principal.user_id, unread_only=unread, limit=50, page_token=page_token
        )
        items = [nsch.Notification.model_validate(n) for n in rows]
        count = notifications.unread_count(s, ctx.principal.user_id)
    return ctx.render(
        "notifications/list.html",
        section="notifications",
        items=items,
        unread_only=unread,
        unread=count,
        next_page_token=token,
    )


@router.get("/notifications/{notification_id}/open")
def open_notification(ctx: ViewerPage, notification_id: int) -> Response:
    """Follows a notification's link, marking it read on the way."""
    with ctx.write() as s:
        note = notifications.open_notification(s, ctx.principal.user_id, notification_id)
        link = note.link
    return RedirectResponse(safe_next(link, "/notifications"), status_code=303)


@router.post("/notifications/read")
def mark_all_read(ctx: ViewerAction) -> Response:
    with ctx.write() as s:
        n = notifications.mark_read(s, ctx.principal.user_id, [], True)
    return ctx.redirect("/notifications", f"Marked {n} notification(s) read.")

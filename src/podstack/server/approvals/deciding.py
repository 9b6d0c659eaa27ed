"""Deciding approval requests: approve (reaching the quorum completes the request: a stage
request applies its transition through the registry's ``apply_transition``, any other is
carried out by ``carry_out``), reject (needs a comment), cancel (requester or admin), and
comments on the request's thread.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from podstack.server.approvals import repository as repo
from podstack.server.approvals.carry_out import carry_out
from podstack.server.approvals.models import ApprovalComment, ApprovalRequest, ApprovalVote
from podstack.server.approvals.requests import (
    STAGE,
    SYSTEM,
    describe,
    evaluate,
    event_payload,
    get_request,
    link,
    record_comment,
    require_pending,
    require_reviewer,
)
from podstack.server.audit import service as audit
from podstack.server.auth.principal import Principal
from podstack.server.db.base import utcnow
from podstack.server.events import service as events
from podstack.server.notifications import service as notifications
from podstack.server.permissions import service as permissions
from podstack.server.registry import lookup, stages


def approve(
    s: Session,
    principal: Principal,
    request_id: str,
    comment: str | None = None,
    *,
    state: Any = None,
) -> ApprovalRequest:
    """Call ``refresh`` in a committed transaction first (the endpoint does) so a request that
    went stale is recorded as such before this refuses it."""
    me = principal.username
    _lock_targets(s, get_request(s, request_id))
    req = get_request(s, request_id, for_update=True)
    require_pending(req, "approve")
    require_reviewer(s, req, me, "approve")
    if repo.get_vote(s, req.id, me) is not None:
        raise Conflict(
            f"You already approved request {req.id}; it needs "
            f"{req.required_approvals} approval(s) from different reviewers.",
            {"request_id": req.id},
        )
    check = evaluate(s, req)
    if check.stale_reason:
        raise Conflict(
            f"Request {req.id} cannot be approved: {check.stale_reason}",
            {"request_id": req.id, "status": "stale"},
        )
    now = utcnow()
    comment = (comment or "").strip() or None
    s.add(ApprovalVote(request_id=req.id, reviewer=me, decision="approve", comment=comment, at=now))
    record_comment(s, req, me, "approve", comment)
    req.gate_results = [r.as_dict() for r in check.results]
    req.updated_at = now
    s.flush()
    approved_by = [
        v.reviewer for v in repo.votes_of(s, [req.id])[req.id] if v.decision == "approve"
    ]
    audit.record(
        s,
        me,
        "approval_request.approve",
        "approval_request",
        req.id,
        None,
        {"comment": comment, "approvals": len(approved_by), "required": req.required_approvals},
    )
    if len(approved_by) >= req.required_approvals:
        _complete(s, req, me, approved_by, state)
    return req


def _lock_targets(s: Session, req: ApprovalRequest) -> None:
    """Takes the registry's locks (model, then version) before the request's own row: the
    registry's transitions and deletes lock in that order and then reach pending requests
    through the event sink, so one lock order everywhere means no deadlock."""
    try:
        lookup.get_model(s, req.model_name, for_update=True)
        lookup.get_version(s, req.model_name, req.version, for_update=True)
    except NotFound:
        pass  # gone: the approval is refused as stale below


def _complete(
    s: Session, req: ApprovalRequest, me: str, approved_by: list[str], state: Any = None
) -> None:
    req.status = "approved"
    req.status_reason = f"Approved by {', '.join(approved_by)}."
    req.decided_at = utcnow()
    req.decided_by = me
    if req.kind != STAGE:
        # As the server: the requester needed EDIT to ask, the reviewers were named by the
        # policy; neither needs a grant for the change itself.
        with permissions.unrestricted(s):
            carry_out(s, req, state)
        record_comment(s, req, SYSTEM, "applied", f"Carried out: {describe(req)}.")
        _tell_requester_approved(s, req, approved_by, "carried out")
        return
    events.emit(s, "stage.transition_approved", event_payload(req, approved_by=approved_by), me)
    # Recorded as the requester's transition (they asked for it), linked to this request.
    with permissions.unrestricted(s):
        stages.apply_transition(
            s,
            req.requester,
            req.model_name,
            req.version,
            req.to_stage,
            note=req.note or f"Approved in request {req.id}.",
            archive_existing=req.archive_existing,
            request_id=req.id,
        )
    record_comment(
        s,
        req,
        SYSTEM,
        "applied",
        f"Version {req.version} moved from {req.from_stage} to {req.to_stage}.",
    )
    _tell_requester_approved(s, req, approved_by, "the transition was applied")


def _tell_requester_approved(
    s: Session, req: ApprovalRequest, approved_by: list[str], outcome: str
) -> None:
    body = f"Your request was approved by {', '.join(approved_by)} and {outcome}."
    _tell_requester(s, req, "approval.approved", f"Approved: {describe(req)}", body)


def _tell_requester(s: Session, req: ApprovalRequest, kind: str, title: str, body: str) -> None:
    """A decision notice to the requester, in the app and by email."""
    users = notifications.notify(
        s,
        [req.requester],
        kind,
        title,
        body=body,
        link=link(req.id),
        data={"request_id": req.id},
        model_id=req.model_id,
    )
    notifications.enqueue_email(
        s, users, f"[Podstack] {title}", body, link=link(req.id), model_id=req.model_id
    )


def reject(
    s: Session, principal: Principal, request_id: str, comment: str | None
) -> ApprovalRequest:
    me = principal.username
    req = get_request(s, request_id, for_update=True)
    require_pending(req, "reject")
    require_reviewer(s, req, me, "reject")
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed(
            "A comment is required to reject a request: say what must change so the requester "
            "can act on it.",
            {"field": "comment", "request_id": req.id},
        )
    now = utcnow()
    s.add(ApprovalVote(request_id=req.id, reviewer=me, decision="reject", comment=comment, at=now))
    record_comment(s, req, me, "reject", comment)
    req.status = "rejected"
    req.status_reason = f"Rejected by {me}: {comment}"
    req.decided_at = now
    req.decided_by = me
    req.updated_at = now
    audit.record(
        s,
        me,
        "approval_request.reject",
        "approval_request",
        req.id,
        {"status": "pending"},
        {"status": "rejected", "comment": comment},
    )
    events.emit(
        s, "stage.transition_rejected", event_payload(req, rejected_by=me, comment=comment), me
    )
    body = f"{me} rejected your request:\n\n{comment}"
    _tell_requester(s, req, "approval.rejected", f"Rejected: {describe(req)}", body)
    return req


def cancel(
    s: Session, principal: Principal, request_id: str, comment: str | None = None
) -> ApprovalRequest:
    req = get_request(s, request_id, for_update=True)
    me = principal.username
    if me != req.requester and not principal.has_role("admin"):
        raise PermissionDenied(
            f"Only the requester ({req.requester}) or an admin can cancel request {req.id}.",
            {"request_id": req.id, "requester": req.requester},
        )
    require_pending(req, "cancel")
    comment = (comment or "").strip() or None
    now = utcnow()
    req.status = "cancelled"
    req.status_reason = f"Cancelled by {me}" + (f": {comment}" if comment else ".")
    req.decided_at = now
    req.decided_by = me
    req.updated_at = now
    record_comment(s, req, me, "cancel", comment)
    audit.record(
        s,
        me,
        "approval_request.cancel",
        "approval_request",
        req.id,
        {"status": "pending"},
        {"status": "cancelled", "comment": comment},
    )
    if me != req.requester:
        notifications.notify(
            s,
            [req.requester],
            "approval.cancelled",
            f"Cancelled: {describe(req)}",
            body=req.status_reason,
            link=link(req.id),
            data={"request_id": req.id},
            model_id=req.model_id,
        )
    return req


def add_comment(s: Session, actor: str, request_id: str, body: str) -> ApprovalComment:
    req = get_request(s, request_id)
    text = (body or "").strip()
    if not text:
        raise ValidationFailed("A comment cannot be empty.", {"field": "body"})
    c = record_comment(s, req, actor, "comment", text)
    s.flush()
    audit.record(
        s, actor, "approval_request.comment", "approval_request", req.id, None, {"comment": text}
    )
    # Tell the people in the conversation (requester, voters, earlier commenters).
    involved = {req.requester} | {v.reviewer for v in repo.votes_of(s, [req.id])[req.id]}
    involved |= {x.author for x in repo.comments_of(s, req.id) if x.author != SYSTEM}
    involved.discard(actor)
    notifications.notify(
        s,
        involved,
        "approval.comment",
        f"{actor} commented on {describe(req)}",
        body=text,
        link=link(req.id),
        data={"request_id": req.id},
        model_id=req.model_id,
    )
    return c

"""Approval request rules, each in one place.

- A transition into a stage the model's policy gates is taken over by ``transition_gate``
  (registered with the registry in ``sinks.py``): it opens a request instead of applying.
  ``create_request`` opens one explicitly (also for stages that are not gated).
- Opening checks the policy's metric gates (a failing gate refuses with GATE_FAILED) and that
  enough reviewers other than the requester exist to ever reach the quorum.
- Nobody approves their own request; only eligible reviewers decide; a rejection needs a
  comment; the requester (or an admin) may cancel.
- When approvals reach the quorum the transition is applied in the same transaction through
  the registry's ``apply_transition`` with the request id.
- A pending request goes stale when its version changes stage or is deleted (``sinks.py``
  reacts to those events) or when its gates fail at approval time (``refresh``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from podstack.errors import Conflict, GateFailed, NotFound, PermissionDenied, ValidationFailed
from podstack.schemas import approvals as sch
from podstack.server.approvals import gates as gate_rules
from podstack.server.approvals import policies, versions
from podstack.server.approvals import repository as repo
from podstack.server.approvals.models import ApprovalComment, ApprovalRequest, ApprovalVote
from podstack.server.audit import service as audit
from podstack.server.auth.principal import Principal
from podstack.server.db.base import new_id, utcnow
from podstack.server.events import service as events
from podstack.server.notifications import service as notifications
from podstack.server.pagination import clamp_limit, decode_token, page_of
from podstack.server.registry import service as registry
from podstack.server.registry.hooks import Interception, TransitionProposal
from podstack.server.registry.models import ModelVersion, RegisteredModel
from podstack.server.registry.rules import EXCLUSIVE_STAGES

SYSTEM = "system"
STATUSES = sch.REQUEST_STATUSES


def link(request_id: str) -> str:
    return f"/approvals/{request_id}"


def _what(req: ApprovalRequest) -> str:
    return f"{req.model_name} v{req.version} {req.from_stage} → {req.to_stage}"


# ---------------------------------------------------------------- reading


def get_request(s: Session, request_id: str, *, for_update: bool = False) -> ApprovalRequest:
    req = repo.get_request(s, request_id, for_update=for_update)
    if req is None:
        raise NotFound(
            f"Approval request {request_id!r} does not exist.", {"request_id": request_id}
        )
    return req


def list_requests(
    s: Session,
    *,
    status: str | Sequence[str] | None = None,
    model_name: str | None = None,
    requester: str | None = None,
    limit: int | None = None,
    page_token: str | None = None,
) -> tuple[list[ApprovalRequest], str | None]:
    statuses = [status] if isinstance(status, str) else list(status or [])
    statuses = [x.strip().lower() for x in statuses if x and x.strip()]
    for st in statuses:
        if st not in STATUSES:
            raise ValidationFailed(
                f"Unknown request status {st!r}; valid: {', '.join(STATUSES)}.",
                {"field": "status", "valid": list(STATUSES)},
            )
    n = clamp_limit(limit)
    key = decode_token(page_token, 2)
    after = None
    if key is not None:
        try:
            after = (datetime.fromisoformat(str(key[0])), str(key[1]))
        except ValueError:
            raise ValidationFailed("Invalid page_token.", {"page_token": page_token})
    rows = repo.list_requests(
        s, statuses=statuses, model_name=model_name, requester=requester, limit=n, after=after
    )
    return page_of(rows, n, lambda r: [r.created_at.isoformat(), r.id])


def pending_count(s: Session) -> int:
    return repo.count_pending(s)


def reviewers_of(s: Session, req: ApprovalRequest) -> list[str]:
    return policies.eligible_reviewers(s, req.reviewer_users, req.reviewer_groups)


# ---------------------------------------------------------------- checks


@dataclass
class Check:
    results: list[gate_rules.GateResult]
    stale_reason: str | None


def version_row(s: Session, req: ApprovalRequest) -> ModelVersion | None:
    if req.version_id is None:
        return None
    return s.get(ModelVersion, req.version_id)


def evaluate(s: Session, req: ApprovalRequest) -> Check:
    """Is the request still approvable? (version exists, still in from_stage, gates pass)"""
    mv = version_row(s, req)
    if mv is None:
        return Check([], f"Version {req.version} of {req.model_name!r} was deleted.")
    if mv.stage != req.from_stage:
        return Check(
            [],
            f"Version {req.version} moved from {req.from_stage} to {mv.stage} after the "
            "request was made.",
        )
    results = gate_rules.evaluate_all(
        req.gates, versions.version_metrics(s, mv), versions.production_metrics(s, mv)
    )
    failing = [r for r in results if not r.passed]
    if failing:
        return Check(results, "Gate now fails: " + "; ".join(r.message for r in failing))
    return Check(results, None)


def refresh(s: Session, request_id: str) -> ApprovalRequest:
    """Marks a pending request stale if it no longer can be approved. Run (and committed) in
    its own transaction before an approval, so the stale status survives the refusal."""
    req = get_request(s, request_id, for_update=True)
    if req.status == "pending":
        state = evaluate(s, req)
        if state.results:
            req.gate_results = [r.as_dict() for r in state.results]
        if state.stale_reason:
            mark_stale(s, req, state.stale_reason)
    return req


def mark_stale(s: Session, req: ApprovalRequest, reason: str, actor: str = SYSTEM) -> None:
    req.status = "stale"
    req.status_reason = reason
    req.updated_at = utcnow()
    _comment(s, req, actor, "stale", reason)
    audit.record(
        s,
        actor,
        "approval_request.stale",
        "approval_request",
        req.id,
        {"status": "pending"},
        {"status": "stale", "reason": reason},
    )
    notifications.notify(
        s,
        [req.requester],
        "approval.stale",
        f"Your request {_what(req)} became stale",
        body=reason,
        link=link(req.id),
        data={"request_id": req.id},
    )


def _require_pending(req: ApprovalRequest, action: str) -> None:
    if req.status != "pending":
        why = f" ({req.status_reason})" if req.status_reason else ""
        raise Conflict(
            f"Cannot {action} request {req.id}: it is already {req.status}{why}. Only pending "
            "requests can be decided; open a new request if the change is still wanted.",
            {"request_id": req.id, "status": req.status},
        )


def _require_reviewer(s: Session, req: ApprovalRequest, who: str, action: str) -> None:
    if who == req.requester:
        raise PermissionDenied(
            f"You cannot {action} your own request {req.id}; another reviewer must decide it"
            + (" (you may cancel it)." if action == "approve" else "."),
            {"request_id": req.id, "requester": req.requester},
        )
    reviewers = [u for u in reviewers_of(s, req) if u != req.requester]
    if who not in reviewers:
        shown = ", ".join(reviewers) or "nobody"
        raise PermissionDenied(
            f"{who} is not a designated reviewer of request {req.id}. Reviewers: {shown}.",
            {"request_id": req.id, "reviewers": reviewers},
        )


# ---------------------------------------------------------------- opening


def _validate_target(mv: ModelVersion, name: str, to_stage: str, archive_existing: bool) -> None:
    if archive_existing and to_stage not in EXCLUSIVE_STAGES:
        raise ValidationFailed(
            f"archive_existing applies to transitions into Staging or Production, not {to_stage}.",
            {"stage": to_stage, "archive_existing": True},
        )
    if mv.stage == to_stage:
        raise Conflict(
            f"Version {mv.version} of {name!r} is already in {to_stage}.",
            {"model_name": name, "version": mv.version, "stage": to_stage},
        )


def create_request(
    s: Session,
    actor: str,
    model_name: str,
    version: Any,
    stage: Any,
    *,
    note: str | None = None,
    archive_existing: bool = False,
) -> ApprovalRequest:
    to_stage = registry.normalize_stage(stage)
    m = registry.get_model(s, model_name)
    # A number or a models:/ reference; then the row is locked against concurrent requests.
    number = registry.resolve_in_model(s, m, version).version
    m, mv = registry.get_version(s, m.name, number, for_update=True)
    _validate_target(mv, m.name, to_stage, archive_existing)
    existing = repo.pending_for_version(s, mv.id)
    if existing is not None:
        raise Conflict(
            f"Version {mv.version} of {m.name!r} already has pending request {existing.id} "
            f"({existing.from_stage} → {existing.to_stage}); decide or cancel it first.",
            {"request_id": existing.id, "to_stage": existing.to_stage},
        )
    return _open(s, actor, m, mv, to_stage, note, archive_existing)


def _open(
    s: Session,
    actor: str,
    m: RegisteredModel,
    mv: ModelVersion,
    to_stage: str,
    note: str | None,
    archive_existing: bool,
) -> ApprovalRequest:
    policy = policies.effective_policy(s, m)
    reviewers = [
        u
        for u in policies.eligible_reviewers(s, policy.reviewers, policy.reviewer_groups)
        if u != actor
    ]
    if len(reviewers) < policy.required_approvals:
        raise Conflict(
            f"This request could never be approved: the approval policy of {m.name!r} needs "
            f"{policy.required_approvals} approval(s) from reviewers other than you, and only "
            f"{len(reviewers)} exist ({', '.join(reviewers) or 'none'}). Ask an admin to "
            "designate more reviewers.",
            {"model_name": m.name, "required": policy.required_approvals, "reviewers": reviewers},
        )
    results = gate_rules.evaluate_all(
        policy.gates, versions.version_metrics(s, mv), versions.production_metrics(s, mv)
    )
    failing = [r for r in results if not r.passed]
    if failing:
        raise GateFailed(
            f"Version {mv.version} of {m.name!r} does not meet the approval gates for "
            f"{to_stage}: " + "; ".join(r.message for r in failing),
            {"model_name": m.name, "version": mv.version, "gates": [r.as_dict() for r in results]},
        )
    now = utcnow()
    req = ApprovalRequest(
        id=new_id("apr"),
        model_id=m.id,
        model_name=m.name,
        version_id=mv.id,
        version=mv.version,
        from_stage=mv.stage,
        to_stage=to_stage,
        archive_existing=archive_existing,
        requester=actor,
        note=note,
        status="pending",
        required_approvals=policy.required_approvals,
        reviewer_users=policy.reviewers,
        reviewer_groups=policy.reviewer_groups,
        gates=policy.gates,
        gate_results=[r.as_dict() for r in results],
        created_at=now,
        updated_at=now,
    )
    try:
        with s.begin_nested():
            s.add(req)
            s.flush()
    except DBIntegrityError:
        # A concurrent requester opened one for this version first.
        raise Conflict(
            f"Version {mv.version} of {m.name!r} already has a pending request.",
            {"model_name": m.name, "version": mv.version},
        )
    _comment(s, req, actor, "request", note)
    audit.record(
        s,
        actor,
        "approval_request.create",
        "approval_request",
        req.id,
        None,
        {
            "model_name": m.name,
            "version": mv.version,
            "from_stage": req.from_stage,
            "to_stage": to_stage,
            "archive_existing": archive_existing,
            "note": note,
        },
    )
    events.emit(s, "stage.transition_requested", _payload(req, reviewers=reviewers), actor)
    title = f"{actor} requests {_what(req)}"
    body = (
        f"{actor} asks to move {m.name} version {mv.version} from {req.from_stage} to "
        f"{to_stage}. Needs {req.required_approvals} approval(s)."
        + (f"\n\nNote: {note}" if note else "")
    )
    users = notifications.notify(
        s,
        reviewers,
        "approval.requested",
        title,
        body=body,
        link=link(req.id),
        data={"request_id": req.id},
    )
    notifications.enqueue_email(
        s, users, f"[Podstack] Review requested: {_what(req)}", body, link=link(req.id)
    )
    return req


def _payload(req: ApprovalRequest, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": req.id,
        "model_name": req.model_name,
        "version": req.version,
        "from_stage": req.from_stage,
        "to_stage": req.to_stage,
        "archive_existing": req.archive_existing,
        "requester": req.requester,
        "note": req.note,
        "required_approvals": req.required_approvals,
        **extra,
    }


def interception(req: ApprovalRequest, *, existing: bool = False) -> Interception:
    prefix = "already waits in" if existing else "needs approval:"
    message = (
        f"Moving {req.model_name} version {req.version} to {req.to_stage} {prefix} request "
        f"{req.id} (pending, {req.required_approvals} approval(s) needed). It is applied "
        "automatically once approved."
    )
    return Interception(
        request_id=req.id,
        message=message,
        details={
            "request_id": req.id,
            "status": req.status,
            "model_name": req.model_name,
            "version": req.version,
            "from_stage": req.from_stage,
            "to_stage": req.to_stage,
            "required_approvals": req.required_approvals,
            "requester": req.requester,
        },
    )


def transition_gate(s: Session, p: TransitionProposal) -> Interception | None:
    """Registry hook: takes over transitions into stages the model's policy gates."""
    m = registry.get_model(s, p.model_name)
    policy = policies.effective_policy(s, m)
    if p.to_stage not in policy.gated_stages:
        return None
    _, mv = registry.get_version(s, p.model_name, p.version, for_update=True)
    existing = repo.pending_for_version(s, mv.id)
    if existing is not None:
        if existing.to_stage == p.to_stage:
            # Re-running a script must not pile up duplicate requests.
            return interception(existing, existing=True)
        raise Conflict(
            f"Version {mv.version} of {m.name!r} already has pending request {existing.id} "
            f"({existing.from_stage} → {existing.to_stage}); decide or cancel it first.",
            {"request_id": existing.id, "to_stage": existing.to_stage},
        )
    req = _open(s, p.actor, m, mv, p.to_stage, p.note, p.archive_existing)
    return interception(req)


# ---------------------------------------------------------------- deciding


def approve(
    s: Session, principal: Principal, request_id: str, comment: str | None = None
) -> ApprovalRequest:
    """Call ``refresh`` in a committed transaction first (the endpoint does) so a request that
    went stale is recorded as such before this refuses it."""
    me = principal.username
    _lock_targets(s, get_request(s, request_id))
    req = get_request(s, request_id, for_update=True)
    _require_pending(req, "approve")
    _require_reviewer(s, req, me, "approve")
    if repo.get_vote(s, req.id, me) is not None:
        raise Conflict(
            f"You already approved request {req.id}; it needs "
            f"{req.required_approvals} approval(s) from different reviewers.",
            {"request_id": req.id},
        )
    state = evaluate(s, req)
    if state.stale_reason:
        raise Conflict(
            f"Request {req.id} cannot be approved: {state.stale_reason}",
            {"request_id": req.id, "status": "stale"},
        )
    now = utcnow()
    comment = (comment or "").strip() or None
    s.add(ApprovalVote(request_id=req.id, reviewer=me, decision="approve", comment=comment, at=now))
    _comment(s, req, me, "approve", comment)
    req.gate_results = [r.as_dict() for r in state.results]
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
        _complete(s, req, me, approved_by)
    return req


def _lock_targets(s: Session, req: ApprovalRequest) -> None:
    """Takes the registry's locks (model, then version) before the request's own row: the
    registry's transitions and deletes lock in that order and then reach pending requests
    through the event sink, so one lock order everywhere means no deadlock."""
    try:
        registry.get_model(s, req.model_name, for_update=True)
        registry.get_version(s, req.model_name, req.version, for_update=True)
    except NotFound:
        pass  # gone: the approval is refused as stale below


def _complete(s: Session, req: ApprovalRequest, me: str, approved_by: list[str]) -> None:
    req.status = "approved"
    req.status_reason = f"Approved by {', '.join(approved_by)}."
    req.decided_at = utcnow()
    req.decided_by = me
    events.emit(s, "stage.transition_approved", _payload(req, approved_by=approved_by), me)
    # Recorded as the requester's transition (they asked for it), linked to this request.
    registry.apply_transition(
        s,
        req.requester,
        req.model_name,
        req.version,
        req.to_stage,
        note=req.note or f"Approved in request {req.id}.",
        archive_existing=req.archive_existing,
        request_id=req.id,
    )
    _comment(
        s,
        req,
        SYSTEM,
        "applied",
        f"Version {req.version} moved from {req.from_stage} to {req.to_stage}.",
    )
    title = f"Approved: {_what(req)}"
    body = f"Your request was approved by {', '.join(approved_by)} and the transition was applied."
    users = notifications.notify(
        s,
        [req.requester],
        "approval.approved",
        title,
        body=body,
        link=link(req.id),
        data={"request_id": req.id},
    )
    notifications.enqueue_email(s, users, f"[Podstack] {title}", body, link=link(req.id))


def reject(
    s: Session, principal: Principal, request_id: str, comment: str | None
) -> ApprovalRequest:
    me = principal.username
    req = get_request(s, request_id, for_update=True)
    _require_pending(req, "reject")
    _require_reviewer(s, req, me, "reject")
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed(
            "A comment is required to reject a request: say what must change so the requester "
            "can act on it.",
            {"field": "comment", "request_id": req.id},
        )
    now = utcnow()
    s.add(ApprovalVote(request_id=req.id, reviewer=me, decision="reject", comment=comment, at=now))
    _comment(s, req, me, "reject", comment)
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
    events.emit(s, "stage.transition_rejected", _payload(req, rejected_by=me, comment=comment), me)
    title = f"Rejected: {_what(req)}"
    body = f"{me} rejected your request:\n\n{comment}"
    users = notifications.notify(
        s,
        [req.requester],
        "approval.rejected",
        title,
        body=body,
        link=link(req.id),
        data={"request_id": req.id},
    )
    notifications.enqueue_email(s, users, f"[Podstack] {title}", body, link=link(req.id))
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
    _require_pending(req, "cancel")
    comment = (comment or "").strip() or None
    now = utcnow()
    req.status = "cancelled"
    req.status_reason = f"Cancelled by {me}" + (f": {comment}" if comment else ".")
    req.decided_at = now
    req.decided_by = me
    req.updated_at = now
    _comment(s, req, me, "cancel", comment)
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
            f"Cancelled: {_what(req)}",
            body=req.status_reason,
            link=link(req.id),
            data={"request_id": req.id},
        )
    return req


def add_comment(s: Session, actor: str, request_id: str, body: str) -> ApprovalComment:
    req = get_request(s, request_id)
    text = (body or "").strip()
    if not text:
        raise ValidationFailed("A comment cannot be empty.", {"field": "body"})
    c = _comment(s, req, actor, "comment", text)
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
        f"{actor} commented on {_what(req)}",
        body=text,
        link=link(req.id),
        data={"request_id": req.id},
    )
    return c


def _comment(
    s: Session, req: ApprovalRequest, author: str, kind: str, body: str | None
) -> ApprovalComment:
    c = ApprovalComment(request_id=req.id, author=author, kind=kind, body=body, at=utcnow())
    s.add(c)
    return c


# ---------------------------------------------------------------- staleness from events


def on_event(s: Session, event: events.Event) -> None:
    """Registry events that make pending requests unapprovable (same transaction)."""
    p = event.payload
    name = p.get("model_name")
    if not isinstance(name, str):
        return
    if event.type == "stage.transition_applied":
        for req in repo.pending_by_number(s, name, p.get("version")):
            if req.id != p.get("request_id"):
                mark_stale(
                    s,
                    req,
                    f"Version {req.version} moved from {p.get('from_stage')} to "
                    f"{p.get('to_stage')} (by {event.actor}) after the request was made.",
                )
    elif event.type == "version.deleted":
        for req in repo.pending_by_number(s, name, p.get("version")):
            mark_stale(s, req, f"Version {req.version} of {name!r} was deleted by {event.actor}.")
    elif event.type == "model.deleted":
        for req in repo.pending_by_number(s, name):
            mark_stale(s, req, f"Model {name!r} was deleted by {event.actor}.")

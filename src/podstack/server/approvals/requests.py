"""An approval request's record: its kinds and subjects, reading requests, whether a pending
one can still be approved (gate checks, staleness, including staleness caused by registry
events), its comment thread, and which approved request lets an endpoint serve a version.

Opening requests is in ``opening``, deciding them in ``deciding``; ``service`` re-exports the
whole public surface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from podstack.schemas import approvals as sch
from podstack.server.approvals import gates as gate_rules
from podstack.server.approvals import policies, versions
from podstack.server.approvals import repository as repo
from podstack.server.approvals.models import ApprovalComment, ApprovalRequest
from podstack.server.audit import service as audit
from podstack.server.db.base import utcnow
from podstack.server.events import service as events
from podstack.server.notifications import service as notifications
from podstack.server.pagination import clamp_limit, decode_token, page_of
from podstack.server.provenance import service as provenance
from podstack.server.registry.models import ModelVersion

SYSTEM = "system"
STATUSES = sch.REQUEST_STATUSES
STAGE, DEPLOYMENT, ALIAS = "stage", "deployment", "alias"
PRODUCTION = "Production"


def deployment_subject(endpoint: str) -> str:
    return f"deployment:{endpoint}"


def alias_subject(model_name: str, alias: str) -> str:
    return f"alias:{model_name}/{alias}"


def link(request_id: str) -> str:
    return f"/approvals/{request_id}"


def describe(req: ApprovalRequest) -> str:
    a = req.action or {}
    if req.kind == DEPLOYMENT:
        return f"endpoint {a.get('endpoint_name')}: serve {req.model_name} v{req.version}"
    if req.kind == ALIAS:
        if a.get("operation") == "delete":
            return f"{req.model_name}: delete alias {a.get('alias')} (v{req.version})"
        return f"{req.model_name}: move alias {a.get('alias')} to v{req.version}"
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
    if req.kind == STAGE and mv.stage != req.from_stage:
        return Check(
            [],
            f"Version {req.version} moved from {req.from_stage} to {mv.stage} after the "
            "request was made.",
        )
    results = gate_rules.evaluate_all(
        gates_of(req.kind, req.action, req.gates),
        versions.version_metrics(s, mv, req.requester),
        versions.production_metrics(s, mv, req.requester),
        provenance.valid_signers(s, mv),
    )
    failing = [r for r in results if not r.passed]
    if failing:
        return Check(results, "Gate now fails: " + gate_rules.failure_summary(failing))
    return Check(results, None)


def gates_of(kind: str, action: dict[str, Any] | None, gates: list[str]) -> list[str]:
    # Deleting an alias puts no version forward: there is nothing for metric gates to judge.
    if kind == ALIAS and (action or {}).get("operation") == "delete":
        return []
    return list(gates or [])


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
    record_comment(s, req, actor, "stale", reason)
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
        f"Your request {describe(req)} became stale",
        body=reason,
        link=link(req.id),
        data={"request_id": req.id},
        model_id=req.model_id,
    )


def require_pending(req: ApprovalRequest, action: str) -> None:
    if req.status != "pending":
        why = f" ({req.status_reason})" if req.status_reason else ""
        raise Conflict(
            f"Cannot {action} request {req.id}: it is already {req.status}{why}. Only pending "
            "requests can be decided; open a new request if the change is still wanted.",
            {"request_id": req.id, "status": req.status},
        )


def require_reviewer(s: Session, req: ApprovalRequest, who: str, action: str) -> None:
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


def record_comment(
    s: Session, req: ApprovalRequest, author: str, kind: str, body: str | None
) -> ApprovalComment:
    c = ApprovalComment(request_id=req.id, author=author, kind=kind, body=body, at=utcnow())
    s.add(c)
    return c


def event_payload(req: ApprovalRequest, **extra: Any) -> dict[str, Any]:
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


# ---------------------------------------------------------------- staleness from events


def on_event(s: Session, event: events.Event) -> None:
    """Registry events that make pending requests unapprovable (same transaction)."""
    p = event.payload
    name = p.get("model_name")
    if not isinstance(name, str):
        return
    if event.type == "stage.transition_applied":
        for req in repo.pending_by_number(s, name, p.get("version")):
            # Deployment/alias requests are about serving the version, not its stage label.
            if req.id != p.get("request_id") and req.kind == STAGE:
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


# ---------------------------------------------------------------- what is served


def approved_for(s: Session, endpoint: str, version_id: int) -> str | None:
    """The id of an approved request that let ``endpoint`` serve that version (a deployment
    request for the endpoint, or an alias move it followed), else None."""
    for req in repo.approved_for_version(s, version_id):
        if req.kind == DEPLOYMENT and req.subject == deployment_subject(endpoint):
            return req.id
        if req.kind == ALIAS and endpoint in (req.action or {}).get("endpoints", []):
            return req.id
    return None

"""Read models of approval requests: the wire objects for lists and the detail page (votes,
comments, gate results evaluated now, the version's metrics beside Production's, and what
the caller may do). Rules live in ``service.py`` (and the modules it re-exports)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from podstack.schemas import approvals as sch
from podstack.server.approvals import repository as repo
from podstack.server.approvals import requests, versions
from podstack.server.approvals.models import ApprovalRequest
from podstack.server.auth.principal import Principal
from podstack.server.registry.models import ModelVersion


def request_views(s: Session, reqs: Sequence[ApprovalRequest]) -> list[sch.ApprovalRequest]:
    votes = repo.votes_of(s, [r.id for r in reqs])
    # Requests under the same policy share their reviewer list: resolve each once.
    resolved: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
    out = []
    for r in reqs:
        key = (tuple(r.reviewer_users or ()), tuple(r.reviewer_groups or ()))
        if key not in resolved:
            resolved[key] = requests.reviewers_of(s, r)
        approved_by = [v.reviewer for v in votes[r.id] if v.decision == "approve"]
        view = sch.ApprovalRequest.model_validate(r)
        view.approvals = len(approved_by)
        view.approved_by = approved_by
        view.reviewers = [u for u in resolved[key] if u != r.requester]
        view.gate_results = [sch.GateResult.model_validate(g) for g in r.gate_results or []]
        out.append(view)
    return out


def request_detail(
    s: Session, principal: Principal, req: ApprovalRequest
) -> sch.ApprovalRequestDetail:
    base = request_views(s, [req])[0]
    detail = sch.ApprovalRequestDetail(**base.model_dump())
    detail.votes = [sch.ApprovalVote.model_validate(v) for v in repo.votes_of(s, [req.id])[req.id]]
    detail.comments = [sch.ApprovalComment.model_validate(c) for c in repo.comments_of(s, req.id)]
    mv = requests.version_row(s, req)
    if mv is not None:
        prod = versions.production_metrics(s, mv, req.requester)
        prod_mv = versions.production_version(s, mv)
        detail.metrics = sch.MetricsComparison(
            version=mv.version,
            metrics=versions.version_metrics(s, mv, req.requester),
            production_version=prod[0] if prod else None,
            production_metrics=prod[1] if prod else {},
            provenance=_provenance(s, mv, req.requester),
            production_provenance=_provenance(s, prod_mv, req.requester) if prod_mv else [],
        )
    if req.status == "pending":
        state = requests.evaluate(s, req)
        detail.current_gate_results = [
            sch.GateResult.model_validate(g.as_dict()) for g in state.results
        ]
        detail.blocked_reason = state.stale_reason
    detail.allowed_actions = allowed_actions(s, principal, req, base.reviewers)
    return detail


def _provenance(s: Session, mv: ModelVersion, requester: str) -> list[sch.MetricProvenance]:
    return [
        sch.MetricProvenance.model_validate(x.as_dict())
        for x in versions.metric_sources(s, mv, requester)
    ]


def allowed_actions(
    s: Session, principal: Principal, req: ApprovalRequest, reviewers: Sequence[str]
) -> list[str]:
    actions = ["comment"]
    if req.status != "pending":
        return actions
    me = principal.username
    if me != req.requester and me in reviewers and repo.get_vote(s, req.id, me) is None:
        actions += ["approve", "reject"]
    if me == req.requester or principal.has_role("admin"):
        actions.append("cancel")
    return actions

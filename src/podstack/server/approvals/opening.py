"""Opening approval requests: explicitly (``create_request``), by taking over a gated stage
transition (``transition_gate``, a registry hook), for a deployment change
(``request_change``, called by the deployments service) and for a gated alias change
(``alias_gate``, a registry hook). Opening refuses a request that could never be approved
(too few reviewers) or whose version fails the policy's metric gates.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from podstack.errors import ApprovalPending, Conflict, GateFailed
from podstack.server.approvals import gates as gate_rules
from podstack.server.approvals import policies, versions
from podstack.server.approvals import repository as repo
from podstack.server.approvals.models import ApprovalRequest
from podstack.server.approvals.requests import (
    ALIAS,
    PRODUCTION,
    STAGE,
    alias_subject,
    approved_for,
    describe,
    event_payload,
    gates_of,
    link,
    record_comment,
)
from podstack.server.audit import service as audit
from podstack.server.db.base import new_id, utcnow
from podstack.server.events import service as events
from podstack.server.notifications import service as notifications
from podstack.server.permissions import service as permissions
from podstack.server.provenance import service as provenance
from podstack.server.registry import lookup
from podstack.server.registry.hooks import AliasProposal, Interception, TransitionProposal
from podstack.server.registry.models import ModelVersion, RegisteredModel
from podstack.server.registry.rules import normalize_stage
from podstack.server.registry.stages import check_archive_existing


def _validate_target(mv: ModelVersion, name: str, to_stage: str, archive_existing: bool) -> None:
    check_archive_existing(to_stage, archive_existing)
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
    to_stage = normalize_stage(stage)
    m = lookup.get_model(s, model_name)
    permissions.require_model(s, m, permissions.EDIT)
    # A number or a models:/ reference; then the row is locked against concurrent requests.
    number = lookup.resolve_in_model(s, m, version).version
    m, mv = lookup.get_version(s, m.name, number, for_update=True)
    _validate_target(mv, m.name, to_stage, archive_existing)
    # A request to move a protected stage may only come from someone allowed to move it.
    permissions.require_stage_move(s, m, mv.stage, to_stage)
    existing = repo.pending_for_version(s, mv.id)
    if existing is not None:
        raise _already_pending(m, mv, existing)
    return _open(s, actor, m, mv, to_stage, note, archive_existing)


def _already_pending(m: RegisteredModel, mv: ModelVersion, existing: ApprovalRequest) -> Conflict:
    """A version has at most one pending stage request."""
    return Conflict(
        f"Version {mv.version} of {m.name!r} already has pending request {existing.id} "
        f"({existing.from_stage} → {existing.to_stage}); decide or cancel it first.",
        {"request_id": existing.id, "to_stage": existing.to_stage},
    )


def _open(
    s: Session,
    actor: str,
    m: RegisteredModel,
    mv: ModelVersion,
    to_stage: str,
    note: str | None,
    archive_existing: bool,
    *,
    kind: str = STAGE,
    subject: str | None = None,
    action: dict[str, Any] | None = None,
) -> ApprovalRequest:
    """Opens a request after checking it could ever be approved, then tells the reviewers."""
    policy = policies.effective_policy(s, m)
    reviewers = _reviewers_besides(s, m, policy, actor)
    results = _passing_gates(s, m, mv, policy, actor, kind, action, to_stage)
    now = utcnow()
    req = _insert(
        s,
        ApprovalRequest(
            id=new_id("apr"),
            kind=kind,
            subject=subject,
            action=action,
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
        ),
    )
    record_comment(s, req, actor, "request", note)
    _record_opened(s, actor, req)
    _ask_reviewers(s, actor, req, reviewers)
    return req


def _reviewers_besides(
    s: Session, m: RegisteredModel, policy: policies.Policy, actor: str
) -> list[str]:
    """The eligible reviewers other than the requester; refuses a request that could never
    reach its quorum."""
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
    return reviewers


def _passing_gates(
    s: Session,
    m: RegisteredModel,
    mv: ModelVersion,
    policy: policies.Policy,
    actor: str,
    kind: str,
    action: dict[str, Any] | None,
    to_stage: str,
) -> list[gate_rules.GateResult]:
    """The policy's metric gates evaluated for the version; refuses (GATE_FAILED) if any fails."""
    results = gate_rules.evaluate_all(
        gates_of(kind, action, policy.gates),
        versions.version_metrics(s, mv, actor),
        versions.production_metrics(s, mv, actor),
        provenance.valid_signers(s, mv),
    )
    failing = [r for r in results if not r.passed]
    if failing:
        goal = to_stage if kind == STAGE else f"this {kind} change"
        raise GateFailed(
            f"Version {mv.version} of {m.name!r} does not meet the approval gates for "
            f"{goal}: " + gate_rules.failure_summary(failing),
            {"model_name": m.name, "version": mv.version, "gates": [r.as_dict() for r in results]},
        )
    return results


def _insert(s: Session, req: ApprovalRequest) -> ApprovalRequest:
    try:
        with s.begin_nested():
            s.add(req)
            s.flush()
    except DBIntegrityError:
        # A concurrent requester opened one for this version (or endpoint / alias) first.
        what = f"Version {req.version} of {req.model_name!r}" if req.kind == STAGE else req.subject
        raise Conflict(
            f"{what} already has a pending request.",
            {"model_name": req.model_name, "version": req.version, "subject": req.subject},
        )
    return req


def _record_opened(s: Session, actor: str, req: ApprovalRequest) -> None:
    audit.record(
        s,
        actor,
        "approval_request.create",
        "approval_request",
        req.id,
        None,
        {
            "model_name": req.model_name,
            "version": req.version,
            "from_stage": req.from_stage,
            "to_stage": req.to_stage,
            "archive_existing": req.archive_existing,
            "note": req.note,
            "kind": req.kind,
            "subject": req.subject,
            "action": req.action,
        },
    )


def _ask_reviewers(s: Session, actor: str, req: ApprovalRequest, reviewers: list[str]) -> None:
    """The ``stage.transition_requested`` event (stage requests) and the reviewers' notices."""
    if req.kind == STAGE:
        events.emit(s, "stage.transition_requested", event_payload(req, reviewers=reviewers), actor)
        asks = (
            f"{actor} asks to move {req.model_name} version {req.version} from "
            f"{req.from_stage} to {req.to_stage}."
        )
    else:
        asks = f"{actor} asks for: {describe(req)}."
    title = f"{actor} requests {describe(req)}"
    body = f"{asks} Needs {req.required_approvals} approval(s)." + (
        f"\n\nNote: {req.note}" if req.note else ""
    )
    users = notifications.notify(
        s,
        reviewers,
        "approval.requested",
        title,
        body=body,
        link=link(req.id),
        data={"request_id": req.id},
        model_id=req.model_id,
    )
    notifications.enqueue_email(
        s,
        users,
        f"[Podstack] Review requested: {describe(req)}",
        body,
        link=link(req.id),
        model_id=req.model_id,
    )


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
    m = lookup.get_model(s, p.model_name)
    policy = policies.effective_policy(s, m)
    if p.to_stage not in policy.gated_stages:
        return None
    _, mv = lookup.get_version(s, p.model_name, p.version, for_update=True)
    existing = repo.pending_for_version(s, mv.id)
    if existing is not None:
        if existing.to_stage == p.to_stage:
            # Re-running a script must not pile up duplicate requests.
            return interception(existing, existing=True)
        raise _already_pending(m, mv, existing)
    req = _open(s, p.actor, m, mv, p.to_stage, p.note, p.archive_existing)
    return interception(req)


# ---------------------------------------------------------------- what is served


def _pending_error(req: ApprovalRequest, *, existing: bool = False) -> ApprovalPending:
    prefix = "already waits in" if existing else "needs approval and waits in"
    reviewers = ", ".join(req.reviewer_users or []) or None
    who = f" from {reviewers}" if reviewers else ""
    return ApprovalPending(
        f"Nothing changed: {describe(req)} {prefix} request {req.id} (pending, "
        f"{req.required_approvals} approval(s) needed{who}). It is carried out automatically "
        f"once approved; follow it at /approvals/{req.id}.",
        {
            "request_id": req.id,
            "status": req.status,
            "kind": req.kind,
            "subject": req.subject,
            "model_name": req.model_name,
            "version": req.version,
            "required_approvals": req.required_approvals,
            "requester": req.requester,
        },
    )


def request_change(
    s: Session,
    actor: str,
    *,
    kind: str,
    m: RegisteredModel,
    mv: ModelVersion,
    subject: str,
    action: dict[str, Any],
    note: str | None = None,
) -> ApprovalPending:
    """Opens (or finds the identical pending) request for a deployment/alias change and
    returns the ``ApprovalPending`` error for the caller to raise."""
    existing = repo.pending_for_subject(s, subject)
    if existing is not None:
        a = existing.action or {}
        if existing.version_id == mv.id and a.get("operation") == action.get("operation"):
            # Re-running a script must not pile up duplicate requests.
            return _pending_error(existing, existing=True)
        raise Conflict(
            f"{describe(existing)} already waits in pending request {existing.id}; decide or "
            "cancel it first.",
            {"request_id": existing.id, "subject": subject},
        )
    req = _open(s, actor, m, mv, mv.stage, note, False, kind=kind, subject=subject, action=action)
    return _pending_error(req)


def alias_gate(s: Session, p: AliasProposal) -> None:
    """Registry hook, asked before an alias is set, moved, rolled back or deleted: opens an
    ``alias`` request (raising ``ApprovalPending``) when the policy gates the alias, or when a
    production endpoint follows it and the new version is neither in Production nor approved
    for that endpoint."""
    # Imported here: deployments build on approvals (their production changes open requests).
    from podstack.server.deployments import governance as deployments

    m = lookup.get_model(s, p.model_name)
    policy = policies.effective_policy(s, m)
    gated = p.alias in policy.gated_aliases
    endpoints: list[str] = []
    mv: ModelVersion | None = None
    if p.version is not None:
        _, mv = lookup.get_version(s, m.name, p.version)
        for d in deployments.following_alias(s, m.id, p.alias):
            if d.production and mv.stage != PRODUCTION and approved_for(s, d.name, mv.id) is None:
                endpoints.append(d.name)
    elif p.previous_version is not None:
        _, mv = lookup.get_version(s, m.name, p.previous_version)
    if mv is None or not (gated or endpoints):
        return
    if p.version is not None:
        # Every endpoint following the alias rolls with it: each may then serve the approved
        # version (reviewers see them listed on the request).
        endpoints = sorted(d.name for d in deployments.following_alias(s, m.id, p.alias))
    raise request_change(
        s,
        p.actor,
        kind=ALIAS,
        m=m,
        mv=mv,
        subject=alias_subject(m.name, p.alias),
        action={
            "operation": p.operation,
            "alias": p.alias,
            "version": p.version,
            "previous_version": p.previous_version,
            "endpoints": endpoints,
            "gated_alias": gated,
        },
    )

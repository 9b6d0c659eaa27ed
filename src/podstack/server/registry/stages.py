"""Stage changes: the gated public entry (``transition_stage``), the primitive that applies a
change (``apply_transition``, which approvals call with ``request_id`` once a request is
approved), and each version's transition history. Every change is recorded in
``stage_transition`` so ``lookup.version_by_stage(..., at=...)`` can answer for any past date.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import ValidationFailed
from podstack.server.audit import service as audit
from podstack.server.db.base import utcnow
from podstack.server.events import service as events
from podstack.server.permissions import service as permissions
from podstack.server.registry import hooks
from podstack.server.registry import repository as repo
from podstack.server.registry.hooks import TransitionOutcome, TransitionProposal
from podstack.server.registry.lookup import get_model, get_version, version_ref
from podstack.server.registry.models import ModelVersion, RegisteredModel, StageTransition
from podstack.server.registry.rules import EXCLUSIVE_STAGES, normalize_stage


def transition_stage(
    s: Session,
    actor: str,
    name: str,
    version: Any,
    stage: Any,
    *,
    note: str | None = None,
    archive_existing: bool = False,
) -> TransitionOutcome:
    """The public entry for a requested stage change: validates, lets registered gates
    (approvals) take it over, otherwise applies it."""
    to_stage = normalize_stage(stage)
    check_archive_existing(to_stage, archive_existing)
    m, mv = get_version(s, name, version)
    permissions.require_model(s, m, permissions.EDIT)
    if mv.stage == to_stage and not (archive_existing and _others_in(s, mv, to_stage)):
        return TransitionOutcome(mv, applied=False)  # nothing to do, nothing to record
    # Before the gates: a caller who may not move versions into or out of a protected stage
    # gets 403, not an approval request.
    permissions.require_stage_move(s, m, mv.stage, to_stage)
    proposal = TransitionProposal(
        model_name=m.name,
        version=mv.version,
        from_stage=mv.stage,
        to_stage=to_stage,
        note=note,
        archive_existing=archive_existing,
        actor=actor,
    )
    for gate in hooks.TRANSITION_GATES:
        taken = gate(s, proposal)
        if taken is not None:
            return TransitionOutcome(mv, applied=False, interception=taken)
    mv = apply_transition(
        s, actor, name, mv.version, to_stage, note=note, archive_existing=archive_existing
    )
    return TransitionOutcome(mv, applied=True)


def check_archive_existing(to_stage: str, archive_existing: bool) -> None:
    if archive_existing and to_stage not in EXCLUSIVE_STAGES:
        raise ValidationFailed(
            f"archive_existing applies to transitions into Staging or Production, not {to_stage}.",
            {"stage": to_stage, "archive_existing": True},
        )


def _others_in(s: Session, mv: ModelVersion, stage: str) -> list[ModelVersion]:
    return [v for v in repo.versions_in_stage(s, mv.model_id, stage) if v.id != mv.id]


def apply_transition(
    s: Session,
    actor: str,
    name: str,
    version: Any,
    stage: Any,
    *,
    note: str | None = None,
    archive_existing: bool = False,
    request_id: str | None = None,
) -> ModelVersion:
    """The primitive that changes a version's stage (no gates): records the transition,
    archives the others in the target stage if asked (each recorded too), emits events."""
    to_stage = normalize_stage(stage)
    check_archive_existing(to_stage, archive_existing)
    # Lock the model row: two promotions with archive_existing must not both survive.
    m = get_model(s, name, for_update=True)
    _, mv = get_version(s, name, version, for_update=True)
    if request_id is not None and mv.stage != to_stage:
        # An approved request, applied as the requester's: they must still be allowed to move
        # a protected stage now (approval never bypasses protection). Archiving the others in
        # ``to_stage`` moves them out of that same stage, covered by this check.
        permissions.require_stage_move(s, m, mv.stage, to_stage, requester=actor)
    if archive_existing:
        for other in _others_in(s, mv, to_stage):
            _record_transition(
                s,
                actor,
                m,
                other,
                "Archived",
                note=f"Archived: version {mv.version} moved to {to_stage}.",
                request_id=request_id,
            )
    if mv.stage != to_stage:
        _record_transition(s, actor, m, mv, to_stage, note=note, request_id=request_id)
    m.updated_at = utcnow()
    return mv


def _record_transition(
    s: Session,
    actor: str,
    m: RegisteredModel,
    mv: ModelVersion,
    to_stage: str,
    *,
    note: str | None,
    request_id: str | None,
) -> None:
    now = utcnow()
    from_stage = mv.stage
    mv.stage = to_stage
    mv.stage_updated_at = now
    mv.updated_at = now
    repo.add_transition(
        s,
        StageTransition(
            model_id=m.id,
            version_id=mv.id,
            version=mv.version,
            from_stage=from_stage,
            to_stage=to_stage,
            actor=actor,
            at=now,
            note=note,
            request_id=request_id,
        ),
    )
    audit.record(
        s,
        actor,
        "version.transition",
        "model_version",
        version_ref(m, mv),
        {"stage": from_stage},
        {"stage": to_stage, "note": note, "request_id": request_id},
    )
    events.emit(
        s,
        "stage.transition_applied",
        {
            "model_name": m.name,
            "version": mv.version,
            "from_stage": from_stage,
            "to_stage": to_stage,
            "note": note,
            "request_id": request_id,
        },
        actor,
    )


def stage_history(
    s: Session, name: str, version: Any
) -> tuple[RegisteredModel, list[StageTransition]]:
    m, mv = get_version(s, name, version)
    return m, repo.transitions_of_version(s, mv.id)

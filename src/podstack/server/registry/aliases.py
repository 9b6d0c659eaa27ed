"""Alias changes: set (move), delete, list, roll back. Every move is recorded in
``alias_history`` so ``version_by_alias(..., at=...)`` can answer for any past date.

Resolution (``version_by_alias``, the reserved ``latest`` / ``v<N>``) lives in ``lookup``
with the other ``models:/`` resolution rules.

Before any change, the registered alias gates (``hooks.ALIAS_GATES``; approvals registers
one for ``gated_aliases`` and for aliases production endpoints follow) may refuse it by
raising ``errors.ApprovalPending``. An approved request carries the change out through
``carry_out`` (gates skipped, the request cited in the audit record).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import Conflict, ValidationFailed
from podstack.server.audit import service as audit
from podstack.server.db.base import utcnow
from podstack.server.events import service as events
from podstack.server.permissions import service as permissions
from podstack.server.registry import hooks
from podstack.server.registry import repository as repo
from podstack.server.registry.lookup import existing_alias, get_model, resolve_in_model
from podstack.server.registry.models import AliasHistory, ModelAlias, ModelVersion, RegisteredModel
from podstack.server.registry.rules import validate_alias


def drop_alias(
    s: Session, actor: str, m: RegisteredModel, a: ModelAlias, version: int | None, reason: str
) -> None:
    now = utcnow()
    alias = a.alias
    s.delete(a)
    _log_alias_change(s, actor, m, alias, "delete", None, version, now)
    audit.record(
        s,
        actor,
        "alias.delete",
        "registered_model",
        m.name,
        {"alias": alias, "version": version},
        {"reason": reason},
    )
    events.emit(
        s,
        "alias.deleted",
        {"model_name": m.name, "alias": alias, "version": version, "reason": reason},
        actor,
    )


def _log_alias_change(
    s: Session,
    actor: str,
    m: RegisteredModel,
    alias: str,
    kind: str,
    version: int | None,
    previous: int | None,
    now: datetime,
) -> None:
    """Appends the move to ``alias_history`` (what ``version_by_alias(..., at=...)`` and
    rollbacks replay) and touches the model."""
    repo.add_alias_history(
        s,
        AliasHistory(
            model_id=m.id,
            alias=alias,
            kind=kind,
            version=version,
            previous_version=previous,
            actor=actor,
            at=now,
        ),
    )
    m.updated_at = now
    s.flush()


def _gate(s: Session, proposal: hooks.AliasProposal, request_id: str | None) -> None:
    if request_id is None:
        for gate in hooks.ALIAS_GATES:
            gate(s, proposal)


def set_alias(
    s: Session,
    actor: str,
    name: str,
    alias: str,
    version: Any,
    *,
    request_id: str | None = None,
) -> tuple[RegisteredModel, ModelAlias, int]:
    validate_alias(alias)
    m = get_model(s, name, for_update=True)
    permissions.require_model(s, m, permissions.EDIT)
    mv = resolve_in_model(s, m, version, "an alias can only point at a version of its own model")
    current = repo.get_alias(s, m.id, alias)
    previous = None
    if current is not None:
        old = repo.versions_by_ids(s, [current.version_id]).get(current.version_id)
        previous = old.version if old else None
        if current.version_id == mv.id:
            return m, current, mv.version  # already there: nothing moves, nothing recorded
    # Before the gates: a caller who may not move a protected alias gets 403, not a request.
    permissions.require_alias_move(s, m, alias)
    _gate(s, hooks.AliasProposal(m.name, alias, "set", mv.version, previous, actor), request_id)
    _move_alias(
        s, actor, m, alias, mv, previous, kind="set", current=current, request_id=request_id
    )
    return m, repo.get_alias(s, m.id, alias), mv.version  # type: ignore[return-value]


def _move_alias(
    s: Session,
    actor: str,
    m: RegisteredModel,
    alias: str,
    mv: ModelVersion,
    previous: int | None,
    *,
    kind: str,
    current: ModelAlias | None,
    request_id: str | None = None,
) -> None:
    now = utcnow()
    if current is None:
        s.add(
            ModelAlias(
                model_id=m.id, alias=alias, version_id=mv.id, updated_by=actor, updated_at=now
            )
        )
    else:
        current.version_id = mv.id
        current.updated_by = actor
        current.updated_at = now
    _log_alias_change(s, actor, m, alias, kind, mv.version, previous, now)
    audit.record(
        s,
        actor,
        f"alias.{kind}",
        "registered_model",
        m.name,
        None if previous is None else {"alias": alias, "version": previous},
        {"alias": alias, "version": mv.version}
        | ({"approval_request": request_id} if request_id else {}),
    )
    events.emit(
        s,
        "alias.moved",
        {
            "model_name": m.name,
            "alias": alias,
            "version": mv.version,
            "previous_version": previous,
            "rollback": kind == "rollback",
            "request_id": request_id,
        },
        actor,
    )


def delete_alias(
    s: Session, actor: str, name: str, alias: str, *, request_id: str | None = None
) -> None:
    m = get_model(s, name, for_update=True)
    permissions.require_model(s, m, permissions.EDIT)
    a = existing_alias(s, m, alias)
    for guard in hooks.ALIAS_DELETE_GUARDS:
        guard(s, m, alias)
    mv = repo.versions_by_ids(s, [a.version_id]).get(a.version_id)
    previous = mv.version if mv else None
    permissions.require_alias_move(s, m, alias)
    _gate(s, hooks.AliasProposal(m.name, alias, "delete", None, previous, actor), request_id)
    drop_alias(s, actor, m, a, mv.version if mv else None, reason="deleted")


def list_aliases(s: Session, name: str) -> tuple[RegisteredModel, list[tuple[ModelAlias, int]]]:
    m = get_model(s, name)
    rows = repo.aliases_of_model(s, m.id)
    versions = repo.versions_by_ids(s, [a.version_id for a in rows])
    return m, [(a, versions[a.version_id].version) for a in rows]


def rollback_alias(
    s: Session, actor: str, name: str, alias: str, *, request_id: str | None = None
) -> tuple[RegisteredModel, ModelAlias, int]:
    """Moves the alias back to the version it pointed at before its current one. Repeated
    rollbacks keep walking back (the history is a stack: set pushes, rollback pops)."""
    m = get_model(s, name, for_update=True)
    permissions.require_model(s, m, permissions.EDIT)
    current = existing_alias(s, m, alias)
    permissions.require_alias_move(s, m, alias)
    stack: list[int] = []
    for row in repo.alias_history(s, m.id, alias):
        if row.kind == "set" and row.version is not None:
            stack.append(row.version)
        elif row.kind == "rollback" and row.version is not None:
            # Pop back to the version the rollback landed on (it may have skipped versions
            # deleted meanwhile).
            if stack:
                stack.pop()
            while stack and stack[-1] != row.version:
                stack.pop()
            if not stack:
                stack.append(row.version)
        elif row.kind == "delete":
            stack = []
    cur_mv = repo.versions_by_ids(s, [current.version_id])[current.version_id]
    if stack and stack[-1] == cur_mv.version:
        stack.pop()
    target: ModelVersion | None = None
    while stack:
        candidate = repo.get_version(s, m.id, stack.pop())
        if candidate is not None and candidate.id != cur_mv.id:
            target = candidate
            break
    if target is None:
        raise Conflict(
            f"Alias {alias!r} of {name!r} has no earlier version to roll back to: it points at "
            f"version {cur_mv.version} and no earlier target of it still exists.",
            {"model_name": name, "alias": alias, "version": cur_mv.version},
        )
    proposal = hooks.AliasProposal(m.name, alias, "rollback", target.version, cur_mv.version, actor)
    _gate(s, proposal, request_id)
    _move_alias(
        s,
        actor,
        m,
        alias,
        target,
        cur_mv.version,
        kind="rollback",
        current=current,
        request_id=request_id,
    )
    return m, current, target.version


def carry_out(s: Session, actor: str, name: str, action: dict[str, Any], request_id: str) -> None:
    """Makes an approved alias change (approvals calls this when the request is approved).
    The alias must still point where it did when the change was requested."""
    alias = str(action.get("alias"))
    op = action.get("operation")
    m = get_model(s, name, for_update=True)
    # Checked again for the requester now (the request may have waited while the alias was
    # protected or they left its group): approval never bypasses protection.
    permissions.require_alias_move(s, m, alias, requester=actor)
    current = repo.get_alias(s, m.id, alias)
    now_at = None
    if current is not None:
        row = repo.versions_by_ids(s, [current.version_id]).get(current.version_id)
        now_at = row.version if row else None
    if now_at != action.get("previous_version"):
        raise Conflict(
            f"Alias {alias!r} of {name!r} moved (it points at version {now_at}) since request "
            f"{request_id} was made (at {action.get('previous_version')}); reject this request "
            "and ask again if the change is still wanted.",
            {"request_id": request_id, "alias": alias, "version": now_at},
        )
    if op == "delete":
        delete_alias(s, actor, name, alias, request_id=request_id)
    elif op in ("set", "rollback"):
        mv = resolve_in_model(s, m, action.get("version"), "an alias points at its own model")
        kind = "rollback" if op == "rollback" else "set"
        _move_alias(
            s,
            actor,
            m,
            alias,
            mv,
            now_at,
            kind=kind,
            current=current,
            request_id=request_id,
        )
    else:
        raise ValidationFailed(f"Unknown alias operation {op!r} in request {request_id}.")

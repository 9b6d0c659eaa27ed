"""Alias changes: set (move), delete, list, roll back. Every move is recorded in
``alias_history`` so ``version_by_alias(..., at=...)`` can answer for any past date.

Resolution (``version_by_alias``, the reserved ``latest`` / ``v<N>``) lives in ``service``
with the other ``models:/`` resolution rules.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import Conflict
from podstack.server.audit import service as audit
from podstack.server.db.base import utcnow
from podstack.server.events import service as events
from podstack.server.registry import hooks
from podstack.server.registry import repository as repo
from podstack.server.registry.models import AliasHistory, ModelAlias, ModelVersion, RegisteredModel
from podstack.server.registry.rules import validate_alias
from podstack.server.registry.service import (
    drop_alias,
    existing_alias,
    get_model,
    resolve_in_model,
)


def set_alias(
    s: Session, actor: str, name: str, alias: str, version: Any
) -> tuple[RegisteredModel, ModelAlias, int]:
    validate_alias(alias)
    m = get_model(s, name, for_update=True)
    mv = resolve_in_model(s, m, version, "an alias can only point at a version of its own model")
    current = repo.get_alias(s, m.id, alias)
    previous = None
    if current is not None:
        old = repo.versions_by_ids(s, [current.version_id]).get(current.version_id)
        previous = old.version if old else None
        if current.version_id == mv.id:
            return m, current, mv.version  # already there: nothing moves, nothing recorded
    _move_alias(s, actor, m, alias, mv, previous, kind="set", current=current)
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
    repo.add_alias_history(
        s,
        AliasHistory(
            model_id=m.id,
            alias=alias,
            kind=kind,
            version=mv.version,
            previous_version=previous,
            actor=actor,
            at=now,
        ),
    )
    m.updated_at = now
    s.flush()
    audit.record(
        s,
        actor,
        f"alias.{kind}",
        "registered_model",
        m.name,
        None if previous is None else {"alias": alias, "version": previous},
        {"alias": alias, "version": mv.version},
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
        },
        actor,
    )


def delete_alias(s: Session, actor: str, name: str, alias: str) -> None:
    m = get_model(s, name, for_update=True)
    a = existing_alias(s, m, alias)
    for guard in hooks.ALIAS_DELETE_GUARDS:
        guard(s, m, alias)
    mv = repo.versions_by_ids(s, [a.version_id]).get(a.version_id)
    drop_alias(s, actor, m, a, mv.version if mv else None, reason="deleted")


def list_aliases(s: Session, name: str) -> tuple[RegisteredModel, list[tuple[ModelAlias, int]]]:
    m = get_model(s, name)
    rows = repo.aliases_of_model(s, m.id)
    versions = repo.versions_by_ids(s, [a.version_id for a in rows])
    return m, [(a, versions[a.version_id].version) for a in rows]


def rollback_alias(
    s: Session, actor: str, name: str, alias: str
) -> tuple[RegisteredModel, ModelAlias, int]:
    """Moves the alias back to the version it pointed at before its current one. Repeated
    rollbacks keep walking back (the history is a stack: set pushes, rollback pops)."""
    m = get_model(s, name, for_update=True)
    current = existing_alias(s, m, alias)
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
    _move_alias(s, actor, m, alias, target, cur_mv.version, kind="rollback", current=current)
    return m, current, target.version

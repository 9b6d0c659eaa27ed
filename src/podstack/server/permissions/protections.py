"""Protected aliases and stages of a registered model: every rule, once.

A model may mark aliases (``champion``) and stages (``Production``) as protected. Setting,
moving, rolling back or deleting a protected alias, and moving a version into or out of a
protected stage (including deleting a version that sits in one or that a protected alias
points at), needs MANAGE on the model (owners, MANAGE grantees, admins) or membership of the
protection's named group. It narrows, never widens: the ordinary EDIT check still runs first,
so a group member with a read-only grant cannot move anything.

Approval requests. The check is made twice, both times for the *requester*:

* when the move is asked for (``set_alias``, ``transition_stage``, an explicit stage request),
  before any approval gate, so a caller who may not move it gets 403 and no request is opened;
* when an approved request is carried out (``aliases.carry_out``, ``stages.apply_transition``
  with a request id), so a protection added, or a group membership lost, while the request
  waited still holds. Reviewers' approvals never stand in for the right to move a protected
  name: they only approve what an allowed requester asked for.

A session without a principal (background loops, the garbage collector) is the server itself
and is not checked, as everywhere in ``permissions``.

Protecting and unprotecting need MANAGE and are audited (``protection.set`` /
``protection.remove`` on the registered model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, PermissionDenied
from podstack.server.audit import service as audit
from podstack.server.auth.principal import Principal
from podstack.server.db.base import utcnow
from podstack.server.permissions import read_filter
from podstack.server.permissions import repository as repo
from podstack.server.permissions.levels import MANAGE, MODEL, NONE
from podstack.server.permissions.models import ModelProtection
from podstack.server.registry.models import RegisteredModel
from podstack.server.registry.rules import normalize_stage, validate_alias

ALIAS = "alias"
STAGE = "stage"


@dataclass
class Protections:
    aliases: list[ModelProtection]
    stages: list[ModelProtection]


# ---------------------------------------------------------------- the rule


def require_alias_move(
    s: Session, m: RegisteredModel, alias: str, *, requester: str | None = None
) -> None:
    """Refuses (403) unless the caller (or ``requester``, for an approved request being
    carried out) may move ``alias`` of ``m``; nothing to check when it is not protected."""
    _require(s, m, ALIAS, [alias], requester)


def require_stage_move(
    s: Session,
    m: RegisteredModel,
    from_stage: str | None,
    to_stage: str | None,
    *,
    requester: str | None = None,
) -> None:
    """Refuses (403) a move out of ``from_stage`` or into ``to_stage`` when either is protected
    and the caller (or ``requester``) may not move it. ``None`` for a side that does not apply
    (a version being deleted goes into no stage)."""
    names = [n for n in dict.fromkeys((from_stage, to_stage)) if n is not None]
    _require(s, m, STAGE, names, requester)


def require_version_removal(
    s: Session, m: RegisteredModel, stage: str, aliases: Sequence[str]
) -> None:
    """Deleting a version takes it out of its stage and drops the aliases pointing at it:
    the same moves, the same rule."""
    require_stage_move(s, m, stage, None)
    _require(s, m, ALIAS, list(aliases), None)


def _require(
    s: Session, m: RegisteredModel, kind: str, names: list[str], requester: str | None
) -> None:
    rows = repo.protections_among(s, m.id, kind, names)
    if not rows:
        return  # the common case: one indexed query, nothing protected
    if requester is None:
        principal = read_filter.principal_of(s)
        if principal is None:
            return  # the server itself (see the module docstring)
    else:
        principal = _principal_of_user(s, requester)
    held = _held(s, principal, m)
    if held == MANAGE:  # in their own right: the default permission does not count
        return
    for row in rows:
        # A scoped token (a job's) acts for its run only, never as a group member.
        if (
            row.group_name is not None
            and principal is not None
            and not principal.scope
            and repo.in_group(s, principal.user_id, row.group_name)
        ):
            continue
        raise _refusal(m, row, principal, requester, held)


def _principal_of_user(s: Session, username: str) -> Principal | None:
    """The requester of an approved request as they are now (role and groups today, not when
    they asked); None when they were deleted or disabled: nobody may act for them."""
    user = repo.user_by_name(s, username)
    if user is None or user.disabled:
        return None
    return Principal(username=user.username, role=user.role, user_id=user.id)


def _held(s: Session, principal: Principal | None, m: RegisteredModel) -> str:
    if principal is None:
        return NONE
    # Imported here: ``service`` re-exports this module.
    from podstack.server.permissions.service import effective

    # MANAGE in one's own right (service.own_manage): with the shipped default every editor
    # holds MANAGE, and a protection they could all move would protect nothing.
    return effective(s, principal, MODEL, m.id, include_default=False)


def who_may(m: RegisteredModel, row: Any) -> str:
    """``row``: a protection (ORM row or Core row: both have ``group_name``)."""
    group = f" or members of group {row.group_name!r}" if row.group_name else ""
    return (
        f"holders of MANAGE on {m.name!r} (its owner {m.created_by or 'unknown'}, MANAGE "
        f"grantees, admins){group}"
    )


def _refusal(
    m: RegisteredModel,
    row: Any,
    principal: Principal | None,
    requester: str | None,
    held: str,
) -> PermissionDenied:
    what = f"{row.kind} {row.name!r}" if row.kind == ALIAS else f"stage {row.name}"
    moves = "move it" if row.kind == ALIAS else "move versions into or out of it"
    if requester is None:
        who = f"you ({principal.username if principal else 'unknown'}) hold {held}"
    else:
        # Carrying out an approved request: the approvals do not replace the requester's right.
        who = (
            f"the requester ({requester}) may not (they hold {held} now), so the approved "
            "request cannot be carried out; reject it, or have an allowed user ask again"
        )
    return PermissionDenied(
        f"The {what} of registered model {m.name!r} is protected: only {who_may(m, row)} may "
        f"{moves}; {who}.",
        {
            "model_name": m.name,
            "protected": row.kind,
            "name": row.name,
            "group": row.group_name,
            "required_permission": MANAGE,
            "permission": held,
        },
    )


# ---------------------------------------------------------------- managing protections


def list_protections(s: Session, m: RegisteredModel) -> Protections:
    """Anyone who can read the model may see what is protected and by whom it may be moved
    (they need to know who to ask)."""
    rows = repo.protections_of(s, m.id)
    return Protections(
        aliases=[r for r in rows if r.kind == ALIAS],
        stages=[r for r in rows if r.kind == STAGE],
    )


def canonical_name(kind: str, name: str) -> str:
    """422 for a malformed alias (or a reserved one: ``latest`` and ``v<N>`` never move) or
    an unknown stage (listing the valid ones)."""
    if kind == ALIAS:
        return validate_alias(name)
    return normalize_stage(name)


def _doc(row: ModelProtection | None) -> dict[str, str | None] | None:
    if row is None:
        return None
    return {"kind": row.kind, "name": row.name, "group": row.group_name}


def protect(
    s: Session,
    principal: Principal | None,
    actor: str,
    m: RegisteredModel,
    kind: str,
    name: str,
    group: str | None,
) -> tuple[ModelProtection, bool]:
    """Marks the alias or stage protected (or changes its group). Returns the row and whether
    it is new."""
    name = canonical_name(kind, name)
    # Imported here: ``service`` re-exports this module.
    from podstack.server.permissions.service import require, require_own_manage

    require(s, principal, MODEL, m.id, MANAGE, ref=m.name)
    require_own_manage(s, principal, MODEL, m.id, m.name)
    if group is not None and not repo.group_exists(s, group):
        raise NotFound(
            f"Group {group!r} does not exist: it must be a reviewer group (GET "
            "/api/v1/reviewer-groups) or a directory group someone signed in with.",
            {"group": group},
        )
    row = repo.get_protection(s, m.id, kind, name)
    before = _doc(row)
    created = row is None
    now = utcnow()
    if row is None:
        row = ModelProtection(
            model_id=m.id,
            kind=kind,
            name=name,
            group_name=group,
            protected_by=actor,
            protected_at=now,
        )
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:
            raise Conflict(
                f"A concurrent request protected {kind} {name!r} of {m.name!r}; retry.",
                {"model_name": m.name, "kind": kind, "name": name},
            ) from None
    else:
        row.group_name = group
        row.protected_by = actor
        row.protected_at = now
        s.flush()
    audit.record(s, actor, "protection.set", "registered_model", m.name, before, _doc(row))
    return row, created


def unprotect(
    s: Session,
    principal: Principal | None,
    actor: str,
    m: RegisteredModel,
    kind: str,
    name: str,
) -> None:
    name = canonical_name(kind, name)
    from podstack.server.permissions.service import require, require_own_manage

    require(s, principal, MODEL, m.id, MANAGE, ref=m.name)
    require_own_manage(s, principal, MODEL, m.id, m.name)
    row = repo.get_protection(s, m.id, kind, name)
    if row is None:
        raise NotFound(
            f"The {kind} {name!r} of {m.name!r} is not protected "
            f"(GET /api/v1/registered-models/{m.name}/protections lists what is).",
            {"model_name": m.name, "kind": kind, "name": name},
        )
    before = _doc(row)
    s.delete(row)
    s.flush()
    audit.record(s, actor, "protection.remove", "registered_model", m.name, before, None)

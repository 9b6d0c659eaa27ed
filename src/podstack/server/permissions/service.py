"""Permissions on registered models and experiments: every rule, once.

Effective permission of a principal on a resource:

* an admin (global role) holds MANAGE everywhere (bypass);
* anyone else holds the highest of the server's default permission
  (``PODSTACK_DEFAULT_PERMISSION``), MANAGE when they own the resource (its ``created_by``),
  and every grant to them or to a group they are in;
* capped by the global role (``levels.ROLE_CAP``: a viewer reads at most).

A job token (scope ``run:<id>``) belongs to the scheduler's system user (an admin): its path
scope keeps it to its run's endpoints, and the read filter keeps its reads to that run and
the run's experiment; it may EDIT that experiment's run, nothing else.

``require`` answers a caller who cannot READ the resource with the resource's ordinary
``NotFound`` (they must not learn it exists) and one who can read but lacks the level with
``PermissionDenied``. Services call ``require_model`` / ``require_experiment`` with the row
they loaded and the session's principal (``Database.session(principal=...)``); a session
without a principal (background loops, start-up) is the server itself and is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from podstack.server.audit import service as audit
from podstack.server.auth.principal import Principal
from podstack.server.db.base import utcnow
from podstack.server.permissions import read_filter
from podstack.server.permissions import repository as repo
from podstack.server.permissions.levels import (
    EDIT,
    EXPERIMENT,
    GRANTABLE,
    GRANTEE_TYPES,
    GROUP,
    LEVELS,
    MANAGE,
    MODEL,
    NONE,
    READ,
    RESOURCE_TYPES,
    ROLE_CAP,
    USER,
    at_least,
    highest,
    lowest,
)
from podstack.server.permissions.models import ResourceGrant

# Protected aliases and stages: the registry and approvals call these on every path that
# moves an alias or a version's stage.
from podstack.server.permissions.protections import (
    require_alias_move,
    require_stage_move,
    require_version_removal,
)

principal_of = read_filter.principal_of
default_permission = read_filter.default_permission
unrestricted = read_filter.unrestricted
readable_clause = read_filter.readable_clause
is_restricted = read_filter.is_restricted


def _not_found(kind: str, ref: str) -> NotFound:
    # The very messages the registry and tracking answer for a resource that does not exist.
    if kind == MODEL:
        return NotFound(f"Registered model {ref!r} does not exist.", {"model_name": ref})
    return NotFound(f"Experiment {ref!r} does not exist.", {"experiment": ref})


def _label(kind: str) -> str:
    return "registered model" if kind == MODEL else "experiment"


def effective(
    session: Session,
    principal: Principal,
    kind: str,
    resource_id: Any,
    *,
    include_default: bool = True,
) -> str:
    """The principal's permission on the resource (NONE when it does not exist).
    ``include_default=False``: only what they hold in their own right (see ``own_manage``)."""
    exists, owner = repo.owner_of(session, kind, resource_id)
    if not exists:
        return NONE
    return _effective(session, principal, kind, resource_id, owner, include_default)


def own_manage(session: Session, principal: Principal | None, kind: str, resource_id: Any) -> bool:
    """MANAGE held in one's own right: as an admin, as the owner, or by a grant (to the user
    or a group of theirs), within the role's cap; never from the server's default permission.

    Changing grants and protections, and moving a protected alias or stage, need it. The
    shipped default (MANAGE for everyone: today's behaviour, any editor may change or delete
    any model) would otherwise let every editor move a protected ``champion`` and grant
    themselves anything, so marking a name protected would protect nothing."""
    if principal is None:
        return True  # the server itself
    held = effective(session, principal, kind, resource_id, include_default=False)
    return held == MANAGE


def require_own_manage(
    session: Session, principal: Principal | None, kind: str, resource_id: Any, ref: str
) -> None:
    if own_manage(session, principal, kind, resource_id):
        return
    assert principal is not None
    _, owner = repo.owner_of(session, kind, resource_id)
    raise PermissionDenied(
        f"Changing who may do what on {_label(kind)} {ref!r} needs MANAGE as its owner "
        f"({owner or 'unknown'}), by a grant or as an admin; you ({principal.username}) hold "
        f"it only through the server's default permission ({default_permission(session)}), "
        "which does not extend to grants and protections.",
        {"resource_type": kind, "resource": ref, "required_permission": MANAGE},
    )


def _effective(
    session: Session,
    principal: Principal,
    kind: str,
    resource_id: Any,
    owner: str | None,
    include_default: bool = True,
) -> str:
    run_id = read_filter.run_scope(principal)
    if run_id is not None:
        # A job token: its run's experiment only (see the module docstring).
        if kind == EXPERIMENT and _experiment_of_run(session, run_id) == resource_id:
            return EDIT
        return NONE
    if principal.role == "admin":
        return MANAGE
    held = [default_permission(session) if include_default else NONE]
    if owner is not None and owner == principal.username:
        held.append(MANAGE)
    else:
        held += repo.permissions_held(
            session, kind, resource_id, principal.username, principal.user_id
        )
    return lowest(highest(held), ROLE_CAP.get(principal.role, READ))


def _experiment_of_run(session: Session, run_id: str) -> str | None:
    from sqlalchemy import select

    runs = read_filter.RUNS
    return session.scalar(select(runs.c.experiment_id).where(runs.c.id == run_id))


def require(
    session: Session,
    principal: Principal | None,
    kind: str,
    resource_id: Any,
    level: str,
    *,
    ref: str | None = None,
) -> str:
    """Refuses unless ``principal`` holds ``level`` on the resource; returns what it holds.
    ``ref`` is the name the caller used (for the not-found message); default: the id."""
    ref = ref if ref is not None else str(resource_id)
    if principal is None:
        return MANAGE
    exists, owner = repo.owner_of(session, kind, resource_id)
    if not exists:
        raise _not_found(kind, ref)
    held = _effective(session, principal, kind, resource_id, owner)
    if not at_least(held, READ):
        raise _not_found(kind, ref)
    if not at_least(held, level):
        what = {EDIT: "change", MANAGE: "delete it or manage its permissions"}.get(level, "read")
        raise PermissionDenied(
            f"You ({principal.username}) hold {held} on {_label(kind)} {ref!r}; to {what} "
            f"you need {level}. Ask its owner ({owner or 'unknown'}) or an admin for a grant.",
            {
                "resource_type": kind,
                "resource": ref,
                "required_permission": level,
                "permission": held,
            },
        )
    return held


def _needs_check(session: Session, p: Principal | None, level: str) -> bool:
    """False when the answer is yes without a query: no principal (the server itself), an
    unscoped admin, or a default permission that already gives ``level`` within the role's
    cap (the shipped default: no query at all, today's cost)."""
    if p is None:
        return False
    if p.scope:
        return True
    if p.role == "admin":
        return False
    cap = ROLE_CAP.get(p.role, READ)
    return not at_least(lowest(default_permission(session), cap), level)


def require_model(session: Session, model: Any, level: str) -> None:
    """``require`` for the session's principal on a loaded ``RegisteredModel``."""
    p = principal_of(session)
    if _needs_check(session, p, level):
        require(session, p, MODEL, model.id, level, ref=model.name)


def require_experiment(
    session: Session, experiment: Any, level: str, *, ref: str | None = None
) -> None:
    """``require`` for the session's principal on a loaded ``Experiment``."""
    p = principal_of(session)
    if _needs_check(session, p, level):
        require(session, p, EXPERIMENT, experiment.id, level, ref=ref or experiment.id)


def require_experiment_id(session: Session, experiment_id: str, level: str) -> None:
    """``require`` for the session's principal on the experiment with this id."""
    p = principal_of(session)
    if _needs_check(session, p, level):
        require(session, p, EXPERIMENT, experiment_id, level)


def readers(session: Session, users: list[Any], kind: str, resource_id: Any) -> list[Any]:
    """The users (``auth.models.User`` rows) who may read the resource: who may be told about
    it (notifications, emails). ``resource_id`` None: about no resource, everyone."""
    if resource_id is None or at_least(default_permission(session), READ):
        # Every role reads at least READ when the default gives it: no query, today's cost.
        return list(users)
    exists, owner = repo.owner_of(session, kind, resource_id)
    if not exists:
        return []
    return [
        u
        for u in users
        if at_least(
            _effective(
                session,
                Principal(username=u.username, role=u.role, user_id=u.id),
                kind,
                resource_id,
                owner,
            ),
            READ,
        )
    ]


# ---------------------------------------------------------------- grants


@dataclass
class Permissions:
    owner: str | None
    default_permission: str
    grants: list[ResourceGrant]


def validate_level(permission: str) -> str:
    if permission not in GRANTABLE:
        raise ValidationFailed(
            f"Unknown permission {permission!r}; use one of {', '.join(GRANTABLE)}.",
            {"permission": permission, "valid": list(GRANTABLE)},
        )
    return permission


def validate_grantee_type(grantee_type: str) -> str:
    if grantee_type not in GRANTEE_TYPES:
        raise ValidationFailed(
            f"Unknown grantee type {grantee_type!r}; use 'user' or 'group'.",
            {"grantee_type": grantee_type, "valid": list(GRANTEE_TYPES)},
        )
    return grantee_type


def _check_kind(kind: str) -> None:
    if kind not in RESOURCE_TYPES:  # pragma: no cover - the endpoints pass constants
        raise ValueError(kind)


def _check_grantee(session: Session, grantee_type: str, grantee: str) -> None:
    if grantee_type == USER and not repo.user_exists(session, grantee):
        raise NotFound(
            f"User {grantee!r} does not exist; grants go to existing users or service "
            "accounts (see the Users page, or GET /api/v1/users).",
            {"grantee_type": grantee_type, "grantee": grantee},
        )
    if grantee_type == GROUP and not repo.group_exists(session, grantee):
        raise NotFound(
            f"Group {grantee!r} does not exist: it must be a reviewer group (GET "
            "/api/v1/reviewer-groups) or a directory group someone signed in with.",
            {"grantee_type": grantee_type, "grantee": grantee},
        )


def list_grants(
    session: Session, principal: Principal | None, kind: str, resource_id: Any, ref: str
) -> Permissions:
    """The owner, the default and the grants: for holders of MANAGE (they decide who may do
    what, so they see who does); anyone who can read the resource but not manage it gets 403."""
    _check_kind(kind)
    require(session, principal, kind, resource_id, MANAGE, ref=ref)
    _, owner = repo.owner_of(session, kind, resource_id)
    return Permissions(
        owner=owner,
        default_permission=default_permission(session),
        grants=repo.grants_of(session, kind, resource_id),
    )


def _grant_doc(g: ResourceGrant | None) -> dict[str, Any] | None:
    if g is None:
        return None
    return {"grantee_type": g.grantee_type, "grantee": g.grantee, "permission": g.permission}


def grant(
    session: Session,
    principal: Principal | None,
    actor: str,
    kind: str,
    resource_id: Any,
    ref: str,
    grantee_type: str,
    grantee: str,
    permission: str,
) -> tuple[ResourceGrant, bool]:
    """Gives ``grantee`` ``permission`` on the resource, replacing what it held. Returns the
    grant and whether it is new."""
    _check_kind(kind)
    validate_grantee_type(grantee_type)
    validate_level(permission)
    require(session, principal, kind, resource_id, MANAGE, ref=ref)
    require_own_manage(session, principal, kind, resource_id, ref)
    _check_grantee(session, grantee_type, grantee)
    row = repo.get_grant(session, kind, resource_id, grantee_type, grantee)
    before = _grant_doc(row)
    created = row is None
    now = utcnow()
    if row is None:
        row = repo.new_grant(
            kind,
            resource_id,
            grantee_type=grantee_type,
            grantee=grantee,
            permission=permission,
            granted_by=actor,
            granted_at=now,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            raise Conflict(
                f"A concurrent request changed {grantee_type} {grantee!r}'s permission on "
                f"{_label(kind)} {ref!r}; retry.",
                {"grantee_type": grantee_type, "grantee": grantee},
            ) from None
    else:
        row.permission = permission
        row.granted_by = actor
        row.granted_at = now
        session.flush()
    audit.record(
        session,
        actor,
        "permission.grant",
        kind,
        ref,
        before,
        _grant_doc(row),
    )
    return row, created


def revoke(
    session: Session,
    principal: Principal | None,
    actor: str,
    kind: str,
    resource_id: Any,
    ref: str,
    grantee_type: str,
    grantee: str,
) -> None:
    _check_kind(kind)
    validate_grantee_type(grantee_type)
    require(session, principal, kind, resource_id, MANAGE, ref=ref)
    require_own_manage(session, principal, kind, resource_id, ref)
    row = repo.get_grant(session, kind, resource_id, grantee_type, grantee)
    if row is None:
        raise NotFound(
            f"{grantee_type.capitalize()} {grantee!r} holds no grant on {_label(kind)} {ref!r} "
            "(its owner and the default permission are not grants and cannot be revoked).",
            {"grantee_type": grantee_type, "grantee": grantee},
        )
    before = _grant_doc(row)
    session.delete(row)
    session.flush()
    audit.record(session, actor, "permission.revoke", kind, ref, before, None)


__all__ = [
    "EDIT",
    "LEVELS",
    "MANAGE",
    "READ",
    "Permissions",
    "effective",
    "grant",
    "list_grants",
    "own_manage",
    "readers",
    "require",
    "require_alias_move",
    "require_experiment",
    "require_model",
    "require_stage_move",
    "require_version_removal",
    "revoke",
]

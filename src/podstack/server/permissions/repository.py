"""Every query of the permissions capability.

The owner and group lookups use Core tables (``Model.__table__``) on purpose: the read filter
(``read_filter.py``) adds its criteria only to ORM entities, so these lookups see the rows as
they are, whoever the session acts for (a permission check must see the resource it refuses).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select, union
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from podstack.server.approvals.models import ReviewerGroup, ReviewerGroupMember
from podstack.server.auth.models import DirectoryGroup, DirectoryGroupMember, User
from podstack.server.permissions.levels import EXPERIMENT, GROUP, MODEL, USER
from podstack.server.permissions.models import ModelProtection, ResourceGrant
from podstack.server.registry.models import RegisteredModel
from podstack.server.tracking.models import Experiment

GRANTS = ResourceGrant.__table__
PROTECTIONS = ModelProtection.__table__
MODELS = RegisteredModel.__table__
EXPERIMENTS = Experiment.__table__
_DIR_GROUPS = DirectoryGroup.__table__
_DIR_MEMBERS = DirectoryGroupMember.__table__
_REV_GROUPS = ReviewerGroup.__table__
_REV_MEMBERS = ReviewerGroupMember.__table__


def group_names_query(user_id: int | None) -> Select[Any]:
    """The names of the groups ``user_id`` is in: its directory groups (recorded at single
    sign-on) and the reviewer groups it was added to by an admin. A grant to a group names
    either kind; a reviewer group already counts the directory group of the same name
    (approvals/policies.py), so one name means one set of people on both sides."""
    if user_id is None:
        return select(_DIR_GROUPS.c.name).where(False)  # type: ignore[arg-type]
    directory = (
        select(_DIR_GROUPS.c.name)
        .join(_DIR_MEMBERS, _DIR_MEMBERS.c.group_id == _DIR_GROUPS.c.id)
        .where(_DIR_MEMBERS.c.user_id == user_id)
    )
    reviewer = (
        select(_REV_GROUPS.c.name)
        .join(_REV_MEMBERS, _REV_MEMBERS.c.group_id == _REV_GROUPS.c.id)
        .where(_REV_MEMBERS.c.user_id == user_id)
    )
    return select(union(directory, reviewer).subquery().c.name)


def _grantee_matches(username: str, user_id: int | None) -> Any:
    return or_(
        and_(GRANTS.c.grantee_type == USER, GRANTS.c.grantee == username),
        and_(GRANTS.c.grantee_type == GROUP, GRANTS.c.grantee.in_(group_names_query(user_id))),
    )


def granted_ids_query(kind: str, username: str, user_id: int | None) -> Select[Any]:
    """Ids of the resources of ``kind`` on which the user, or a group of theirs, holds any
    grant (every grant includes READ)."""
    return select(union(*_granted_parts(kind, username, user_id)).subquery().c[0])


def _granted_parts(kind: str, username: str, user_id: int | None) -> list[Select[Any]]:
    # Two selects rather than one with an OR: each is a range of ix_resource_grants_grantee
    # (grantee_type, grantee, resource_type); with the OR, SQLite built an automatic index
    # over every grant on every query (benchmarks/permissions_search.py).
    col = GRANTS.c.model_id if kind == MODEL else GRANTS.c.experiment_id
    return [
        select(col).where(
            GRANTS.c.grantee_type == USER,
            GRANTS.c.grantee == username,
            GRANTS.c.resource_type == kind,
        ),
        select(col).where(
            GRANTS.c.grantee_type == GROUP,
            GRANTS.c.grantee.in_(group_names_query(user_id)),
            GRANTS.c.resource_type == kind,
        ),
    ]


def readable_ids_query(kind: str, username: str, user_id: int | None) -> Select[Any]:
    """Ids of the resources of ``kind`` the user owns or holds a grant on: a UNION of index
    ranges (owner: ``ix_<table>_created_by``; grants: ``ix_resource_grants_grantee``), small
    (what one user reads), so ``id IN (...)`` costs the same whatever the table's size,
    instead of a scan of the table for an ``created_by = ? OR id IN (...)``."""
    table = MODELS if kind == MODEL else EXPERIMENTS
    owned = select(table.c.id).where(table.c.created_by == username)
    return select(union(owned, *_granted_parts(kind, username, user_id)).subquery().c[0])


def owner_of(s: Session, kind: str, resource_id: Any) -> tuple[bool, str | None]:
    """(exists, created_by) of the resource, seen without any read filter."""
    table = MODELS if kind == MODEL else EXPERIMENTS
    row = s.execute(select(table.c.created_by).where(table.c.id == resource_id)).first()
    return (row is not None, row[0] if row is not None else None)


def permissions_held(
    s: Session, kind: str, resource_id: Any, username: str, user_id: int | None
) -> list[str]:
    """The permissions of every grant that reaches the user on this resource."""
    col = GRANTS.c.model_id if kind == MODEL else GRANTS.c.experiment_id
    q = select(GRANTS.c.permission).where(
        GRANTS.c.resource_type == kind, col == resource_id, _grantee_matches(username, user_id)
    )
    return list(s.scalars(q))


def grants_of(s: Session, kind: str, resource_id: Any) -> list[ResourceGrant]:
    col = ResourceGrant.model_id if kind == MODEL else ResourceGrant.experiment_id
    q = (
        select(ResourceGrant)
        .where(ResourceGrant.resource_type == kind, col == resource_id)
        .order_by(ResourceGrant.grantee_type, ResourceGrant.grantee)
    )
    return list(s.scalars(q))


def get_grant(
    s: Session, kind: str, resource_id: Any, grantee_type: str, grantee: str
) -> ResourceGrant | None:
    col = ResourceGrant.model_id if kind == MODEL else ResourceGrant.experiment_id
    q = select(ResourceGrant).where(
        ResourceGrant.resource_type == kind,
        col == resource_id,
        ResourceGrant.grantee_type == grantee_type,
        ResourceGrant.grantee == grantee,
    )
    return s.scalar(q)


def new_grant(kind: str, resource_id: Any, **fields: Any) -> ResourceGrant:
    if kind == MODEL:
        return ResourceGrant(resource_type=kind, model_id=resource_id, **fields)
    if kind == EXPERIMENT:
        return ResourceGrant(resource_type=kind, experiment_id=resource_id, **fields)
    raise ValueError(kind)  # pragma: no cover - callers validate the kind


def user_exists(s: Session, username: str) -> bool:
    return s.scalar(select(User.id).where(User.username == username)) is not None


def group_exists(s: Session, name: str) -> bool:
    directory = select(_DIR_GROUPS.c.id).where(_DIR_GROUPS.c.name == name)
    reviewer = select(_REV_GROUPS.c.id).where(_REV_GROUPS.c.name == name)
    return s.execute(directory).first() is not None or s.execute(reviewer).first() is not None


def user_ids(s: Session, usernames: Sequence[str]) -> dict[str, int]:
    q = select(User.username, User.id).where(User.username.in_(list(usernames)))
    return {u: i for u, i in s.execute(q)}


# ---------------------------------------------------------------- protected aliases and stages


def protections_of(s: Session, model_id: int) -> list[ModelProtection]:
    q = (
        select(ModelProtection)
        .where(ModelProtection.model_id == model_id)
        .order_by(ModelProtection.kind, ModelProtection.name)
    )
    return list(s.scalars(q))


def get_protection(s: Session, model_id: int, kind: str, name: str) -> ModelProtection | None:
    q = select(ModelProtection).where(
        ModelProtection.model_id == model_id,
        ModelProtection.kind == kind,
        ModelProtection.name == name,
    )
    return s.scalar(q)


def protections_among(s: Session, model_id: int, kind: str, names: Sequence[str]) -> list[Any]:
    """The protections of ``model_id`` on any of ``names``, as rows with ``kind``, ``name`` and
    ``group_name``. Core on purpose (see the module docstring): the read filter would narrow an
    ORM query to models the session's principal can read, and the rule must see a protection
    whoever the session acts for (an approver carrying out someone else's request)."""
    if not names:
        return []
    q = (
        select(PROTECTIONS.c.kind, PROTECTIONS.c.name, PROTECTIONS.c.group_name)
        .where(
            PROTECTIONS.c.model_id == model_id,
            PROTECTIONS.c.kind == kind,
            PROTECTIONS.c.name.in_(list(names)),
        )
        .order_by(PROTECTIONS.c.name)
    )
    return list(s.execute(q))


def in_group(s: Session, user_id: int | None, group: str) -> bool:
    if user_id is None:
        return False
    names = group_names_query(user_id).subquery()
    return s.execute(select(names.c.name).where(names.c.name == group)).first() is not None


def user_by_name(s: Session, username: str) -> User | None:
    return s.scalar(select(User).where(User.username == username))

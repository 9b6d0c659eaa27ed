"""Every approvals query lives here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from podstack.server.approvals.models import (
    ApprovalComment,
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalVote,
    ReviewerGroup,
    ReviewerGroupMember,
)
from podstack.server.auth.models import User

# ---------------------------------------------------------------- users and groups


def users_by_name(s: Session, usernames: Iterable[str]) -> dict[str, User]:
    names = list(set(usernames))
    if not names:
        return {}
    return {u.username: u for u in s.scalars(select(User).where(User.username.in_(names)))}


def active_admins(s: Session) -> list[str]:
    q = select(User.username).where(User.role == "admin", User.disabled.is_(False))
    return list(s.scalars(q.order_by(User.username)))


def get_group(s: Session, name: str) -> ReviewerGroup | None:
    return s.scalar(select(ReviewerGroup).where(ReviewerGroup.name == name))


def groups_by_name(s: Session, names: Iterable[str]) -> dict[str, ReviewerGroup]:
    names = list(set(names))
    if not names:
        return {}
    q = select(ReviewerGroup).where(ReviewerGroup.name.in_(names))
    return {g.name: g for g in s.scalars(q)}


def list_groups(s: Session) -> list[ReviewerGroup]:
    return list(s.scalars(select(ReviewerGroup).order_by(ReviewerGroup.name)))


def members_of(
    s: Session, group_ids: Sequence[int], *, active_only: bool = False
) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {g: [] for g in group_ids}
    if not group_ids:
        return out
    q = (
        select(ReviewerGroupMember.group_id, User.username)
        .join(User, User.id == ReviewerGroupMember.user_id)
        .where(ReviewerGroupMember.group_id.in_(list(group_ids)))
        .order_by(User.username)
    )
    if active_only:
        q = q.where(User.disabled.is_(False))
    for gid, username in s.execute(q):
        out[gid].append(username)
    return out


def get_membership(s: Session, group_id: int, user_id: int) -> ReviewerGroupMember | None:
    return s.get(ReviewerGroupMember, (group_id, user_id))


# ---------------------------------------------------------------- policies


def get_policy(s: Session, scope: str) -> ApprovalPolicy | None:
    return s.scalar(select(ApprovalPolicy).where(ApprovalPolicy.scope == scope))


def list_policies(s: Session) -> list[ApprovalPolicy]:
    return list(s.scalars(select(ApprovalPolicy).order_by(ApprovalPolicy.id)))


def policies_using_group(s: Session, name: str) -> list[ApprovalPolicy]:
    # Few policies exist; filtering the JSON list in Python keeps this portable.
    return [p for p in list_policies(s) if name in (p.reviewer_groups or [])]


# ---------------------------------------------------------------- requests


def get_request(s: Session, request_id: str, *, for_update: bool = False) -> ApprovalRequest | None:
    q = select(ApprovalRequest).where(ApprovalRequest.id == request_id)
    if for_update:
        q = q.with_for_update().execution_options(populate_existing=True)
    return s.scalar(q)


def pending_for_version(s: Session, version_id: int) -> ApprovalRequest | None:
    q = select(ApprovalRequest).where(
        ApprovalRequest.version_id == version_id,
        ApprovalRequest.status == "pending",
        ApprovalRequest.kind == "stage",
    )
    return s.scalar(q)


def pending_for_subject(s: Session, subject: str) -> ApprovalRequest | None:
    q = select(ApprovalRequest).where(
        ApprovalRequest.subject == subject, ApprovalRequest.status == "pending"
    )
    return s.scalar(q.with_for_update())


def approved_for_version(s: Session, version_id: int) -> list[ApprovalRequest]:
    """Approved deployment/alias requests that put this version forward."""
    q = select(ApprovalRequest).where(
        ApprovalRequest.version_id == version_id,
        ApprovalRequest.status == "approved",
        ApprovalRequest.kind != "stage",
    )
    return list(s.scalars(q))


def pending_by_number(
    s: Session, model_name: str, version: int | None = None
) -> list[ApprovalRequest]:
    q = select(ApprovalRequest).where(
        ApprovalRequest.model_name == model_name, ApprovalRequest.status == "pending"
    )
    if version is not None:
        q = q.where(ApprovalRequest.version == version)
    return list(s.scalars(q.with_for_update()))


def list_requests(
    s: Session,
    *,
    statuses: Sequence[str] | None,
    model_name: str | None,
    requester: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> Sequence[ApprovalRequest]:
    """Newest first; keyset on (created_at, id)."""
    q = select(ApprovalRequest)
    if statuses:
        q = q.where(ApprovalRequest.status.in_(list(statuses)))
    if model_name:
        q = q.where(ApprovalRequest.model_name == model_name)
    if requester:
        q = q.where(ApprovalRequest.requester == requester)
    if after:
        at, rid = after
        q = q.where(
            or_(
                ApprovalRequest.created_at < at,
                and_(ApprovalRequest.created_at == at, ApprovalRequest.id < rid),
            )
        )
    order = (ApprovalRequest.created_at.desc(), ApprovalRequest.id.desc())
    return s.scalars(q.order_by(*order).limit(limit + 1)).all()


def count_pending(s: Session) -> int:
    q = select(func.count()).where(ApprovalRequest.status == "pending")
    return s.scalar(q) or 0


def votes_of(s: Session, request_ids: Sequence[str]) -> dict[str, list[ApprovalVote]]:
    out: dict[str, list[ApprovalVote]] = {r: [] for r in request_ids}
    if not request_ids:
        return out
    q = (
        select(ApprovalVote)
        .where(ApprovalVote.request_id.in_(list(request_ids)))
        .order_by(ApprovalVote.at, ApprovalVote.reviewer)
    )
    for v in s.scalars(q):
        out[v.request_id].append(v)
    return out


def get_vote(s: Session, request_id: str, reviewer: str) -> ApprovalVote | None:
    return s.get(ApprovalVote, (request_id, reviewer))


def comments_of(s: Session, request_id: str) -> list[ApprovalComment]:
    q = (
        select(ApprovalComment)
        .where(ApprovalComment.request_id == request_id)
        .order_by(ApprovalComment.id)
    )
    return list(s.scalars(q))


def delete_membership(s: Session, group_id: int, user_id: int) -> int:
    stmt = delete(ReviewerGroupMember).where(
        ReviewerGroupMember.group_id == group_id, ReviewerGroupMember.user_id == user_id
    )
    return s.execute(stmt).rowcount  # type: ignore[attr-defined,no-any-return]

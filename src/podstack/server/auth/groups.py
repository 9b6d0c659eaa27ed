"""Directory groups: the groups an identity provider says a user belongs to.

They are recorded at each single sign-on (``oidc.sign_in``) and replace what was recorded
before, so leaving a group at the provider takes effect at the user's next sign-in. Approval
reviewer groups count the members of the directory group of the same name
(``approvals/policies.py``); later, grants to groups can refer to these rows too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podstack.errors import Unauthenticated
from podstack.server.audit import service as audit
from podstack.server.auth.models import DirectoryGroup, DirectoryGroupMember, User
from podstack.server.db.base import utcnow

MAX_GROUP_NAME = 255
# A user in more groups than this is almost certainly a misconfigured claim (every group of a
# large directory); refusing is clearer than silently keeping some of them.
MAX_GROUPS_PER_USER = 500


def groups_from_claim(value: Any, claim: str) -> list[str]:
    """The group names in a token's groups claim: a list of strings (one string is taken as
    a one-element list; a missing claim as no groups). Anything else is refused, naming the
    claim, rather than guessed at."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Unauthenticated(
            f"The identity provider's {claim!r} claim is not a list of group names, so group "
            "roles cannot be applied. Fix the provider's claim mapping, or point "
            "PODSTACK_OIDC_GROUPS_CLAIM at the claim that lists the groups."
        )
    names = sorted({v.strip() for v in value if v.strip()})
    if len(names) > MAX_GROUPS_PER_USER:
        raise Unauthenticated(
            f"The identity provider's {claim!r} claim lists {len(names)} groups (at most "
            f"{MAX_GROUPS_PER_USER} are accepted); have the provider send only the groups "
            "relevant to Podstack."
        )
    too_long = [n for n in names if len(n) > MAX_GROUP_NAME]
    if too_long:
        raise Unauthenticated(
            f"The identity provider's {claim!r} claim has a group name longer than "
            f"{MAX_GROUP_NAME} characters ({too_long[0][:60]!r}...)."
        )
    return names


def groups_of(session: Session, user_id: int) -> list[str]:
    q = (
        select(DirectoryGroup.name)
        .join(DirectoryGroupMember, DirectoryGroupMember.group_id == DirectoryGroup.id)
        .where(DirectoryGroupMember.user_id == user_id)
        .order_by(DirectoryGroup.name)
    )
    return list(session.scalars(q))


def groups_of_users(session: Session, user_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {u: [] for u in user_ids}
    if not user_ids:
        return out
    q = (
        select(DirectoryGroupMember.user_id, DirectoryGroup.name)
        .join(DirectoryGroup, DirectoryGroup.id == DirectoryGroupMember.group_id)
        .where(DirectoryGroupMember.user_id.in_(list(user_ids)))
        .order_by(DirectoryGroup.name)
    )
    for uid, name in session.execute(q):
        out[uid].append(name)
    return out


def members_by_group(
    session: Session, names: Iterable[str], *, active_only: bool = False
) -> dict[str, list[str]]:
    """Usernames in each named directory group (names that are no directory group: empty)."""
    wanted = sorted(set(names))
    out: dict[str, list[str]] = {n: [] for n in wanted}
    if not wanted:
        return out
    q = (
        select(DirectoryGroup.name, User.username)
        .join(DirectoryGroupMember, DirectoryGroupMember.group_id == DirectoryGroup.id)
        .join(User, User.id == DirectoryGroupMember.user_id)
        .where(DirectoryGroup.name.in_(wanted))
        .order_by(User.username)
    )
    if active_only:
        q = q.where(User.disabled.is_(False))
    for name, username in session.execute(q):
        out[name].append(username)
    return out


def _create_group(session: Session, name: str) -> DirectoryGroup:
    """A new directory group; if a concurrent sign-in created it first, that row (a savepoint
    keeps the unique-name collision from failing the whole sign-in)."""
    try:
        with session.begin_nested():
            group = DirectoryGroup(name=name, created_at=utcnow())
            session.add(group)
            session.flush()
            return group
    except IntegrityError:
        found = session.scalar(select(DirectoryGroup).where(DirectoryGroup.name == name))
        if found is None:
            raise
        return found


def replace_memberships(session: Session, actor: str, user: User, names: Sequence[str]) -> bool:
    """Makes ``user``'s directory groups exactly ``names`` (creating unknown groups); audited
    when anything changed. Returns whether it did."""
    before = groups_of(session, user.id)
    after = sorted(set(names))
    if before == after:
        return False
    existing = {
        g.name: g
        for g in session.scalars(select(DirectoryGroup).where(DirectoryGroup.name.in_(after)))
    }
    for name in after:
        if name not in existing:
            existing[name] = _create_group(session, name)
    session.execute(delete(DirectoryGroupMember).where(DirectoryGroupMember.user_id == user.id))
    now = utcnow()
    for name in after:
        session.add(DirectoryGroupMember(group_id=existing[name].id, user_id=user.id, added_at=now))
    session.flush()
    audit.record(
        session,
        actor,
        "user.set_groups",
        "user",
        user.username,
        {"groups": before},
        {"groups": after},
    )
    return True

"""Approval policies (global default and per model) and reviewer groups.

A model's own policy replaces the default for that model entirely (no merging), so what
applies is always one readable document. Who may approve: the designated users plus the
current members of the designated groups (including, with single sign-on, the members of
the identity provider's group of the same name); with nobody designated, the admins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, ValidationFailed
from podstack.schemas import approvals as sch
from podstack.server.approvals import gates as gate_rules
from podstack.server.approvals import repository as repo
from podstack.server.approvals.models import (
    DEFAULT_SCOPE,
    ApprovalPolicy,
    ReviewerGroup,
    ReviewerGroupMember,
)
from podstack.server.audit import service as audit
from podstack.server.auth import groups as directory_groups
from podstack.server.auth import service as auth_service
from podstack.server.db.base import utcnow
from podstack.server.provenance import service as provenance
from podstack.server.registry import service as registry
from podstack.server.registry.models import RegisteredModel

_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# ---------------------------------------------------------------- groups


def validate_group_name(name: str) -> str:
    if not isinstance(name, str) or not _GROUP_RE.match(name):
        raise ValidationFailed(
            f"Invalid group name {str(name)[:100]!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. 'ml-leads').",
            {"field": "name"},
        )
    return name


def get_group(s: Session, name: str) -> ReviewerGroup:
    g = repo.get_group(s, name)
    if g is None:
        raise NotFound(f"Group {name!r} does not exist.", {"group": name})
    return g


def list_groups(s: Session) -> list[ReviewerGroup]:
    return repo.list_groups(s)


def members(s: Session, groups: Sequence[ReviewerGroup]) -> dict[int, list[str]]:
    """Each group's members: those added here plus, with single sign-on, the members of the
    identity provider's group of the same name (``_directory_members``)."""
    explicit = repo.members_of(s, [g.id for g in groups])
    directory = _directory_members(s, groups, active_only=False)
    return {g.id: sorted(set(explicit[g.id]) | set(directory[g.name])) for g in groups}


def _directory_members(
    s: Session, groups: Sequence[ReviewerGroup], *, active_only: bool
) -> dict[str, list[str]]:
    """The one rule tying reviewer groups to the company directory: a reviewer group counts
    the users whom the identity provider put in the group of the same name at their last
    sign-in (auth/groups.py). Membership there changes at the provider, not here."""
    return directory_groups.members_by_group(s, [g.name for g in groups], active_only=active_only)


def create_group(
    s: Session, actor: str, name: str, description: str | None, usernames: Sequence[str] = ()
) -> ReviewerGroup:
    validate_group_name(name)
    if repo.get_group(s, name) is not None:
        raise Conflict(f"Group {name!r} already exists.", {"group": name})
    users = _existing_users(s, usernames, "members")
    g = ReviewerGroup(name=name, description=description, created_by=actor, created_at=utcnow())
    try:
        with s.begin_nested():
            s.add(g)
            s.flush()
    except DBIntegrityError:
        raise Conflict(f"Group {name!r} already exists.", {"group": name})
    for u in users:
        s.add(ReviewerGroupMember(group_id=g.id, user_id=u, added_by=actor, added_at=utcnow()))
    audit.record(
        s,
        actor,
        "group.create",
        "group",
        name,
        None,
        {"description": description, "members": sorted(set(usernames))},
    )
    return g


def delete_group(s: Session, actor: str, name: str) -> None:
    g = get_group(s, name)
    using = repo.policies_using_group(s, name)
    if using:
        where = ", ".join(_policy_label(s, p) for p in using)
        raise Conflict(
            f"Group {name!r} is a reviewer group of the approval policy of {where}; remove it "
            "from those policies first.",
            {"group": name, "policies": [_policy_label(s, p) for p in using]},
        )
    before = {"members": repo.members_of(s, [g.id])[g.id]}
    s.delete(g)
    audit.record(s, actor, "group.delete", "group", name, before, None)


def add_member(s: Session, actor: str, name: str, username: str) -> ReviewerGroup:
    g = get_group(s, name)
    user = auth_service.get_user(s, username)
    if repo.get_membership(s, g.id, user.id) is None:
        s.add(
            ReviewerGroupMember(group_id=g.id, user_id=user.id, added_by=actor, added_at=utcnow())
        )
        s.flush()
        audit.record(s, actor, "group.add_member", "group", name, None, {"member": username})
    return g


def remove_member(s: Session, actor: str, name: str, username: str) -> ReviewerGroup:
    g = get_group(s, name)
    user = auth_service.get_user(s, username)
    if not repo.delete_membership(s, g.id, user.id):
        if username in _directory_members(s, [g], active_only=False)[g.name]:
            raise Conflict(
                f"{username!r} is in group {name!r} through the identity provider's group of "
                "the same name; remove them there (it takes effect at their next sign-in).",
                {"group": name, "user": username, "source": "directory"},
            )
        raise NotFound(
            f"{username!r} is not a member of group {name!r}.", {"group": name, "user": username}
        )
    audit.record(s, actor, "group.remove_member", "group", name, {"member": username}, None)
    return g


def _existing_users(s: Session, usernames: Sequence[str], field_name: str) -> list[int]:
    found = repo.users_by_name(s, usernames)
    missing = sorted(set(usernames) - set(found))
    if missing:
        raise ValidationFailed(
            f"Unknown user(s) in {field_name}: {', '.join(repr(m[:64]) for m in missing)}. "
            "Create them first (`podstack users create`).",
            {"field": field_name, "unknown": missing},
        )
    return [found[n].id for n in sorted(set(usernames))]


# ---------------------------------------------------------------- reviewers


def eligible_reviewers(s: Session, users: Sequence[str], groups: Sequence[str]) -> list[str]:
    """Active users who may review under (users, groups); the admins when none designated."""
    if not users and not groups:
        return repo.active_admins(s)
    names: set[str] = set()
    found_groups = repo.groups_by_name(s, groups)
    by_id = repo.members_of(s, [g.id for g in found_groups.values()], active_only=True)
    for m in by_id.values():
        names.update(m)
    for m in _directory_members(s, list(found_groups.values()), active_only=True).values():
        names.update(m)
    direct = repo.users_by_name(s, users)
    names.update(n for n, u in direct.items() if not u.disabled)
    return sorted(names)


# ---------------------------------------------------------------- policies


@dataclass
class Policy:
    model_name: str | None
    source: str  # model | default
    gated_stages: list[str] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)
    reviewer_groups: list[str] = field(default_factory=list)
    required_approvals: int = 1
    gates: list[str] = field(default_factory=list)
    gated_aliases: list[str] = field(default_factory=list)
    updated_by: str | None = None
    updated_at: datetime | None = None

    def to_schema(self) -> sch.ApprovalPolicy:
        return sch.ApprovalPolicy.model_validate(self.__dict__)


def _from_row(row: ApprovalPolicy | None, model_name: str | None, source: str) -> Policy:
    if row is None:
        return Policy(model_name=model_name, source=source)
    return Policy(
        model_name=model_name,
        source=source,
        gated_stages=list(row.gated_stages or []),
        reviewers=list(row.reviewer_users or []),
        reviewer_groups=list(row.reviewer_groups or []),
        required_approvals=row.required_approvals,
        gates=list(row.gates or []),
        gated_aliases=list(row.gated_aliases or []),
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


def effective_policy(s: Session, model: RegisteredModel) -> Policy:
    own = repo.get_policy(s, str(model.id))
    if own is not None:
        return _from_row(own, model.name, "model")
    return _from_row(repo.get_policy(s, DEFAULT_SCOPE), model.name, "default")


def get_policy(s: Session, model_name: str | None) -> Policy:
    """The default policy (``model_name`` None) or the one that applies to a model."""
    if model_name is None:
        return _from_row(repo.get_policy(s, DEFAULT_SCOPE), None, "default")
    return effective_policy(s, registry.get_model(s, model_name))


def list_policies(s: Session) -> list[Policy]:
    """The default first, then every model that has its own policy."""
    rows = repo.list_policies(s)
    out = [_from_row(repo.get_policy(s, DEFAULT_SCOPE), None, "default")]
    ids = [r.model_id for r in rows if r.model_id is not None]
    names = {m.id: m.name for m in registry.models_by_ids(s, ids).values()} if ids else {}
    for r in rows:
        if r.model_id is not None and r.model_id in names:
            out.append(_from_row(r, names[r.model_id], "model"))
    return out


def _policy_label(s: Session, p: ApprovalPolicy) -> str:
    if p.model_id is None:
        return "the default"
    found = registry.models_by_ids(s, [p.model_id])
    return f"model {found[p.model_id].name!r}" if p.model_id in found else "a deleted model"


def _validated(s: Session, body: sch.ApprovalPolicyIn) -> dict[str, object]:
    stages: list[str] = []
    for st in body.gated_stages:
        canonical = registry.normalize_stage(st)
        if canonical not in stages:
            stages.append(canonical)
    stages.sort(key=registry.STAGES.index)
    users = sorted(set(body.reviewers))
    _existing_users(s, users, "reviewers")
    groups = sorted(set(body.reviewer_groups))
    found = repo.groups_by_name(s, groups)
    missing = [g for g in groups if g not in found]
    if missing:
        raise ValidationFailed(
            f"Unknown reviewer group(s): {', '.join(repr(m[:64]) for m in missing)}. Create "
            "them first (`podstack groups create`).",
            {"field": "reviewer_groups", "unknown": missing},
        )
    n = body.required_approvals
    if n < 1:
        raise ValidationFailed(
            f"required_approvals must be at least 1 (got {n}).", {"field": "required_approvals"}
        )
    if users or groups:
        m = len(eligible_reviewers(s, users, groups))
        if n > m:
            raise ValidationFailed(
                f"required_approvals is {n} but the designated reviewers are only {m} "
                "active user(s); designate more reviewers or lower the quorum.",
                {"field": "required_approvals", "required": n, "reviewers": m},
            )
    parsed = gate_rules.parse_all(body.gates)
    for i, g in enumerate(parsed):
        # A gate naming a key the server has never seen could never pass: refuse it now.
        if g.signer not in (None, "server") and not provenance.known_key(s, g.signer):
            raise ValidationFailed(
                f"Gate {g.expression!r} names a key the server does not know. Known keys: "
                "`podstack signing-keys`; a user key becomes known when a signature made with "
                "it is attached (`podstack models sign`).",
                {"field": "gates", "gate": g.expression, "index": i},
            )
    aliases: list[str] = []
    for a in body.gated_aliases:
        try:
            registry.validate_alias(a)
        except ValidationFailed as exc:
            raise ValidationFailed(
                f"gated_aliases: {exc.message}", {"field": "gated_aliases", **exc.details}
            ) from None
        if a not in aliases:
            aliases.append(a)
    return {
        "gated_aliases": sorted(aliases),
        "gated_stages": stages,
        "reviewer_users": users,
        "reviewer_groups": groups,
        "required_approvals": n,
        "gates": [g.expression for g in parsed],
    }


def set_policy(
    s: Session, actor: str, model_name: str | None, body: sch.ApprovalPolicyIn
) -> Policy:
    model = registry.get_model(s, model_name) if model_name is not None else None
    scope = DEFAULT_SCOPE if model is None else str(model.id)
    values = _validated(s, body)
    row = repo.get_policy(s, scope)
    before = None
    if row is None:
        row = ApprovalPolicy(scope=scope, model_id=model.id if model else None)
        s.add(row)
    else:
        before = _audit_doc(row)
    for k, v in values.items():
        setattr(row, k, v)
    row.updated_by = actor
    row.updated_at = utcnow()
    s.flush()
    target = model_name if model_name is not None else DEFAULT_SCOPE
    audit.record(
        s, actor, "approval_policy.set", "approval_policy", target, before, _audit_doc(row)
    )
    return _from_row(row, model_name, "model" if model else "default")


def delete_policy(s: Session, actor: str, model_name: str) -> Policy:
    """Drops a model's own policy: the default applies to it again (returned)."""
    model = registry.get_model(s, model_name)
    row = repo.get_policy(s, str(model.id))
    if row is None:
        raise NotFound(
            f"Model {model_name!r} has no policy of its own (the default applies).",
            {"model_name": model_name},
        )
    before = _audit_doc(row)
    s.delete(row)
    s.flush()
    audit.record(s, actor, "approval_policy.delete", "approval_policy", model_name, before, None)
    return effective_policy(s, model)


def _audit_doc(row: ApprovalPolicy) -> dict[str, object]:
    return {
        "gated_stages": list(row.gated_stages or []),
        "reviewers": list(row.reviewer_users or []),
        "reviewer_groups": list(row.reviewer_groups or []),
        "required_approvals": row.required_approvals,
        "gates": list(row.gates or []),
        "gated_aliases": list(row.gated_aliases or []),
    }

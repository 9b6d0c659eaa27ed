"""Deployment targets as configured by admins (the built-in ``local`` one included):
listing, building, adding, changing and removing them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, ValidationFailed
from podstack.schemas import deployments as sch
from podstack.server.artifacts.store import BlobStore
from podstack.server.audit import service as audit
from podstack.server.config import Settings
from podstack.server.db.base import utcnow
from podstack.server.deployments import repository as repo
from podstack.server.deployments import target_kinds
from podstack.server.deployments import targets as tg
from podstack.server.deployments.models import Deployment, DeploymentTarget


def _builtin_local() -> DeploymentTarget:
    return DeploymentTarget(name=tg.LOCAL, kind=tg.LOCAL, config={}, is_default=False)


def _target_rows(s: Session) -> list[DeploymentTarget]:
    rows = list(repo.list_targets(s))
    if not any(r.name == tg.LOCAL for r in rows):
        rows.insert(0, _builtin_local())
    return rows


def default_target_name(s: Session) -> str:
    for r in _target_rows(s):
        if r.is_default:
            return r.name
    return tg.LOCAL


def get_target(s: Session, name: str | None, settings: Settings, store: BlobStore) -> tg.Target:
    name = name or default_target_name(s)
    row = repo.get_target(s, name) or (_builtin_local() if name == tg.LOCAL else None)
    if row is None:
        names = [r.name for r in _target_rows(s)]
        raise ValidationFailed(
            f"Unknown deployment target {name!r}. Configured targets: {', '.join(names)}.",
            {"target": name, "available": names},
        )
    return target_kinds.build(row.name, row.kind, row.config or {}, settings, store)


def target_view(row: DeploymentTarget, settings: Settings, store: BlobStore) -> sch.Target:
    t = target_kinds.build(row.name, row.kind, row.config or {}, settings, store)
    return sch.Target(
        name=row.name,
        kind=row.kind,
        config=row.config or {},
        is_default=bool(row.is_default),
        builtin=row.name == tg.LOCAL,
        gpu_types=t.gpu_types(),
        trusted_formats=t.trusted,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


def list_targets(s: Session, settings: Settings, store: BlobStore) -> list[sch.Target]:
    return [target_view(r, settings, store) for r in _target_rows(s)]


def put_target(
    s: Session, actor: str, name: str, body: sch.TargetIn, settings: Settings, store: BlobStore
) -> sch.Target:
    if not re.match(r"^[a-z0-9][-a-z0-9_]{0,63}$", name):
        raise ValidationFailed(
            f"Invalid target name {name!r}: use 1-64 lowercase letters, digits, '-' or '_'.",
            {"name": name},
        )
    if name == tg.LOCAL and body.kind != tg.LOCAL:
        raise ValidationFailed("The built-in 'local' target must keep kind 'local'.")
    target_kinds.build(name, body.kind, body.config, settings, store)  # unknown kind -> 422
    if body.is_default:
        for other in repo.list_targets(s):
            if other.name != name:
                other.is_default = False
    row = repo.get_target(s, name)
    before = None
    if row is None:
        row = DeploymentTarget(name=name, created_at=utcnow())
        s.add(row)
    else:
        before = {"kind": row.kind, "config": row.config, "is_default": row.is_default}
    row.kind = body.kind
    row.config = dict(body.config)
    row.is_default = body.is_default
    row.updated_by = actor
    row.updated_at = utcnow()
    s.flush()
    audit.record(
        s,
        actor,
        "deployment_target.put",
        "deployment_target",
        name,
        before,
        {"kind": row.kind, "config": row.config, "is_default": row.is_default},
    )
    return target_view(row, settings, store)


def delete_target(s: Session, actor: str, name: str) -> None:
    row = repo.get_target(s, name)
    if row is None:
        raise NotFound(f"No deployment target {name!r}.", {"target": name})
    users = [d.name for d in _all(s) if d.target == name]
    if users:
        raise Conflict(
            f"Target {name!r} is used by deployment(s) {', '.join(users)}; delete them first.",
            {"target": name, "deployments": users},
        )
    s.delete(row)
    s.flush()
    audit.record(
        s, actor, "deployment_target.delete", "deployment_target", name, {"kind": row.kind}
    )


def _all(s: Session) -> Sequence[Deployment]:
    return repo.list_deployments(s, limit=10_000)

"""Every deployments query lives here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from podstack.server.deployments.models import Deployment, DeploymentTarget
from podstack.server.registry.models import RegisteredModel


def get_by_name(s: Session, name: str, *, for_update: bool = False) -> Deployment | None:
    q = select(Deployment).where(Deployment.name == name)
    if for_update:
        q = q.with_for_update()
    return s.scalars(q).first()


def get(s: Session, dep_id: str) -> Deployment | None:
    return s.get(Deployment, dep_id, populate_existing=True)


def list_deployments(
    s: Session,
    *,
    model_id: int | None = None,
    version: int | None = None,
    status: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> Sequence[Deployment]:
    q = select(Deployment).order_by(Deployment.name).limit(limit + 1)
    if model_id is not None:
        q = q.where(Deployment.model_id == model_id)
    if version is not None:
        q = q.where(or_(Deployment.version == version, Deployment.serving_version == version))
    if status:
        q = q.where(Deployment.status == status)
    if after:
        q = q.where(Deployment.name > after)
    return s.scalars(q).all()


def all_ids(s: Session) -> list[str]:
    return list(s.scalars(select(Deployment.id).order_by(Deployment.name)))


def using_model(s: Session, model_id: int) -> Sequence[Deployment]:
    return s.scalars(
        select(Deployment).where(Deployment.model_id == model_id).order_by(Deployment.name)
    ).all()


def using_versions(s: Session, version_ids: list[int]) -> Sequence[Deployment]:
    if not version_ids:
        return []
    return s.scalars(
        select(Deployment)
        .where(
            or_(
                Deployment.version_id.in_(version_ids),
                Deployment.serving_version_id.in_(version_ids),
            )
        )
        .order_by(Deployment.name)
    ).all()


def following(s: Session, model_id: int, alias: str) -> Sequence[Deployment]:
    return s.scalars(
        select(Deployment).where(Deployment.model_id == model_id, Deployment.alias == alias)
    ).all()


def model_names(s: Session, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = s.execute(
        select(RegisteredModel.id, RegisteredModel.name).where(RegisteredModel.id.in_(set(ids)))
    )
    return {i: n for i, n in rows}


def claim_lease(s: Session, dep_id: str, owner: str, now: datetime, until: datetime) -> bool:
    res = s.execute(
        update(Deployment)
        .where(
            Deployment.id == dep_id,
            or_(
                Deployment.lease_owner.is_(None),
                Deployment.lease_owner == owner,
                Deployment.lease_until < now,
            ),
        )
        .values(lease_owner=owner, lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return bool(res.rowcount)


def release_lease(s: Session, dep_id: str, owner: str) -> None:
    s.execute(
        update(Deployment)
        .where(Deployment.id == dep_id, Deployment.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


def get_target(s: Session, name: str) -> DeploymentTarget | None:
    return s.get(DeploymentTarget, name)


def list_targets(s: Session) -> Sequence[DeploymentTarget]:
    return s.scalars(select(DeploymentTarget).order_by(DeploymentTarget.name)).all()

"""Queries for uploads in progress (the only place that builds them)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from podstack.server.transfers.models import ArtifactUpload


def add(s: Session, row: ArtifactUpload) -> ArtifactUpload:
    s.add(row)
    s.flush()
    return row


def get(s: Session, upload_id: str) -> ArtifactUpload | None:
    return s.get(ArtifactUpload, upload_id)


def resumable(
    s: Session, run_id: str, path: str, sha256: str, size: int, created_by: str, mode: str
) -> ArtifactUpload | None:
    """The newest unfinished upload of the same content to the same place by the same user."""
    q = (
        select(ArtifactUpload)
        .where(
            ArtifactUpload.run_id == run_id,
            ArtifactUpload.path == path,
            ArtifactUpload.sha256 == sha256,
            ArtifactUpload.size == size,
            ArtifactUpload.created_by == created_by,
            ArtifactUpload.mode == mode,
        )
        .order_by(ArtifactUpload.created_at.desc())
        .limit(1)
    )
    return s.scalars(q).first()


def older_than(s: Session, cutoff: datetime) -> list[ArtifactUpload]:
    q = select(ArtifactUpload).where(ArtifactUpload.created_at < cutoff)
    return list(s.scalars(q.order_by(ArtifactUpload.created_at)))


def known_ids(s: Session, ids: Iterable[str]) -> set[str]:
    wanted = list(ids)
    if not wanted:
        return set()
    return set(s.scalars(select(ArtifactUpload.id).where(ArtifactUpload.id.in_(wanted))))


def remove(s: Session, upload_id: str) -> None:
    s.execute(delete(ArtifactUpload).where(ArtifactUpload.id == upload_id))

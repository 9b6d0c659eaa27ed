"""Where a version registered through the MLflow API said it came from (``VersionOrigin``):
the client's ``source`` URI and MLflow 3 logged model id, recorded beside the version so the
MLflow API can show them back as given. Versions registered through Podstack's own API have
no origin row; their source is their run artifact path."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from podstack.server.registry import repository as repo
from podstack.server.registry.models import ModelVersion, VersionOrigin


def record_origin(s: Session, mv: ModelVersion, source: str, logged_model_id: str | None) -> None:
    repo.add_origin(
        s, VersionOrigin(version_id=mv.id, source=source, logged_model_id=logged_model_id)
    )


def origins_of(s: Session, version_ids: Sequence[int]) -> dict[int, VersionOrigin]:
    return repo.origins_of(s, version_ids)

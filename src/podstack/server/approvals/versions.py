"""What approvals need to know about registry versions, read through the registry's own
service and repository: a version's metrics, and the current Production version's."""

from __future__ import annotations

from sqlalchemy.orm import Session

from podstack.server.registry import repository as registry_repo
from podstack.server.registry.models import ModelVersion
from podstack.server.tracking import repository as tracking_repo


def version_metrics(s: Session, mv: ModelVersion) -> dict[str, float]:
    """Final metrics of the source run, overlaid by the version's own validation metrics."""
    out = dict(tracking_repo.run_latest_metrics(s, [mv.source_run_id]).get(mv.source_run_id, {}))
    out.update(registry_repo.metrics_of(s, [mv.id])[mv.id])
    return out


def production_version(s: Session, mv: ModelVersion) -> ModelVersion | None:
    """The model's current Production version other than ``mv`` (most recently promoted)."""
    for other in registry_repo.versions_in_stage(s, mv.model_id, "Production"):
        if other.id != mv.id:
            return other
    return None


def production_metrics(s: Session, mv: ModelVersion) -> tuple[int, dict[str, float]] | None:
    prod = production_version(s, mv)
    return None if prod is None else (prod.version, version_metrics(s, prod))

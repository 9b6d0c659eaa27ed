"""What approvals need to know about registry versions, read through the registry's and
tracking's services: a version's metrics (with who logged each and when), and the
current Production version's.

Which metrics a gate may read (metric provenance):

- the source run's final metrics, once the run has ended: tracking refuses every write to a
  FINISHED / FAILED / KILLED run, so nobody can change them any more. While the run is still
  RUNNING any editor (the requester included) can log to it, so its metrics count as written
  by the requester and are not used;
- validation metrics (``log_model_version_metrics``) only when logged by someone other than
  the requester. A validation metric of the requester's (or of unknown origin) is ignored and
  the run's value of that key, if any, is used instead.

The same rule applies to the Production version a gate compares with ("f1 > production"), so
a requester can neither raise their candidate's numbers nor lower Production's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from podstack.server.registry import service as registry
from podstack.server.registry.models import ModelVersion
from podstack.server.tracking import service as tracking
from podstack.server.tracking.service import TERMINAL


@dataclass(frozen=True)
class MetricSource:
    """One metric value of a version and where it came from."""

    key: str
    value: float
    source: str  # run | validation
    logged_by: str | None
    logged_at: datetime | None
    counted: bool  # used by gate evaluation for this requester
    reason: str | None = None  # why not counted
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not math.isfinite(self.value):
            d["value"] = str(self.value)
        return d


def metric_sources(s: Session, mv: ModelVersion, requester: str | None) -> list[MetricSource]:
    """Every run and validation metric of ``mv``, each marked counted or not for gates of a
    request by ``requester`` (None: nobody is excluded, validation metrics of unknown origin
    still are)."""
    out: list[MetricSource] = []
    run = tracking.find_run(s, mv.source_run_id) if mv.source_run_id else None
    if run is not None:
        ended = run.status in TERMINAL
        for m in tracking.latest_metric_rows(s, run.id):
            out.append(
                MetricSource(
                    key=m.key,
                    value=math.nan if m.value is None else m.value,
                    source="run",
                    logged_by=run.user,
                    logged_at=m.timestamp,
                    counted=ended,
                    reason=None
                    if ended
                    else (
                        f"source run {run.id} is still {run.status}: anyone with write access, "
                        "the requester included, can still log to it (it counts once the run "
                        "has ended)"
                    ),
                    run_id=run.id,
                )
            )
    for vm in registry.version_metric_rows(s, mv):
        if vm.logged_by is None:
            counted, reason = False, "validation metric of unknown origin"
        elif requester is not None and vm.logged_by == requester:
            counted, reason = False, "logged by the requester"
        else:
            counted, reason = True, None
        out.append(
            MetricSource(
                key=vm.key,
                value=math.nan if vm.value is None else vm.value,
                source="validation",
                logged_by=vm.logged_by,
                logged_at=vm.timestamp,
                counted=counted,
                reason=reason,
            )
        )
    return out


def version_metrics(s: Session, mv: ModelVersion, requester: str | None) -> dict[str, float]:
    """The metrics gates read: counted run metrics, overlaid by counted validation metrics."""
    out: dict[str, float] = {}
    sources = metric_sources(s, mv, requester)
    for src in sources:
        if src.counted and src.source == "run":
            out[src.key] = src.value
    for src in sources:
        if src.counted and src.source == "validation":
            out[src.key] = src.value
    return out


def production_version(s: Session, mv: ModelVersion) -> ModelVersion | None:
    """The model's current Production version other than ``mv`` (most recently promoted)."""
    for other in registry.versions_in_stage(s, mv.model_id, "Production"):
        if other.id != mv.id:
            return other
    return None


def production_metrics(
    s: Session, mv: ModelVersion, requester: str | None
) -> tuple[int, dict[str, float]] | None:
    prod = production_version(s, mv)
    return None if prod is None else (prod.version, version_metrics(s, prod, requester))

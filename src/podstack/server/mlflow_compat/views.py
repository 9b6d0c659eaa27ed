"""Tracking rows -> MLflow's JSON (``Experiment``, ``Run``, ``Metric`` of
``mlflow/protos/service.proto``), batched per page.

Mapping: times are epoch milliseconds; an experiment's ``lifecycle_stage`` is ``deleted`` when
it is archived here; its description is MLflow's ``mlflow.note.content`` tag; a run's
``user_id`` is the Podstack user who created it; runs are always ``active`` (deleting one is
permanent); datasets keep name, digest, source and context (MLflow's schema and profile are not
stored); NaN and infinities are sent as proto3 JSON strings ("NaN", "Infinity").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from podstack.server.mlflow_compat import ids
from podstack.server.tracking import mlflow_search
from podstack.server.tracking import service as tracking
from podstack.server.tracking.models import Experiment, Run


def millis(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


def number(value: float | None) -> float | str:
    """A double as proto3 JSON (JSON itself has no NaN or infinities)."""
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def kv(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(d.items())]


def experiment_doc(exp: Experiment) -> dict[str, Any]:
    tags = dict(exp.tags or {})
    if exp.description:
        tags[mlflow_search.NOTE_TAG] = exp.description
    return {
        "experiment_id": ids.experiment_to_mlflow(exp.id),
        "name": exp.name,
        "artifact_location": ids.experiment_artifact_location(exp.id),
        "lifecycle_stage": "deleted" if exp.archived else "active",
        "creation_time": millis(exp.created_at),
        "last_update_time": millis(exp.updated_at),
        "tags": kv(tags),
    }


def run_info(run: Run) -> dict[str, Any]:
    mid = ids.run_to_mlflow(run.id)
    return {
        "run_id": mid,
        "run_uuid": mid,
        "run_name": run.name or "",
        "experiment_id": ids.experiment_to_mlflow(run.experiment_id),
        "user_id": run.user or "",
        "status": run.status,
        "start_time": millis(run.start_time),
        "end_time": millis(run.end_time),
        "artifact_uri": ids.run_artifact_uri(run.experiment_id, run.id),
        "lifecycle_stage": "active",
    }


def run_docs(
    s: Session, runs: Sequence[Run], outputs: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """MLflow ``Run`` objects for a page of runs (a fixed number of queries).
    ``outputs``: per run, the ids of logged models it produced."""
    if not runs:
        return []
    views = {v.id: v for v in tracking.run_views(s, list(runs))}
    latest = mlflow_search.latest_metric_rows_of(s, [r.id for r in runs])
    out = []
    for run in runs:
        view = views[run.id]
        metrics = [
            {
                "key": m.key,
                "value": number(m.value),
                "timestamp": millis(m.timestamp),
                "step": m.step,
            }
            for m in latest[run.id]
        ]
        datasets = [
            {
                "tags": [{"key": "mlflow.data.context", "value": d.context}] if d.context else [],
                "dataset": {
                    "name": d.name,
                    "digest": d.digest or "",
                    # Not stored (name, digest, source and context are): "code" says unknown.
                    "source_type": "code",
                    "source": d.source_uri or "",
                },
            }
            for d in view.datasets
        ]
        out.append(
            {
                "info": run_info(run),
                "data": {"metrics": metrics, "params": kv(view.params), "tags": kv(view.tags)},
                "inputs": {"dataset_inputs": datasets, "model_inputs": []},
                "outputs": {
                    "model_outputs": [
                        {"model_id": m, "step": 0} for m in (outputs or {}).get(run.id, [])
                    ]
                },
            }
        )
    return out

"""Registry rows -> MLflow's JSON (``RegisteredModel`` and ``ModelVersion`` of
``mlflow/protos/model_registry.proto``), batched: a page of models or versions costs a fixed
number of queries, not some per row.

Mapping (see README "Using MLflow clients"):

- timestamps: epoch milliseconds; ``user_id``: the Podstack user who created the row;
- a model's ``tags``: its key-value tags plus each label as a tag with value ``""``;
- ``latest_versions``: the highest version in each stage (MLflow's definition);
- a version's ``version`` is a string, ``status`` always ``READY`` (registration is atomic
  here: the files are snapshotted in the same transaction);
- ``source``: the URI the MLflow client registered from, or ``runs:/<run id>/<path>`` for a
  version registered through Podstack's own API; ``run_id``: the run's MLflow id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from podstack.server.registry import batch_reads, filtered_search, model_tags, origins
from podstack.server.registry.models import ModelVersion, RegisteredModel
from podstack.server.registry.service import NewVersion

# Our run ids -> the MLflow run ids a client sees (``mlflow_compat.ids``), for a batch.
RunIdMapper = Callable[[Session, Sequence[str]], dict[str, str]]


def millis(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


def version_docs(
    s: Session, pairs: Sequence[tuple[RegisteredModel, ModelVersion]], run_ids: RunIdMapper
) -> list[dict[str, Any]]:
    """MLflow ``ModelVersion`` objects for (model, version) pairs, in order."""
    if not pairs:
        return []
    vids = [v.id for _, v in pairs]
    tags, aliases = batch_reads.version_tags_and_aliases(s, vids)
    found = origins.origins_of(s, vids)
    mapped = run_ids(s, sorted({v.source_run_id for _, v in pairs}))
    out = []
    for m, v in pairs:
        origin = found.get(v.id)
        out.append(
            _version_doc(
                m,
                v,
                tags[v.id],
                list(aliases[v.id]),
                origin.source if origin else None,
                origin.logged_model_id if origin else None,
                mapped.get(v.source_run_id, v.source_run_id),
            )
        )
    return out


def new_version_doc(
    new: NewVersion, source: str, logged_model_id: str | None, mlflow_run_id: str
) -> dict[str, Any]:
    """The ``ModelVersion`` of a version created in this request, from what its creation
    already knows (tags given, no aliases yet, the origin just recorded): no query."""
    return _version_doc(
        new.model, new.version, new.tags, [], source, logged_model_id, mlflow_run_id
    )


def _version_doc(
    m: RegisteredModel,
    v: ModelVersion,
    tags: dict[str, str],
    aliases: list[str],
    source: str | None,
    logged_model_id: str | None,
    run: str,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": m.name,
        "version": str(v.version),
        "creation_timestamp": millis(v.created_at),
        "last_updated_timestamp": millis(v.updated_at),
        "user_id": v.created_by or "",
        "current_stage": v.stage,
        "description": v.description or "",
        "source": source or f"runs:/{run}/{v.artifact_path}".rstrip("/"),
        "run_id": run,
        "status": "READY",
        "tags": [{"key": k, "value": val} for k, val in tags.items()],
        "run_link": "",
        "aliases": aliases,
    }
    if logged_model_id:
        doc["model_id"] = logged_model_id
    return doc


def version_doc(
    s: Session, m: RegisteredModel, v: ModelVersion, run_ids: RunIdMapper
) -> dict[str, Any]:
    return version_docs(s, [(m, v)], run_ids)[0]


def model_docs(
    s: Session, models: Sequence[RegisteredModel], run_ids: RunIdMapper
) -> list[dict[str, Any]]:
    """MLflow ``RegisteredModel`` objects, with latest version per stage, tags and aliases."""
    if not models:
        return []
    ids = [m.id for m in models]
    tags = model_tags.tags_of(s, ids)
    latest = filtered_search.latest_per_stage(s, ids)
    by_id = {m.id: m for m in models}
    latest_docs = version_docs(s, [(by_id[mid], v) for mid in ids for v in latest[mid]], run_ids)
    per_model: dict[str, list[dict[str, Any]]] = {m.name: [] for m in models}
    for d in latest_docs:
        per_model[d["name"]].append(d)
    alias_rows = batch_reads.model_aliases(s, ids)
    out = []
    for m in models:
        out.append(
            {
                "name": m.name,
                "creation_timestamp": millis(m.created_at),
                "last_updated_timestamp": millis(m.updated_at),
                "user_id": m.created_by or "",
                "description": m.description or "",
                "latest_versions": per_model[m.name],
                "tags": [{"key": k, "value": v} for k, v in tags[m.id].items()],
                "aliases": [{"alias": a, "version": str(n)} for a, n in alias_rows[m.id]],
            }
        )
    return out


def model_doc(s: Session, m: RegisteredModel, run_ids: RunIdMapper) -> dict[str, Any]:
    return model_docs(s, [m], run_ids)[0]

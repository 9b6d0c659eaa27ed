"""Read models built from the registry's rows: the wire objects for models and versions
(with their run's params and metrics), the model history, version comparison and lineage.

No rule is decided here except how to read a metric's direction for comparisons
(``higher_is_better``), which only comparisons use.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic_core import to_json
from sqlalchemy.orm import Session

from podstack.errors import BadRequest, NotFound, ValidationFailed
from podstack.schemas import registry as sch
from podstack.server.pagination import clamp_limit, decode_token, encode_token
from podstack.server.registry import hooks
from podstack.server.registry import model_pages as pages
from podstack.server.registry import repository as repo
from podstack.server.registry.lookup import get_model, get_version, resolve_in_model
from podstack.server.registry.models import ModelVersion, RegisteredModel
from podstack.server.registry.service import NewVersion
from podstack.server.tracking import service as tracking

# ---------------------------------------------------------------- models and versions


def _summary_doc(mv: pages.VersionBrief | None) -> dict[str, Any] | None:
    if mv is None:
        return None
    return {"version": mv.version, "stage": mv.stage, "created_at": mv.created_at}


def _model_docs(
    s: Session, models: Sequence[RegisteredModel | pages.ModelRow]
) -> list[dict[str, Any]]:
    """``sch.RegisteredModel`` as plain dicts, keys in the schema's field order (so their
    JSON is byte for byte what the schema would write), aliases empty. One query for the
    page: labels, plus latest/Production versions of the models that ever had one."""
    ids = [m.id for m in models]
    # next_version == 1: no version was ever created, so there is nothing to look up.
    labels, latest, prod = pages.list_extras(
        s, ids, [m.id for m in models if m.next_version > 1], "Production"
    )
    return [
        {
            "name": m.name,
            "description": m.description,
            "tags": labels[m.id],
            "created_by": m.created_by,
            "created_at": m.created_at,
            "updated_at": m.updated_at,
            "latest_version": _summary_doc(latest.get(m.id)),
            "production_version": _summary_doc(prod.get(m.id)),
            "aliases": {},
            "key_value_tags": {},
        }
        for m in models
    ]


def model_page_json(
    s: Session, models: Sequence[RegisteredModel | pages.ModelRow], next_page_token: str | None
) -> bytes:
    """``Page[sch.RegisteredModel]`` as JSON, serialised straight from the rows: building
    100 pydantic objects only to serialise them costs more than the search's query."""
    return to_json({"items": _model_docs(s, models), "next_page_token": next_page_token})


def model_views(
    s: Session,
    models: Sequence[RegisteredModel | pages.ModelRow],
    *,
    with_aliases: bool = False,
) -> list[sch.RegisteredModel]:
    """Batched: a page of up to 1000 models costs one query, not some per model (plus three
    per model ``with_aliases``: aliases and key-value tags are a single model's details)."""
    out = []
    for m, doc in zip(models, _model_docs(s, models), strict=True):
        if with_aliases:
            rows = repo.aliases_of_model(s, m.id)
            by_id = repo.versions_by_ids(s, [a.version_id for a in rows])
            doc["aliases"] = {a.alias: by_id[a.version_id].version for a in rows}
            doc["key_value_tags"] = repo.model_tags_of(s, [m.id])[m.id]
        for key in ("latest_version", "production_version"):
            if doc[key] is not None:
                doc[key] = sch.VersionSummary.model_construct(**doc[key])
        # model_construct: every value comes from typed database rows (see _lean_view).
        out.append(sch.RegisteredModel.model_construct(**doc))
    return out


def model_view(s: Session, m: RegisteredModel) -> sch.RegisteredModel:
    return model_views(s, [m], with_aliases=True)[0]


def version_views(
    s: Session, pairs: Sequence[tuple[RegisteredModel, ModelVersion]], *, detail: bool = False
) -> list[sch.ModelVersion]:
    """Lean views (tags, validation metrics, aliases, parent): one query for the three
    per-version parts plus one for parents if any. ``detail`` adds files and the source run
    (params, metrics, datasets, experiment), which cost several more queries per run."""
    ids = [mv.id for _, mv in pairs]
    tags, metrics, aliases = repo.version_extras(s, ids)
    parents = repo.version_refs(
        s, (mv.parent_version_id for _, mv in pairs if mv.parent_version_id)
    )
    files = repo.files_of_versions(s, ids) if detail else {}
    runs: dict[str, sch.SourceRun | None] = {}
    out = []
    for m, mv in pairs:
        parent = parents.get(mv.parent_version_id) if mv.parent_version_id else None
        view = _lean_view(m, mv, tags[mv.id], metrics[mv.id], aliases[mv.id], parent)
        if detail:
            view.files = [sch.VersionFile.model_validate(f) for f in files[mv.id]]
            if mv.source_run_id not in runs:
                runs[mv.source_run_id] = source_run(s, mv.source_run_id)
            view.source_run = runs[mv.source_run_id]
        out.append(view)
    return out


def _lean_view(
    m: RegisteredModel,
    mv: ModelVersion,
    tags: dict[str, str],
    metrics: dict[str, float],
    aliases: list[str],
    parent: tuple[str, int] | None,
) -> sch.ModelVersion:
    # model_construct: every value comes from typed database rows, so pydantic's
    # validation would only re-check what the columns already guarantee.
    return sch.ModelVersion.model_construct(
        model_name=m.name,
        version=mv.version,
        stage=mv.stage,
        description=mv.description,
        source_run_id=mv.source_run_id,
        artifact_path=mv.artifact_path,
        created_by=mv.created_by,
        created_at=mv.created_at,
        updated_at=mv.updated_at,
        stage_updated_at=mv.stage_updated_at,
        parent=sch.ParentRef(model_name=parent[0], version=parent[1]) if parent else None,
        tags=tags,
        validation_metrics=metrics,
        aliases=aliases,
        source_run=None,
        files=None,
        pending_request=None,
    )


def version_view(
    s: Session, m: RegisteredModel, mv: ModelVersion, *, detail: bool = True
) -> sch.ModelVersion:
    """One version; detailed (files, source run) unless ``detail=False``."""
    return version_views(s, [(m, mv)], detail=detail)[0]


def new_version_view(s: Session, new: NewVersion, *, detail: bool = False) -> sch.ModelVersion:
    """The view of a version created in this transaction, from what its creation already
    knows: a new version has exactly the given tags, no validation metrics and no aliases,
    so the lean view costs no query (``detail`` reads the files back, in the database's path
    order like get_model_version, and the source run)."""
    view = _lean_view(new.model, new.version, dict(new.tags), {}, [], new.parent)
    if detail:
        view.files = [sch.VersionFile.model_validate(f) for f in repo.files_of(s, new.version.id)]
        view.source_run = source_run(s, new.version.source_run_id)
    return view


def source_run(s: Session, run_id: str) -> sch.SourceRun | None:
    """The version's source run, or None when the caller cannot read its experiment (a grant
    on a model does not open the experiment it was trained in)."""
    found = tracking.find_run(s, run_id)
    if found is None:
        return None
    run = tracking.run_view(s, found)
    try:
        exp_name: str | None = tracking.get_experiment(s, run.experiment_id).name
    except NotFound:
        exp_name = None
    return sch.SourceRun(
        id=run.id,
        name=run.name,
        experiment_id=run.experiment_id,
        experiment_name=exp_name,
        status=run.status,
        start_time=run.start_time,
        end_time=run.end_time,
        params=run.params,
        metrics=run.metrics,
        datasets=run.datasets,
    )


def transition_views(m: RegisteredModel, rows: Sequence[Any]) -> list[sch.StageTransition]:
    return [
        sch.StageTransition(
            model_name=m.name,
            version=t.version,
            from_stage=t.from_stage,
            to_stage=t.to_stage,
            actor=t.actor,
            at=t.at,
            note=t.note,
            request_id=t.request_id,
        )
        for t in rows
    ]


# ---------------------------------------------------------------- history


def model_history(
    s: Session, name: str, limit: int | None = None, page_token: str | None = None
) -> tuple[list[sch.HistoryEntry], str | None]:
    """Stage transitions and alias moves, newest first. Keyset over the merged stream ordered
    by (at, kind, id) descending."""
    m = get_model(s, name)
    lim = clamp_limit(limit)
    token = decode_token(page_token, 3)
    t_after = a_after = None
    if token:
        try:
            at, kind, rid = datetime.fromisoformat(str(token[0])), int(token[1]), int(token[2])
        except (TypeError, ValueError):
            raise BadRequest("Invalid page_token.", {"page_token": page_token})
        # Within one timestamp stage rows come before alias rows (rank 1 > 0).
        t_after = (at, rid) if kind == 1 else (at, -1)
        a_after = (at, rid) if kind == 0 else (at, 2**62)
    merged: list[tuple[tuple[datetime, int, int], sch.HistoryEntry]] = []
    for t in repo.model_transitions_page(s, m.id, lim + 1, t_after):
        merged.append(
            (
                (t.at, 1, t.id),
                sch.HistoryEntry(
                    type="stage",
                    at=t.at,
                    actor=t.actor,
                    version=t.version,
                    from_stage=t.from_stage,
                    to_stage=t.to_stage,
                    note=t.note,
                    request_id=t.request_id,
                ),
            )
        )
    for a in repo.model_alias_page(s, m.id, lim + 1, a_after):
        merged.append(
            (
                (a.at, 0, a.id),
                sch.HistoryEntry(
                    type="alias",
                    at=a.at,
                    actor=a.actor,
                    version=a.version,
                    alias=a.alias,
                    alias_action=a.kind,
                    previous_version=a.previous_version,
                ),
            )
        )
    merged.sort(key=lambda x: x[0], reverse=True)
    page = merged[:lim]
    next_token = None
    if len(merged) > lim and page:
        at, kind, rid = page[-1][0]
        next_token = encode_token([at.isoformat(), kind, rid])
    return [e for _, e in page], next_token


# ---------------------------------------------------------------- compare

# Metrics whose name says "smaller is better". Substrings for distinctive words, whole
# name tokens for short abbreviations (so "mae" does not match "maestro_score").
_LOWER_SUBSTRINGS = ("loss", "error", "latency", "perplexity", "duration", "distance")
_LOWER_TOKENS = {
    "err",
    "mse",
    "mae",
    "rmse",
    "mape",
    "smape",
    "rmsle",
    "msle",
    "wer",
    "cer",
    "ter",
    "ppl",
    "time",
    "seconds",
    "secs",
    "ms",
    "fpr",
    "fnr",
    "far",
    "frr",
    "eer",
    "cost",
    "bytes",
    "mb",
    "gb",
    "size",
    "memory",
    "regret",
    "brier",
    "nll",
    "logloss",
    "hinge",
}
MAX_COMPARE = 20


def higher_is_better(key: str, overrides: Mapping[str, bool] | None = None) -> bool:
    """Whether a larger value of metric ``key`` is better: an explicit override wins, else
    names mentioning loss/error/latency/mse/mae/rmse/time… are lower-is-better."""
    if overrides and key in overrides:
        return bool(overrides[key])
    low = key.lower()
    if any(w in low for w in _LOWER_SUBSTRINGS):
        return False
    tokens = set(re.split(r"[^a-z0-9]+", low))
    return not (tokens & _LOWER_TOKENS)


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _metric_rows(
    keys: Sequence[str],
    source: str,
    numbers: list[int],
    values: Mapping[int, Mapping[str, float]],
    overrides: Mapping[str, bool] | None,
) -> list[sch.MetricComparison]:
    rows = []
    base = numbers[0]
    for key in keys:
        hib = higher_is_better(key, overrides)
        vals: dict[int, float | None] = {n: values[n].get(key) for n in numbers}
        b = vals[base]
        diffs: dict[int, float | None] = {
            n: (v - b) if _finite(v) and _finite(b) else None  # type: ignore[operator]
            for n, v in vals.items()
        }
        finite = [(v, n) for n, v in vals.items() if _finite(v)]
        best = None
        if finite:
            pick = max if hib else min
            best_value = pick(v for v, _ in finite)
            best = next(n for n in numbers if vals[n] == best_value)
        rows.append(
            sch.MetricComparison(
                key=key,
                source=source,  # type: ignore[arg-type]
                higher_is_better=hib,
                values=vals,
                differences=diffs,
                best_version=best,
            )
        )
    return rows


def _downsample(points: list[Any], max_points: int) -> list[Any]:
    """Evenly spaced points, always keeping the first and the last."""
    if len(points) <= max_points:
        return points
    step = (len(points) - 1) / (max_points - 1)
    return [points[round(i * step)] for i in range(max_points)]


def compare_versions(
    s: Session,
    name: str,
    versions: Sequence[Any],
    *,
    overrides: Mapping[str, bool] | None = None,
    max_points: int = 500,
) -> sch.VersionComparison:
    """Side by side: training metrics (the run's final values) and validation metrics with
    differences from the first version and the best version per metric; params split into
    changed and unchanged; downsampled training metric histories for charts."""
    m = get_model(s, name)
    if not versions:
        raise ValidationFailed("Give at least one version to compare.", {"versions": []})
    if not 2 <= max_points <= 10_000:
        raise ValidationFailed(
            "max_points must be between 2 and 10000.", {"max_points": max_points}
        )
    picked: list[ModelVersion] = []
    for ref in versions:
        mv = resolve_in_model(s, m, ref)
        if all(p.id != mv.id for p in picked):
            picked.append(mv)
    if len(picked) > MAX_COMPARE:
        raise ValidationFailed(
            f"Compare at most {MAX_COMPARE} versions at once ({len(picked)} given).",
            {"versions": len(picked), "max": MAX_COMPARE},
        )
    numbers = [mv.version for mv in picked]
    # Runs the caller cannot read (their experiment is not theirs) show no training data.
    found = [r for r in (tracking.find_run(s, mv.source_run_id) for mv in picked) if r]
    runs = {r.id: r for r in tracking.run_views(s, found)}
    training = {
        mv.version: runs[mv.source_run_id].metrics if mv.source_run_id in runs else {}
        for mv in picked
    }
    params = {
        mv.version: runs[mv.source_run_id].params if mv.source_run_id in runs else {}
        for mv in picked
    }
    validation = repo.metrics_of(s, [mv.id for mv in picked])
    validation_by_n = {mv.version: validation[mv.id] for mv in picked}

    t_keys = sorted({k for d in training.values() for k in d})
    v_keys = sorted({k for d in validation_by_n.values() for k in d})
    metrics = _metric_rows(t_keys, "training", numbers, training, overrides)
    metrics += _metric_rows(v_keys, "validation", numbers, validation_by_n, overrides)

    changed: list[sch.ParamComparison] = []
    unchanged: dict[str, str] = {}
    for key in sorted({k for d in params.values() for k in d}):
        vals = {n: params[n].get(key) for n in numbers}
        if len(set(vals.values())) == 1 and vals[numbers[0]] is not None:
            unchanged[key] = vals[numbers[0]]  # type: ignore[assignment]
        else:
            changed.append(sch.ParamComparison(key=key, values=vals))

    histories: dict[str, dict[int, sch.MetricSeries]] = {}
    for key in t_keys:
        per_version: dict[int, sch.MetricSeries] = {}
        for mv in picked:
            if key not in training[mv.version]:
                continue
            rows, _ = tracking.metric_history(s, mv.source_run_id, key, limit=100_000)
            pts = _downsample(list(rows), max_points)
            per_version[mv.version] = sch.MetricSeries(
                steps=[p.step for p in pts],
                values=[math.nan if p.value is None else p.value for p in pts],
            )
        histories[key] = per_version

    views = version_views(s, [(m, mv) for mv in picked])
    return sch.VersionComparison(
        model_name=m.name,
        baseline=numbers[0],
        versions=views,
        metrics=metrics,
        changed_params=changed,
        unchanged_params=unchanged,
        histories=histories,
    )


# ---------------------------------------------------------------- lineage

_MAX_ANCESTORS = 25


def _version_node(m_name: str, mv: ModelVersion) -> sch.LineageNode:
    return sch.LineageNode(
        id=f"model_version:{m_name}/{mv.version}",
        type="model_version",
        label=f"{m_name} v{mv.version}",
        data={
            "model_name": m_name,
            "version": mv.version,
            "stage": mv.stage,
            "source_run_id": mv.source_run_id,
            "artifact_path": mv.artifact_path,
            "created_at": mv.created_at.isoformat(),
        },
    )


def lineage(s: Session, name: str, version: Any) -> sch.LineageGraph:
    """Experiment -> run (with its params and datasets) -> this version; the chain of versions
    it was fine-tuned from, the versions fine-tuned from it, and whatever registered
    contributors add downstream (deployments)."""
    m, mv = get_version(s, name, version)
    root = _version_node(m.name, mv)
    nodes: dict[str, sch.LineageNode] = {root.id: root}
    edges: list[sch.LineageEdge] = []

    def add(node: sch.LineageNode) -> str:
        nodes.setdefault(node.id, node)
        return node.id

    run = source_run(s, mv.source_run_id)
    # None: the caller may read the model but not the experiment of its source run.
    if run is not None:
        run_id = add(
            sch.LineageNode(
                id=f"run:{run.id}",
                type="run",
                label=run.name or run.id,
                data={
                    "run_id": run.id,
                    "status": run.status.value,
                    "start_time": run.start_time.isoformat(),
                    "end_time": run.end_time.isoformat() if run.end_time else None,
                    "metrics": {
                        k: (v if math.isfinite(v) else str(v)) for k, v in run.metrics.items()
                    },
                },
            )
        )
        edges.append(sch.LineageEdge(source=run_id, target=root.id, relation="produced"))
        exp_id = add(
            sch.LineageNode(
                id=f"experiment:{run.experiment_id}",
                type="experiment",
                label=run.experiment_name or run.experiment_id,
                data={"experiment_id": run.experiment_id, "name": run.experiment_name},
            )
        )
        edges.append(sch.LineageEdge(source=exp_id, target=run_id, relation="contains"))
        if run.params:
            pid = add(
                sch.LineageNode(
                    id=f"params:{run.id}",
                    type="params",
                    label=f"{len(run.params)} params",
                    data={"params": run.params},
                )
            )
            edges.append(sch.LineageEdge(source=pid, target=run_id, relation="configured"))
        for i, ds in enumerate(run.datasets):
            did = add(
                sch.LineageNode(
                    id=f"dataset:{run.id}:{i}",
                    type="dataset",
                    label=ds.name,
                    data={
                        "name": ds.name,
                        "source_uri": ds.source_uri,
                        "digest": ds.digest,
                        "context": ds.context,
                    },
                )
            )
            edges.append(sch.LineageEdge(source=did, target=run_id, relation=ds.context or "input"))

    # Ancestors: the fine-tuning chain up to its base model (bounded against cycles).
    child = mv
    for _ in range(_MAX_ANCESTORS):
        if child.parent_version_id is None:
            break
        parent = repo.versions_by_ids(s, [child.parent_version_id]).get(child.parent_version_id)
        if parent is None:
            break
        pm = repo.models_by_ids(s, [parent.model_id])[parent.model_id]
        pnode = _version_node(pm.name, parent)
        if pnode.id in nodes:
            break
        add(pnode)
        child_id = (
            f"model_version:{m.name if child is mv else _model_name(s, child)}/{child.version}"
        )
        edges.append(sch.LineageEdge(source=pnode.id, target=child_id, relation="fine_tuned_into"))
        child = parent
    for kid in repo.children_of(s, mv.id):
        km = repo.models_by_ids(s, [kid.model_id])[kid.model_id]
        kid_id = add(_version_node(km.name, kid))
        edges.append(sch.LineageEdge(source=root.id, target=kid_id, relation="fine_tuned_into"))

    for contribute in hooks.LINEAGE_CONTRIBUTORS:
        extra = contribute(s, m, mv)
        if extra:
            more_nodes, more_edges = extra
            for n in more_nodes:
                add(n)
            edges.extend(more_edges)
    return sch.LineageGraph(root=root.id, nodes=list(nodes.values()), edges=edges)


def _model_name(s: Session, mv: ModelVersion) -> str:
    return repo.models_by_ids(s, [mv.model_id])[mv.model_id].name

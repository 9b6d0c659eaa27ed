"""Tracking rules: experiments, runs, params, metrics, tags, datasets, run search."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from podstack.errors import Conflict, NotFound, ValidationFailed
from podstack.schemas import tracking as sch
from podstack.server.audit import service as audit
from podstack.server.db.base import as_utc, model_to_dict, new_id, utcnow
from podstack.server.pagination import clamp_limit, decode_token, encode_token, page_of
from podstack.server.permissions import service as permissions
from podstack.server.tracking import filters, metric_writes
from podstack.server.tracking import repository as repo
from podstack.server.tracking.models import (
    Experiment,
    LatestMetric,
    Metric,
    Param,
    Run,
    RunDataset,
    RunTag,
)

TERMINAL = {"FINISHED", "FAILED", "KILLED"}
_EXP_FIELDS = ["id", "name", "description", "tags", "archived"]


# ---------------------------------------------------------------- experiments


def create_experiment(s: Session, actor: str, body: sch.ExperimentCreate) -> Experiment:
    if repo.experiment_name_taken(s, body.name):
        raise Conflict(f"Experiment {body.name!r} already exists.", {"name": body.name})
    now = utcnow()
    exp = Experiment(
        id=new_id("exp"),
        name=body.name,
        description=body.description,
        tags=dict(body.tags),
        archived=False,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    s.add(exp)
    s.flush()
    audit.record(
        s, actor, "experiment.create", "experiment", exp.id, None, model_to_dict(exp, _EXP_FIELDS)
    )
    return exp


def get_experiment(s: Session, ref: str) -> Experiment:
    exp = repo.get_experiment(s, ref)
    if exp is None:
        raise NotFound(f"Experiment {ref!r} does not exist.", {"experiment": ref})
    return exp


def resolve_or_create_experiment(s: Session, actor: str, ref: str) -> Experiment:
    """``start_run(experiment_id=X)``: X is an id or a name; an unknown X becomes a new
    experiment named X (the seed's ``experiment_id="sentiment-exp"``)."""
    exp = repo.get_experiment(s, ref)
    if exp is not None:
        return exp
    if permissions.is_restricted(s):
        with permissions.unrestricted(s):
            hidden = repo.get_experiment(s, ref) is not None
        if hidden:
            # It exists but the caller cannot read it: the answer a missing one would get
            # from every other route, rather than a new experiment named after its id.
            raise NotFound(f"Experiment {ref!r} does not exist.", {"experiment": ref})
    return create_experiment(s, actor, sch.ExperimentCreate(name=ref))


def update_experiment(s: Session, actor: str, ref: str, body: sch.ExperimentUpdate) -> Experiment:
    exp = get_experiment(s, ref)
    # Archiving is the soft delete (what MLflow's experiments/delete does here, and what
    # restore undoes): it hides the experiment from everyone's lists, so it needs MANAGE like
    # the hard delete; every other change needs EDIT.
    archiving = body.archived is not None and body.archived != exp.archived
    level = permissions.MANAGE if archiving else permissions.EDIT
    permissions.require_experiment(s, exp, level, ref=ref)
    before = model_to_dict(exp, _EXP_FIELDS)
    if body.name is not None and body.name != exp.name:
        if repo.experiment_name_taken(s, body.name, exclude_id=exp.id):
            raise Conflict(f"Experiment {body.name!r} already exists.", {"name": body.name})
        exp.name = body.name
    if body.description is not None:
        exp.description = body.description
    if body.tags is not None:
        exp.tags = dict(body.tags)
    if body.archived is not None:
        exp.archived = body.archived
    exp.updated_at = utcnow()
    audit.record(
        s, actor, "experiment.update", "experiment", exp.id, before, model_to_dict(exp, _EXP_FIELDS)
    )
    return exp


def delete_experiment(s: Session, actor: str, ref: str) -> None:
    exp = get_experiment(s, ref)
    permissions.require_experiment(s, exp, permissions.MANAGE, ref=ref)
    before = model_to_dict(exp, _EXP_FIELDS)
    _ensure_runs_deletable(
        s, [r for r in s.scalars(select(Run.id).where(Run.experiment_id == exp.id))]
    )
    s.delete(exp)
    audit.record(s, actor, "experiment.delete", "experiment", exp.id, before, None)


# Other capabilities (the registry) register a check that refuses deleting runs they use.
_RUN_DELETE_GUARDS: list[Any] = []


def register_run_delete_guard(fn: Any) -> None:
    _RUN_DELETE_GUARDS.append(fn)


def _ensure_runs_deletable(s: Session, run_ids: list[str]) -> None:
    for guard in _RUN_DELETE_GUARDS:
        guard(s, run_ids)


def list_experiments(
    s: Session,
    *,
    q: str | None = None,
    include_archived: bool = False,
    limit: int | None = None,
    page_token: str | None = None,
) -> tuple[list[Experiment], str | None]:
    lim = clamp_limit(limit)
    rows = repo.list_experiments(
        s, q=q, include_archived=include_archived, limit=lim, after=decode_token(page_token, 2)
    )
    return page_of(rows, lim, lambda e: [e.name, e.id])


# ---------------------------------------------------------------- runs


def create_run(s: Session, actor: str, body: sch.RunCreate) -> Run:
    exp = resolve_or_create_experiment(s, actor, body.experiment_id)
    permissions.require_experiment(s, exp, permissions.EDIT, ref=body.experiment_id)
    if exp.archived:
        raise Conflict(
            f"Experiment {exp.name!r} is archived; unarchive it to add runs.",
            {"experiment": exp.id},
        )
    if body.id is not None and repo.get_run(s, body.id) is not None:
        raise Conflict(f"Run {body.id} already exists.", {"run_id": body.id})
    now = utcnow()
    run = Run(
        id=body.id or new_id("run"),
        experiment_id=exp.id,
        name=body.run_name,
        status="RUNNING",
        start_time=as_utc(body.start_time) if body.start_time else now,
        user=actor,
        notes=body.notes,
        updated_at=now,
    )
    s.add(run)
    s.flush()
    repo.upsert_tags(s, run.id, dict(body.tags))
    audit.record(
        s,
        actor,
        "run.create",
        "run",
        run.id,
        None,
        {"experiment_id": exp.id, "name": run.name, "tags": dict(body.tags)},
    )
    return run


def get_run(s: Session, run_id: str, *, for_update: bool = False) -> Run:
    run = repo.get_run(s, run_id, for_update=for_update)
    if run is None:
        raise NotFound(f"Run {run_id!r} does not exist.", {"run_id": run_id})
    return run


def find_run(s: Session, run_id: str) -> Run | None:
    """The run, or None (for callers to whom a missing run is not an error)."""
    return repo.get_run(s, run_id)


def latest_metric_rows(s: Session, run_id: str) -> list[LatestMetric]:
    """The run's latest value of each metric, with its step and timestamp, by key."""
    return repo.latest_metric_rows(s, run_id)


def editable_run(s: Session, run_id: str) -> Run:
    """The run, for a change: the caller needs EDIT on its experiment."""
    run = get_run(s, run_id)
    permissions.require_experiment_id(s, run.experiment_id, permissions.EDIT)
    return run


def require_active_run(s: Session, run_id: str) -> Run:
    """Params, metrics, artifacts and datasets may only be logged while a run is RUNNING
    (by holders of EDIT on its experiment)."""
    run = editable_run(s, run_id)
    if run.status in TERMINAL:
        raise Conflict(
            f"Run {run_id} is {run.status}; nothing more can be logged to it. Start a new run.",
            {"run_id": run_id, "status": run.status},
        )
    return run


def update_run(s: Session, actor: str, run_id: str, body: sch.RunUpdate) -> Run:
    run = editable_run(s, run_id)
    before = model_to_dict(run, ["status", "name", "notes", "end_time"])
    if body.status is not None and body.status.value != run.status:
        if run.status in TERMINAL:
            raise Conflict(
                f"Run {run_id} already ended as {run.status}.",
                {"run_id": run_id, "status": run.status},
            )
        run.status = body.status.value
        if body.status.value in TERMINAL:
            run.end_time = body.end_time or utcnow()
    elif body.end_time is not None:
        run.end_time = body.end_time
    if body.name is not None:
        run.name = body.name
    if body.notes is not None:
        run.notes = body.notes
    run.updated_at = utcnow()
    audit.record(
        s,
        actor,
        "run.update",
        "run",
        run.id,
        before,
        model_to_dict(run, ["status", "name", "notes", "end_time"]),
    )
    return run


def delete_run(s: Session, actor: str, run_id: str) -> None:
    run = editable_run(s, run_id)
    _ensure_runs_deletable(s, [run.id])
    s.delete(run)
    audit.record(s, actor, "run.delete", "run", run_id, {"experiment_id": run.experiment_id}, None)


def log_params(s: Session, actor: str, run_id: str, params: dict[str, str]) -> None:
    require_active_run(s, run_id)
    existing = repo.existing_params(s, run_id, params.keys())
    changed = {
        k: {"logged": existing[k], "new": v}
        for k, v in params.items()
        if k in existing and existing[k] != v
    }
    if changed:
        keys = ", ".join(sorted(changed))
        raise Conflict(
            f"Params are immutable once logged; different value for: {keys}.",
            {"run_id": run_id, "conflicts": changed},
        )
    new = {k: v for k, v in params.items() if k not in existing}
    repo.insert_params(s, run_id, new)
    if new:
        audit.record(s, actor, "run.log_params", "run", run_id, None, {"params": new})


def log_metrics(s: Session, actor: str, run_id: str, body: sch.LogMetrics) -> int:
    require_active_run(s, run_id)
    now = utcnow()
    # Plain tuples in metric_writes.METRIC_COLUMNS order: this loop runs once per point (issue 8).
    rows: list[metric_writes.MetricRow] = []
    if body.metrics:
        step = body.step or 0
        # Aware, so it compares with the server's "now" when picking a key's latest point.
        ts = as_utc(body.timestamp) if body.timestamp else now
        rows += [(run_id, k, v if v == v else None, step, ts) for k, v in body.metrics.items()]
    if body.points:
        for p in body.points:
            v = p["value"]
            ts = p.get("timestamp")
            ts = now if ts is None else as_utc(ts)
            # v != v only for NaN: NULL encodes it (SQLite cannot store NaN).
            rows.append((run_id, p["key"], v if v == v else None, p.get("step", 0), ts))
    if not rows:
        raise ValidationFailed("No metrics given: send 'metrics' or 'points'.", {})
    metric_writes.insert_metrics(s, rows)
    # Per key, the point with the highest step, the latest timestamp on ties (later in the
    # request wins a full tie, as the upsert's >= does across requests), and the key's min and
    # max over the request (NULL, i.e. NaN, is skipped; the upsert merges them with the stored
    # ones). ~0.1 ms per 1,000 points.
    latest: dict[str, metric_writes.MetricRow] = {}
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for r in rows:
        key, v = r[1], r[2]
        cur = latest.get(key)
        if cur is None or r[3] > cur[3] or (r[3] == cur[3] and r[4] >= cur[4]):
            latest[key] = r
        if v is None:
            continue
        low = lo.get(key)
        if low is None:
            lo[key] = hi[key] = v
        elif v < low:
            lo[key] = v
        elif v > hi[key]:
            hi[key] = v
    metric_writes.upsert_latest(s, [(*r, lo.get(k), hi.get(k)) for k, r in latest.items()])
    audit.record(
        s,
        actor,
        "run.log_metrics",
        "run",
        run_id,
        None,
        {"points": len(rows), "keys": sorted(latest)},
    )
    return len(rows)


def set_tags(s: Session, actor: str, run_id: str, tags: dict[str, str]) -> None:
    editable_run(s, run_id)
    repo.upsert_tags(s, run_id, tags)
    audit.record(s, actor, "run.set_tags", "run", run_id, None, {"tags": tags})


def delete_tag(s: Session, actor: str, run_id: str, key: str) -> None:
    editable_run(s, run_id)
    if not repo.delete_tag(s, run_id, key):
        raise NotFound(f"Run {run_id} has no tag {key!r}.", {"run_id": run_id, "key": key})
    audit.record(s, actor, "run.delete_tag", "run", run_id, {"key": key}, None)


def log_dataset(s: Session, actor: str, run_id: str, body: sch.DatasetIn) -> RunDataset:
    require_active_run(s, run_id)
    ds = RunDataset(
        run_id=run_id,
        name=body.name,
        source_uri=body.source_uri,
        digest=body.digest,
        context=body.context,
        created_at=utcnow(),
    )
    repo.add_dataset(s, ds)
    s.flush()
    audit.record(s, actor, "run.log_dataset", "run", run_id, None, body.model_dump())
    return ds


def metric_history(
    s: Session, run_id: str, key: str, limit: int | None = None, page_token: str | None = None
) -> tuple[list[Metric], str | None]:
    get_run(s, run_id)
    lim = limit or 10_000
    if lim < 1 or lim > 100_000:
        raise ValidationFailed("limit must be between 1 and 100000.", {"limit": lim})
    rows = repo.metric_history(s, run_id, key, lim, decode_token(page_token, 2))
    if not rows and page_token is None and key not in repo.metric_keys(s, run_id):
        raise NotFound(f"Run {run_id} has no metric {key!r}.", {"run_id": run_id, "key": key})
    return page_of(rows, lim, lambda m: [m.step, m.id])


def metric_point(m: Metric | LatestMetric) -> sch.MetricPoint:
    return sch.MetricPoint(
        key=m.key,
        value=math.nan if m.value is None else m.value,
        step=m.step,
        timestamp=m.timestamp,
    )


# ---------------------------------------------------------------- views


def run_views(s: Session, runs: list[Run]) -> list[sch.Run]:
    ids = [r.id for r in runs]
    if not ids:
        return []
    params = repo.run_params(s, ids)
    tags = repo.run_tags(s, ids)
    metrics = repo.run_latest_metrics(s, ids)
    datasets = repo.run_datasets(s, ids)
    return [
        sch.Run(
            id=r.id,
            experiment_id=r.experiment_id,
            name=r.name,
            status=sch.RunStatus(r.status),
            start_time=r.start_time,
            end_time=r.end_time,
            user=r.user,
            notes=r.notes,
            tags=tags[r.id],
            params=params[r.id],
            metrics=metrics[r.id],
            datasets=[sch.Dataset.model_validate(d) for d in datasets[r.id]],
        )
        for r in runs
    ]


def run_view(s: Session, run: Run) -> sch.Run:
    return run_views(s, [run])[0]


@dataclass(frozen=True)
class DatasetFact:
    name: str
    digest: str | None
    source_uri: str | None


@dataclass(frozen=True)
class RunFacts:
    """What a model version's provenance records of its source run: its params, tags and
    datasets (no metrics: signing every new version should not read them)."""

    id: str
    experiment_id: str
    params: dict[str, str]
    tags: dict[str, str]
    datasets: list[DatasetFact]


def run_facts(s: Session, run_id: str) -> RunFacts:
    """One query (it runs in every version's creating transaction)."""
    experiment_id: str | None = None
    params: dict[str, str] = {}
    tags: dict[str, str] = {}
    datasets: list[tuple[int, DatasetFact]] = []
    for kind, a, b, c, n in repo.run_fact_rows(s, run_id):
        if kind == "r":
            experiment_id = a
        elif kind == "p":
            params[a] = b
        elif kind == "t":
            tags[a] = b
        else:
            datasets.append((n, DatasetFact(name=a, digest=b, source_uri=c)))
    if experiment_id is None:
        get_run(s, run_id)  # raises the usual "Run ... does not exist."
    return RunFacts(
        id=run_id,
        experiment_id=str(experiment_id),
        params=params,
        tags=tags,
        datasets=[d for _, d in sorted(datasets, key=lambda x: x[0])],
    )


# ---------------------------------------------------------------- search

_ATTR_COLUMNS = {
    "status": Run.status,
    "name": Run.name,
    "run_name": Run.name,
    "start_time": Run.start_time,
    "end_time": Run.end_time,
    "user": Run.user,
    "id": Run.id,
}


def _compare(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "contains":
        text = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return col.like(f"%{text}%", escape="\\")
    return {
        "=": col == value,
        "!=": col != value,
        ">": col > value,
        ">=": col >= value,
        "<": col < value,
        "<=": col <= value,
    }[op]


def _cond_sql(c: filters.Cond) -> ColumnElement[bool]:
    if c.kind == "metric":
        return exists().where(
            LatestMetric.run_id == Run.id,
            LatestMetric.key == c.key,
            _compare(LatestMetric.value, c.op, c.value),
        )
    if c.kind == "param":
        return exists().where(
            Param.run_id == Run.id, Param.key == c.key, _compare(Param.value, c.op, c.value)
        )
    if c.kind == "tag":
        return exists().where(
            RunTag.run_id == Run.id, RunTag.key == c.key, _compare(RunTag.value, c.op, c.value)
        )
    col = _ATTR_COLUMNS[c.key]
    value: Any = c.value
    if c.key in ("start_time", "end_time"):
        try:
            value = datetime.fromisoformat(str(c.value))
        except ValueError:
            raise ValidationFailed(
                f"attributes.{c.key} needs an ISO date/time.", {"value": c.value}
            )
    elif c.key == "status":
        value = str(value).upper()
    return _compare(col, c.op, value)


def search_runs(s: Session, body: sch.RunSearch) -> tuple[list[sch.Run], str | None]:
    conds = filters.parse_filter(body.filter)
    conds += [filters.make_cond(c.kind, c.key, c.op, c.value) for c in body.conditions]
    where = [_cond_sql(c) for c in conds]
    exp_ids: list[str] | None = None
    if body.experiment_ids is not None:
        exp_ids = [get_experiment(s, ref).id for ref in body.experiment_ids]
    if isinstance(body.order_by, str):
        kind, key, desc = filters.parse_order(body.order_by)
    elif body.order_by is not None:
        kind, key, desc = body.order_by.kind, body.order_by.key, body.order_by.desc
        if kind == "attribute" and key not in _ATTR_COLUMNS:
            raise ValidationFailed(f"Unknown attribute {key!r} in order_by.", {"key": key})
    else:
        kind, key, desc = "attribute", "start_time", True
    if kind == "metric":
        sort_expr = repo.latest_metric_value(Run.id, key)
    elif kind == "param":
        sort_expr = repo.param_value(Run.id, key)
    else:
        sort_expr = _ATTR_COLUMNS[key]
    after = decode_token(body.page_token, 3)
    if (
        after is not None
        and after[1] is not None
        and kind == "attribute"
        and key in ("start_time", "end_time")
    ):
        after[1] = repo.as_datetime(after[1])
    rows = repo.search_runs(
        s,
        experiment_ids=exp_ids,
        status=body.status.value if body.status else None,
        where=[and_(*where)] if where else [],
        order=(sort_expr, desc),
        limit=body.limit,
        after=after,
    )
    items = rows[: body.limit]
    token = None
    if len(rows) > body.limit and items:
        last_run, last_val = items[-1]
        val = last_val.isoformat() if isinstance(last_val, datetime) else last_val
        token = encode_token([last_val is None, val, last_run.id])
    return run_views(s, [r for r, _ in items]), token

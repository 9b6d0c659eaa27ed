"""Every tracking query lives here except the metric bulk writes (``insert_metrics``,
``upsert_latest``), which are in metric_writes.py."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    Select,
    String,
    and_,
    cast,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from podstack.server.tracking.models import (
    Experiment,
    LatestMetric,
    Metric,
    Param,
    Run,
    RunDataset,
    RunTag,
)


def get_experiment(s: Session, ref: str) -> Experiment | None:
    exp = s.get(Experiment, ref)
    if exp is None:
        exp = s.scalar(select(Experiment).where(Experiment.name == ref))
    return exp


def experiment_name_taken(s: Session, name: str, exclude_id: str | None = None) -> bool:
    q = select(Experiment.id).where(Experiment.name == name)
    if exclude_id:
        q = q.where(Experiment.id != exclude_id)
    return s.scalar(q) is not None


def list_experiments(
    s: Session, *, q: str | None, include_archived: bool, limit: int, after: list[Any] | None
) -> Sequence[Experiment]:
    stmt = select(Experiment).order_by(Experiment.name, Experiment.id).limit(limit + 1)
    if not include_archived:
        stmt = stmt.where(Experiment.archived.is_(False))
    if q:
        like = f"%{_escape_like(q.lower())}%"
        stmt = stmt.where(
            or_(
                func.lower(Experiment.name).like(like, escape="\\"),
                func.lower(Experiment.description).like(like, escape="\\"),
            )
        )
    if after:
        stmt = stmt.where(
            or_(
                Experiment.name > after[0],
                and_(Experiment.name == after[0], Experiment.id > after[1]),
            )
        )
    return s.scalars(stmt).all()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def get_run(s: Session, run_id: str, *, for_update: bool = False) -> Run | None:
    if for_update:
        return s.scalar(select(Run).where(Run.id == run_id).with_for_update())
    return s.get(Run, run_id)


def run_fact_rows(s: Session, run_id: str) -> Sequence[Row[Any]]:
    """A run's experiment, params, tags and datasets in one round trip (every new version's
    signature records them): rows of (kind, a, b, c, n), kind ``r`` (a = experiment id), ``p``
    and ``t`` (a = key, b = value) or ``d`` (a = name, b = digest, c = source URI, n = id)."""
    text_null = cast(null(), String)
    run = select(
        literal("r").label("kind"),
        Run.experiment_id.label("a"),
        text_null.label("b"),
        text_null.label("c"),
        literal(0).label("n"),
    ).where(Run.id == run_id)
    params = select(literal("p"), Param.key, Param.value, text_null, literal(0))
    tags = select(literal("t"), RunTag.key, RunTag.value, text_null, literal(0))
    datasets = select(
        literal("d"), RunDataset.name, RunDataset.digest, RunDataset.source_uri, RunDataset.id
    )
    return s.execute(
        union_all(
            run,
            params.where(Param.run_id == run_id),
            tags.where(RunTag.run_id == run_id),
            datasets.where(RunDataset.run_id == run_id),
        )
    ).all()


def run_params(s: Session, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {r: {} for r in run_ids}
    for p in s.scalars(select(Param).where(Param.run_id.in_(run_ids))):
        out[p.run_id][p.key] = p.value
    return out


def run_tags(s: Session, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {r: {} for r in run_ids}
    for t in s.scalars(select(RunTag).where(RunTag.run_id.in_(run_ids))):
        out[t.run_id][t.key] = t.value
    return out


def run_latest_metrics(s: Session, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {r: {} for r in run_ids}
    for m in s.scalars(select(LatestMetric).where(LatestMetric.run_id.in_(run_ids))):
        out[m.run_id][m.key] = math.nan if m.value is None else m.value
    return out


def latest_metric_rows(s: Session, run_id: str) -> list[LatestMetric]:
    """A run's latest metric rows (value, step, timestamp), by key."""
    q = select(LatestMetric).where(LatestMetric.run_id == run_id).order_by(LatestMetric.key)
    return list(s.scalars(q))


def run_datasets(s: Session, run_ids: Sequence[str]) -> dict[str, list[RunDataset]]:
    out: dict[str, list[RunDataset]] = {r: [] for r in run_ids}
    q = select(RunDataset).where(RunDataset.run_id.in_(run_ids)).order_by(RunDataset.id)
    for d in s.scalars(q):
        out[d.run_id].append(d)
    return out


def existing_params(s: Session, run_id: str, keys: Iterable[str]) -> dict[str, str]:
    q = select(Param.key, Param.value).where(Param.run_id == run_id, Param.key.in_(list(keys)))
    return {k: v for k, v in s.execute(q)}


def insert_params(s: Session, run_id: str, params: dict[str, str]) -> None:
    if params:
        s.execute(
            insert(Param), [{"run_id": run_id, "key": k, "value": v} for k, v in params.items()]
        )


def upsert_tags(s: Session, run_id: str, tags: dict[str, str]) -> None:
    if not tags:
        return
    ins = _insert_for(s, RunTag).values(
        [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()]
    )
    s.execute(
        ins.on_conflict_do_update(
            index_elements=["run_id", "key"], set_={"value": ins.excluded.value}
        )
    )


def delete_tag(s: Session, run_id: str, key: str) -> int:
    return s.execute(delete(RunTag).where(RunTag.run_id == run_id, RunTag.key == key)).rowcount


def metric_history(
    s: Session, run_id: str, key: str, limit: int, after: list[Any] | None
) -> Sequence[Metric]:
    q = (
        select(Metric)
        .where(Metric.run_id == run_id, Metric.key == key)
        .order_by(Metric.step, Metric.id)
        .limit(limit + 1)
    )
    if after:
        q = q.where(
            or_(Metric.step > after[0], and_(Metric.step == after[0], Metric.id > after[1]))
        )
    return s.scalars(q).all()


def metric_keys(s: Session, run_id: str) -> list[str]:
    q = select(LatestMetric.key).where(LatestMetric.run_id == run_id).order_by(LatestMetric.key)
    return list(s.scalars(q))


def add_dataset(s: Session, ds: RunDataset) -> None:
    s.add(ds)


def _insert_for(s: Session, model: Any) -> Any:
    return (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(model)


# ---------------------------------------------------------------- run search


def search_runs(
    s: Session,
    *,
    experiment_ids: list[str] | None,
    status: str | None,
    where: list[ColumnElement[bool]],
    order: tuple[Any, bool],
    limit: int,
    after: list[Any] | None,
) -> Sequence[tuple[Run, Any]]:
    """``order`` is (sort expression, descending). Rows without a sort value come last.
    Keyset on (value is null, value, id)."""
    sort_expr, desc = order
    stmt: Select[Any] = select(Run, sort_expr.label("sort_value"))
    if experiment_ids is not None:
        stmt = stmt.where(Run.experiment_id.in_(experiment_ids))
    if status:
        stmt = stmt.where(Run.status == status)
    for cond in where:
        stmt = stmt.where(cond)
    is_null = sort_expr.is_(None)
    if after is not None:
        a_null, a_val, a_id = after
        if a_null:
            stmt = stmt.where(and_(is_null, Run.id > a_id))
        else:
            beyond = sort_expr < a_val if desc else sort_expr > a_val
            stmt = stmt.where(or_(is_null, beyond, and_(sort_expr == a_val, Run.id > a_id)))
    ordered = sort_expr.desc() if desc else sort_expr.asc()
    stmt = stmt.order_by(is_null.asc(), ordered, Run.id.asc())
    return s.execute(stmt.limit(limit + 1)).all()


def latest_metric_value(run_col: Any, key: str) -> Any:
    return (
        select(LatestMetric.value)
        .where(LatestMetric.run_id == run_col, LatestMetric.key == key)
        .scalar_subquery()
    )


def param_value(run_col: Any, key: str) -> Any:
    return select(Param.value).where(Param.run_id == run_col, Param.key == key).scalar_subquery()


def tag_value(run_col: Any, key: str) -> Any:
    return select(RunTag.value).where(RunTag.run_id == run_col, RunTag.key == key).scalar_subquery()


def as_datetime(v: Any) -> datetime:
    return v if isinstance(v, datetime) else datetime.fromisoformat(str(v))


# ---------------------------------------------------------------- run comparison (issue 20)


def metric_histories(
    s: Session, run_ids: Sequence[str], keys: Sequence[str], max_points: int
) -> list[tuple[str, str, int, datetime, float | None]]:
    """(run_id, key, step, timestamp, value) of the runs' histories of ``keys``, ordered by
    run, key and step, thinned in SQL to about ``max_points`` evenly spaced points per series
    (the last point always kept): a 100,000-step curve never crosses the wire whole."""
    if not run_ids or not keys:
        return []
    # Safe under the read filter: the only caller (compare.compare_runs) passes ids of runs it
    # loaded through the ORM, so every one is readable (an unreadable id is its 404).
    part = (Metric.run_id, Metric.key)
    order = (Metric.step, Metric.id)
    inner = (
        select(
            Metric.run_id,
            Metric.key,
            Metric.step,
            Metric.timestamp,
            Metric.value,
            func.row_number().over(partition_by=part, order_by=order).label("rn"),
            func.count().over(partition_by=part).label("cnt"),
        )
        .where(Metric.run_id.in_(list(run_ids)), Metric.key.in_(list(keys)))
        .subquery()
    )
    # Floor division (SQLAlchemy 2: "//"): a row is kept when it starts a new bucket.
    keep = or_(
        inner.c.cnt <= max_points,
        inner.c.rn == inner.c.cnt,
        (inner.c.rn * max_points) // inner.c.cnt != ((inner.c.rn - 1) * max_points) // inner.c.cnt,
    )
    q = (
        select(inner.c.run_id, inner.c.key, inner.c.step, inner.c.timestamp, inner.c.value)
        .where(keep)
        .order_by(inner.c.run_id, inner.c.key, inner.c.rn)
    )
    return [(r, k, st, as_datetime(ts), v) for r, k, st, ts, v in s.execute(q)]


def metric_extremes(
    s: Session, run_ids: Sequence[str], keys: Sequence[str]
) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """Per run and key: (min, max) over the whole history (NaN points ignored), as the metric
    upsert keeps them on latest_metrics."""
    out: dict[str, dict[str, tuple[float | None, float | None]]] = {r: {} for r in run_ids}
    if not run_ids or not keys:
        return out
    q = select(
        LatestMetric.run_id, LatestMetric.key, LatestMetric.min_value, LatestMetric.max_value
    ).where(LatestMetric.run_id.in_(list(run_ids)), LatestMetric.key.in_(list(keys)))
    for run_id, key, lo, hi in s.execute(q):
        out[run_id][key] = (lo, hi)
    return out


def metric_extreme_value(run_col: Any, key: str, which: str) -> Any:
    """Sort expression: a run's minimum or maximum of metric ``key`` (``which`` min|max): one
    primary-key read of its latest_metrics row, not an aggregate over its history."""
    col = LatestMetric.min_value if which == "min" else LatestMetric.max_value
    return (
        select(col).where(LatestMetric.run_id == run_col, LatestMetric.key == key).scalar_subquery()
    )


def experiment_keys(
    s: Session, experiment_ids: Sequence[str], limit: int, recent_runs: int | None = None
) -> dict[str, list[str]]:
    """The distinct param, metric and tag keys used by the experiments' runs (the column
    chooser's choices), at most ``limit`` of each, sorted. With ``recent_runs``, only the keys
    of that many most recently started runs: a bounded read whatever the experiment's size."""
    runs = select(Run.id).where(Run.experiment_id.in_(list(experiment_ids)))
    if recent_runs is not None:
        runs = runs.order_by(Run.start_time.desc()).limit(recent_runs)
    out: dict[str, list[str]] = {}
    for name, model in (("params", Param), ("metrics", LatestMetric), ("tags", RunTag)):
        q = (
            select(model.key)
            .where(model.run_id.in_(runs))
            .group_by(model.key)
            .order_by(model.key)
            .limit(limit)
        )
        out[name] = list(s.scalars(q))
    return out


def group_runs(
    s: Session,
    *,
    experiment_ids: list[str],
    status: str | None,
    where: list[ColumnElement[bool]],
    group_kind: str,
    group_key: str,
    metric_keys: Sequence[str],
    limit: int,
) -> tuple[list[tuple[str | None, int]], list[tuple[str | None, str, Any, Any, Any, int]]]:
    """Runs grouped by the value of a param or tag (``group_kind`` param|tag; runs without it
    form the ``None`` group): [(value, runs)] by value, at most ``limit`` groups, and
    [(value, metric key, mean, min, max, runs with a value)] of the latest metric values —
    all aggregated by the database, whatever the number of runs."""
    from sqlalchemy.orm import aliased

    g = aliased(Param if group_kind == "param" else RunTag)
    on = and_(g.run_id == Run.id, g.key == group_key)

    def scoped(stmt: Select[Any]) -> Select[Any]:
        stmt = stmt.where(Run.experiment_id.in_(experiment_ids))
        if status:
            stmt = stmt.where(Run.status == status)
        for cond in where:
            stmt = stmt.where(cond)
        return stmt

    counts_q = scoped(
        select(g.value, func.count(Run.id)).select_from(Run).outerjoin(g, on).group_by(g.value)
    )
    counts = [(v, int(n)) for v, n in s.execute(counts_q.order_by(g.value).limit(limit))]
    aggs: list[tuple[str | None, str, Any, Any, Any, int]] = []
    if metric_keys and counts:
        lm = aliased(LatestMetric)  # the filter's EXISTS on latest_metrics must not correlate to it
        aggs_q = scoped(
            select(
                g.value,
                lm.key,
                func.avg(lm.value),
                func.min(lm.value),
                func.max(lm.value),
                func.count(lm.value),
            )
            .select_from(Run)
            .outerjoin(g, on)
            .join(lm, lm.run_id == Run.id)
            .where(lm.key.in_(list(metric_keys)))
            .group_by(g.value, lm.key)
        )
        aggs = [(v, k, mean, lo, hi, int(n)) for v, k, mean, lo, hi, n in s.execute(aggs_q)]
    return counts, aggs


# ------------------------------------------------------- MLflow-compatible search (issue 17)


def search_runs_ordered(
    s: Session,
    *,
    experiment_ids: Sequence[str],
    where: Sequence[ColumnElement[bool]],
    order_by: Sequence[tuple[Any, bool]],
    limit: int,
    offset: int,
) -> list[Run]:
    """Runs of the experiments matching ``where``, sorted by several (expression, descending)
    keys -- rows without a value last for each -- then by id; an OFFSET page, as MLflow's own
    page tokens are (its clients may send several order_by keys, which a keyset over one key
    cannot follow)."""
    stmt: Select[Any] = select(Run).where(Run.experiment_id.in_(list(experiment_ids)))
    for cond in where:
        stmt = stmt.where(cond)
    for expr, desc in order_by:
        stmt = stmt.order_by(expr.is_(None).asc(), expr.desc() if desc else expr.asc())
    stmt = stmt.order_by(Run.id.asc()).limit(limit + 1).offset(offset)
    return list(s.scalars(stmt))


def search_experiments_ordered(
    s: Session,
    *,
    where: Sequence[ColumnElement[bool]],
    order_by: Sequence[tuple[Any, bool]],
    limit: int,
    offset: int,
) -> list[Experiment]:
    """Experiments matching ``where`` in the given order, then by id (OFFSET page, as above)."""
    stmt: Select[Any] = select(Experiment)
    for cond in where:
        stmt = stmt.where(cond)
    for expr, desc in order_by:
        stmt = stmt.order_by(expr.is_(None).asc(), expr.desc() if desc else expr.asc())
    stmt = stmt.order_by(Experiment.id.asc()).limit(limit + 1).offset(offset)
    return list(s.scalars(stmt))


def latest_metric_rows_of(s: Session, run_ids: Sequence[str]) -> dict[str, list[LatestMetric]]:
    """Per run: its latest metric rows (value, step, timestamp), by key -- for a page of runs
    in one query."""
    out: dict[str, list[LatestMetric]] = {r: [] for r in run_ids}
    if not run_ids:
        return out
    q = (
        select(LatestMetric)
        .where(LatestMetric.run_id.in_(list(run_ids)))
        .order_by(LatestMetric.run_id, LatestMetric.key)
    )
    for m in s.scalars(q):
        out[m.run_id].append(m)
    return out


def experiment_by_name(s: Session, name: str) -> Experiment | None:
    return s.scalar(select(Experiment).where(Experiment.name == name))

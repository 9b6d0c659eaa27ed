"""Run comparison and the runs table's extras (issue 20): which runs may be compared, their
metric histories side by side, the table's chosen columns (any param, tag, or a metric's last,
minimum or maximum value, each sortable), and runs grouped by a param or tag with their metrics
aggregated by the database.

The rules live here once; the web pages (``web/experiments.py``, ``web/run_compare.py``) only
call these functions. Queries are in ``repository.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_
from sqlalchemy.orm import Session

from podstack.errors import NotFound, ValidationFailed
from podstack.schemas import tracking as sch
from podstack.server.pagination import decode_token, encode_token
from podstack.server.tracking import filters, service
from podstack.server.tracking import repository as repo
from podstack.server.tracking.models import Run

MIN_RUNS = 2
MAX_RUNS = 20
# Points per (run, metric) curve sent to the browser; thinned evenly in SQL beyond this.
MAX_POINTS = 1000
MAX_METRICS = 40
MAX_COLUMNS = 30
MAX_GROUPS = 200
MAX_KEYS = 500

# Column kinds of the runs table: "metric" is the latest value (as the filter language's
# ``metrics.x``), "metric_min"/"metric_max" the extreme over the whole history.
COLUMN_KINDS = {
    "param": "param",
    "tag": "tag",
    "metric": "metric (last)",
    "metric_min": "metric (min)",
    "metric_max": "metric (max)",
}
GROUP_KINDS = ("param", "tag")


# ---------------------------------------------------------------- which runs


def parse_run_ids(values: list[str]) -> list[str]:
    """``runs=a,b,c`` or ``runs=a&runs=b``: the distinct ids in the order given, 2 to 20."""
    ids = list(dict.fromkeys(p.strip() for v in values for p in v.split(",") if p.strip()))
    if len(ids) < MIN_RUNS:
        raise ValidationFailed(
            f"Select at least {MIN_RUNS} runs to compare (tick their boxes in an experiment's "
            f"runs table, then press Compare); got {len(ids)}.",
            {"runs": ids},
        )
    if len(ids) > MAX_RUNS:
        raise ValidationFailed(
            f"At most {MAX_RUNS} runs can be compared at once; got {len(ids)}. "
            "Untick some runs and try again.",
            {"runs": len(ids), "max": MAX_RUNS},
        )
    return ids


# ---------------------------------------------------------------- the comparison


@dataclass
class Series:
    """One run's curve of one metric: steps, seconds since the run's first point of that
    metric, wall-clock times, values (None for NaN or infinities)."""

    run_id: str
    steps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)


@dataclass
class RunComparison:
    runs: list[sch.Run]
    experiments: dict[str, str]  # id -> name
    metric_keys: list[str]
    histories: dict[str, list[Series]]  # metric key -> one series per run that logged it
    param_keys: list[str]
    tag_keys: list[str]
    # Keys whose value is not the same in every run (a missing value counts as different).
    differing: dict[str, set[str]]  # "params" | "metrics" | "tags" -> keys
    more_metrics: int = 0


def _differing(values: list[dict[str, Any]], keys: list[str]) -> set[str]:
    out = set()
    for k in keys:
        seen = {repr(v.get(k, _ABSENT)) for v in values}
        if len(seen) > 1:
            out.add(k)
    return out


_ABSENT = object()


def compare_runs(s: Session, run_ids: list[str], max_points: int = MAX_POINTS) -> RunComparison:
    """The runs (in the order given) with everything the compare view shows. Unknown ids are
    a 404 naming them all."""
    ids = parse_run_ids(run_ids)
    rows = {r.id: r for r in (repo.get_run(s, rid) for rid in ids) if r is not None}
    missing = [rid for rid in ids if rid not in rows]
    if missing:
        raise NotFound(
            f"No run with id {', '.join(repr(m) for m in missing)}. Check the compare URL, "
            "or pick the runs again from an experiment's runs table.",
            {"runs": missing},
        )
    runs = service.run_views(s, [rows[rid] for rid in ids])
    exp_names = {
        e: service.get_experiment(s, e).name for e in dict.fromkeys(r.experiment_id for r in runs)
    }
    all_metrics = sorted({k for r in runs for k in r.metrics})
    keys = all_metrics[:MAX_METRICS]
    histories: dict[str, dict[str, Series]] = {k: {} for k in keys}
    firsts: dict[tuple[str, str], datetime] = {}
    for run_id, key, step, ts, value in repo.metric_histories(s, ids, keys, max_points):
        ser = histories[key].setdefault(run_id, Series(run_id))
        first = firsts.setdefault((run_id, key), ts)
        ser.steps.append(step)
        ser.seconds.append(round((ts - first).total_seconds(), 3))
        ser.times.append(ts)
        ser.values.append(value if value is not None and math.isfinite(value) else None)
    param_keys = sorted({k for r in runs for k in r.params})
    tag_keys = sorted({k for r in runs for k in r.tags})
    return RunComparison(
        runs=runs,
        experiments=exp_names,
        metric_keys=keys,
        # Series in the order of the runs, so a run keeps its colour on every chart.
        histories={k: [v[r.id] for r in runs if r.id in v] for k, v in histories.items()},
        param_keys=param_keys,
        tag_keys=tag_keys,
        differing={
            "params": _differing([r.params for r in runs], param_keys),
            "metrics": _differing([r.metrics for r in runs], all_metrics),
            "tags": _differing([r.tags for r in runs], tag_keys),
        },
        more_metrics=max(0, len(all_metrics) - MAX_METRICS),
    )


# ---------------------------------------------------------------- runs table columns


@dataclass(frozen=True)
class Column:
    kind: str  # one of COLUMN_KINDS
    key: str

    @property
    def token(self) -> str:
        return f"{self.kind}:{self.key}"

    @property
    def label(self) -> str:
        suffix = {"metric_min": " (min)", "metric_max": " (max)"}.get(self.kind, "")
        return self.key + suffix


def parse_column(text: str) -> Column:
    kind, sep, key = text.strip().partition(":")
    if not sep or kind not in COLUMN_KINDS or not key or len(key) > 250:
        raise ValidationFailed(
            f"Unknown column {text[:100]!r}: use <kind>:<key> with kind one of "
            f"{', '.join(COLUMN_KINDS)} (e.g. metric_max:accuracy, param:lr, tag:team).",
            {"column": text[:100]},
        )
    return Column(kind, key)


def parse_columns(values: list[str]) -> list[Column]:
    cols = list(dict.fromkeys(parse_column(t) for t in values if t.strip()))
    if len(cols) > MAX_COLUMNS:
        raise ValidationFailed(
            f"At most {MAX_COLUMNS} columns can be shown; got {len(cols)}.",
            {"columns": len(cols), "max": MAX_COLUMNS},
        )
    return cols


def column_choices(
    s: Session, experiment_ids: list[str], recent_runs: int | None = None
) -> dict[str, list[str]]:
    """Every param, metric and tag key the experiments' runs use (the column chooser), or
    with ``recent_runs`` those of the latest runs only (cheap enough for every page view)."""
    return repo.experiment_keys(s, experiment_ids, MAX_KEYS, recent_runs)


@dataclass
class RunsPage:
    runs: list[sch.Run]
    next_token: str | None
    # run id -> column token -> value, for the chosen columns (min/max need extra reads).
    cells: dict[str, dict[str, Any]]


def _where(filter_text: str | None) -> list[Any]:
    conds = [service._cond_sql(c) for c in filters.parse_filter(filter_text)]
    return [and_(*conds)] if conds else []


def runs_page(
    s: Session,
    *,
    experiment_ids: list[str],
    filter_text: str | None,
    status: str | None,
    sort_kind: str,
    sort_key: str,
    desc: bool,
    columns: list[Column],
    limit: int,
    page_token: str | None,
) -> RunsPage:
    """One keyset page of the runs table. Sorting by an attribute, a param or a metric's last
    value is the run search's own (``service.search_runs``); a tag or a metric's min/max sorts
    the same way (rows without a value last, keyset on (is null, value, id))."""
    exp_ids = [service.get_experiment(s, ref).id for ref in experiment_ids]
    run_status = sch.RunStatus(status) if status else None
    if sort_kind in ("attribute", "metric", "param"):
        search = sch.RunSearch(
            experiment_ids=exp_ids,
            filter=filter_text,
            status=run_status,
            order_by=sch.OrderBy(kind=sort_kind, key=sort_key, desc=desc),  # type: ignore[arg-type]
            limit=limit,
            page_token=page_token,
        )
        runs, token = service.search_runs(s, search)
    elif sort_kind in ("tag", "metric_min", "metric_max"):
        if sort_kind == "tag":
            sort_expr = repo.tag_value(Run.id, sort_key)
        else:
            sort_expr = repo.metric_extreme_value(Run.id, sort_key, sort_kind[len("metric_") :])
        rows = repo.search_runs(
            s,
            experiment_ids=exp_ids,
            status=run_status.value if run_status else None,
            where=_where(filter_text),
            order=(sort_expr, desc),
            limit=limit,
            after=decode_token(page_token, 3),
        )
        items = rows[:limit]
        token = None
        if len(rows) > limit and items:
            last_run, last_val = items[-1]
            token = encode_token([last_val is None, last_val, last_run.id])
        runs = service.run_views(s, [r for r, _ in items])
    else:
        raise ValidationFailed(
            f"Cannot sort by {sort_kind!r}: use attribute, {', '.join(COLUMN_KINDS)}.",
            {"sort": sort_kind},
        )
    return RunsPage(runs=runs, next_token=token, cells=table_cells(s, runs, columns))


def table_cells(
    s: Session, runs: list[sch.Run], columns: list[Column]
) -> dict[str, dict[str, Any]]:
    extreme_keys = sorted({c.key for c in columns if c.kind in ("metric_min", "metric_max")})
    extremes = repo.metric_extremes(s, [r.id for r in runs], extreme_keys)
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        row: dict[str, Any] = {}
        for c in columns:
            if c.kind == "param":
                row[c.token] = r.params.get(c.key)
            elif c.kind == "tag":
                row[c.token] = r.tags.get(c.key)
            elif c.kind == "metric":
                row[c.token] = r.metrics.get(c.key)
            else:
                lo_hi = extremes[r.id].get(c.key)
                row[c.token] = None if lo_hi is None else lo_hi[0 if c.kind == "metric_min" else 1]
        out[r.id] = row
    return out


# ---------------------------------------------------------------- group by


@dataclass
class Aggregate:
    mean: float | None
    min: float | None
    max: float | None
    count: int


@dataclass
class Group:
    value: str | None  # None: the runs that do not have the param/tag
    runs: int
    metrics: dict[str, Aggregate]


def parse_group(text: str) -> tuple[str, str]:
    kind, sep, key = text.strip().partition(":")
    if not sep or kind not in GROUP_KINDS or not key or len(key) > 250:
        raise ValidationFailed(
            f"Cannot group by {text[:100]!r}: use param:<key> or tag:<key> (e.g. param:optimizer).",
            {"group": text[:100]},
        )
    return kind, key


def group_runs(
    s: Session,
    *,
    experiment_ids: list[str],
    filter_text: str | None,
    status: str | None,
    group_by: str,
    metric_keys: list[str],
) -> list[Group]:
    """The runs matching the filter, grouped by a param's or tag's value, with the mean, min,
    max and count of each metric's latest value per group (computed in SQL)."""
    kind, key = parse_group(group_by)
    exp_ids = [service.get_experiment(s, ref).id for ref in experiment_ids]
    counts, aggs = repo.group_runs(
        s,
        experiment_ids=exp_ids,
        status=sch.RunStatus(status).value if status else None,
        where=_where(filter_text),
        group_kind=kind,
        group_key=key,
        metric_keys=metric_keys[:MAX_COLUMNS],
        limit=MAX_GROUPS,
    )
    groups = {v: Group(value=v, runs=n, metrics={}) for v, n in counts}
    for v, k, mean, lo, hi, n in aggs:
        if v in groups:
            groups[v].metrics[k] = Aggregate(
                mean=None if mean is None else float(mean),
                min=None if lo is None else float(lo),
                max=None if hi is None else float(hi),
                count=n,
            )
    # Runs without the key last, the rest by value as the database sorted them.
    return sorted(groups.values(), key=lambda g: g.value is None)

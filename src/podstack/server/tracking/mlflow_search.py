"""Run and experiment search in MLflow's grammar, compiled to SQL (issue 17).

The MLflow-compatible API (``podstack.server.mlflow_compat``) parses MLflow's filter and
order_by strings into conditions (``mlflow_compat.search.Cond`` / ``Order``: plain data with
``kind``, ``key``, ``op``, ``value`` / ``desc``); this module turns them into WHERE and ORDER
BY clauses over the tracking tables, so the database does the filtering and paging whatever
the number of runs. Run ids in conditions arrive already translated to ours.

MLflow's semantics kept: ``LIKE`` is case-sensitive (SQLite's LIKE is not, so SQLite gets the
equivalent GLOB), ``ILIKE`` is not; a ``!=`` on a param or tag only matches runs that have it;
runs without a sort value come last whatever the direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, exists, false, func, not_, or_, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from podstack.errors import ValidationFailed
from podstack.server.tracking import repository as repo
from podstack.server.tracking.models import (
    Experiment,
    LatestMetric,
    Param,
    Run,
    RunDataset,
    RunTag,
)

# MLflow's experiment description is its tag "mlflow.note.content"; ours is a column.
NOTE_TAG = "mlflow.note.content"

_RUN_ATTRS: dict[str, Any] = {
    "run_id": Run.id,
    "run_name": Run.name,
    "status": Run.status,
    "user_id": Run.user,
    "start_time": Run.start_time,
    "created": Run.start_time,
    "end_time": Run.end_time,
}
_TIME_ATTRS = ("start_time", "end_time", "created", "creation_time", "last_update_time")


def _millis(value: float) -> datetime:
    return datetime.fromtimestamp(value / 1000.0, tz=UTC)


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _like(col: Any, op: str, pattern: str, dialect: str) -> ColumnElement[bool]:
    if op == "ILIKE":
        return func.lower(col).like(pattern.lower())
    if dialect == "sqlite":
        # SQLite's LIKE ignores ASCII case; MLflow's LIKE does not. GLOB is case-sensitive.
        glob = "".join("*" if c == "%" else "?" if c == "_" else _glob_escape(c) for c in pattern)
        return col.op("GLOB")(glob)
    return col.like(pattern)


def _compare(col: Any, op: str, value: Any, dialect: str) -> ColumnElement[bool]:
    if op in ("LIKE", "ILIKE"):
        return _like(col, op, str(value), dialect)
    if op == "IN":
        return col.in_(list(value))
    if op == "NOT IN":
        return col.not_in(list(value))
    return {
        "=": lambda: col == value,
        "!=": lambda: col != value,
        ">": lambda: col > value,
        ">=": lambda: col >= value,
        "<": lambda: col < value,
        "<=": lambda: col <= value,
    }[op]()


def _keyed(model: Any, key: str, op: str, value: Any, dialect: str) -> ColumnElement[bool]:
    has = exists().where(model.run_id == Run.id, model.key == key)
    if op == "IS NULL":
        return not_(has)
    if op == "IS NOT NULL":
        return has
    return exists().where(
        model.run_id == Run.id, model.key == key, _compare(model.value, op, value, dialect)
    )


def run_condition(c: Any, dialect: str) -> ColumnElement[bool]:
    """One MLflow condition on runs as SQL."""
    if c.kind == "metric":
        return _keyed(LatestMetric, c.key, c.op, c.value, dialect)
    if c.kind == "param":
        return _keyed(Param, c.key, c.op, c.value, dialect)
    if c.kind == "tag":
        return _keyed(RunTag, c.key, c.op, c.value, dialect)
    if c.kind == "dataset":
        col = {"name": RunDataset.name, "digest": RunDataset.digest}.get(c.key, RunDataset.context)
        return exists().where(RunDataset.run_id == Run.id, _compare(col, c.op, c.value, dialect))
    if c.key == "lifecycle_stage":
        # Runs here are live until deleted (deletion is permanent): every run is "active".
        matches = _compare_constant("active", c.op, c.value)
        return true() if matches else false()
    if c.key == "artifact_uri":
        raise ValidationFailed(
            "Filtering runs by attributes.artifact_uri is not supported; filter by run_id.",
            {"key": c.key},
        )
    col = _RUN_ATTRS[c.key]
    if c.op in ("IS NULL", "IS NOT NULL"):
        return col.is_(None) if c.op == "IS NULL" else col.is_not(None)
    value = _millis(c.value) if c.key in _TIME_ATTRS else c.value
    if c.key == "status" and isinstance(value, str) and c.op in ("=", "!="):
        value = value.upper()
    return _compare(col, c.op, value, dialect)


def _compare_constant(actual: str, op: str, value: Any) -> bool:
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    if op in ("IN", "NOT IN"):
        return (actual in value) == (op == "IN")
    if op in ("LIKE", "ILIKE"):
        import fnmatch

        pat = str(value).replace("%", "*").replace("_", "?")
        return fnmatch.fnmatchcase(
            actual.lower() if op == "ILIKE" else actual, pat.lower() if op == "ILIKE" else pat
        )
    return False


def run_sort_key(o: Any) -> Any:
    if o.kind == "metric":
        return repo.latest_metric_value(Run.id, o.key)
    if o.kind == "param":
        return repo.param_value(Run.id, o.key)
    if o.kind == "tag":
        return repo.tag_value(Run.id, o.key)
    col = _RUN_ATTRS.get(o.key)
    if col is None:
        raise ValidationFailed(
            f"Cannot order runs by attributes.{o.key}; valid: {', '.join(_RUN_ATTRS)}.",
            {"key": o.key},
        )
    return col


def search_runs(
    s: Session,
    *,
    experiment_ids: Sequence[str],
    conditions: Sequence[Any],
    order: Sequence[Any],
    limit: int,
    offset: int,
) -> list[Run]:
    """``limit + 1`` runs at most (the extra one says a next page exists)."""
    dialect = s.get_bind().dialect.name
    where = [run_condition(c, dialect) for c in conditions]
    order_by = [(run_sort_key(o), o.desc) for o in order]
    if not order_by:
        order_by = [(Run.start_time, True)]  # MLflow's default: newest first
    return repo.search_runs_ordered(
        s,
        experiment_ids=experiment_ids,
        where=[and_(*where)] if where else [],
        order_by=order_by,
        limit=limit,
        offset=offset,
    )


# ---------------------------------------------------------------- experiments

_EXP_ATTRS: dict[str, Any] = {
    "name": Experiment.name,
    "experiment_id": Experiment.id,
    "creation_time": Experiment.created_at,
    "last_update_time": Experiment.updated_at,
}


def _experiment_tag(key: str) -> Any:
    if key == NOTE_TAG:
        return Experiment.description
    return Experiment.tags[key].as_string()


def experiment_condition(c: Any, dialect: str) -> ColumnElement[bool]:
    if c.kind == "tag":
        col = _experiment_tag(c.key)
    elif c.key == "lifecycle_stage":
        if c.op not in ("=", "!=", "IN", "NOT IN"):
            raise ValidationFailed("lifecycle_stage compares with =, !=, IN or NOT IN.", {})
        wanted = {c.value} if isinstance(c.value, str) else set(c.value)
        archived = [stage == "deleted" for stage in wanted & {"active", "deleted"}]
        cond = or_(*[Experiment.archived.is_(a) for a in archived]) if archived else false()
        return not_(cond) if c.op in ("!=", "NOT IN") else cond
    else:
        col = _EXP_ATTRS[c.key]
    if c.op in ("IS NULL", "IS NOT NULL"):
        return col.is_(None) if c.op == "IS NULL" else col.is_not(None)
    value = _millis(c.value) if c.key in _TIME_ATTRS and c.kind == "attribute" else c.value
    return _compare(col, c.op, value, dialect)


def search_experiments(
    s: Session,
    *,
    view_archived: bool | None,
    conditions: Sequence[Any],
    order: Sequence[Any],
    limit: int,
    offset: int,
) -> list[Experiment]:
    """``view_archived``: False active only, True deleted (archived) only, None both."""
    dialect = s.get_bind().dialect.name
    where = [experiment_condition(c, dialect) for c in conditions]
    if view_archived is not None:
        where.append(Experiment.archived.is_(view_archived))
    order_by: list[tuple[Any, bool]] = []
    for o in order:
        if o.kind == "tag":
            order_by.append((_experiment_tag(o.key), o.desc))
        elif o.key in _EXP_ATTRS:
            order_by.append((_EXP_ATTRS[o.key], o.desc))
        else:
            raise ValidationFailed(
                f"Cannot order experiments by {o.key!r}; valid: {', '.join(_EXP_ATTRS)}.", {}
            )
    if not order_by:
        # MLflow's default: newest first.
        order_by = [(Experiment.created_at, True)]
    return repo.search_experiments_ordered(
        s, where=where, order_by=order_by, limit=limit, offset=offset
    )


def latest_metric_rows_of(s: Session, run_ids: Sequence[str]) -> dict[str, list[LatestMetric]]:
    return repo.latest_metric_rows_of(s, run_ids)


# ---------------------------------------------------------------- MLflow's default experiment

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"


def ensure_default_experiment(s: Session, actor: str) -> Experiment:
    """MLflow's default experiment "0" (where a run goes when no experiment was chosen): an
    experiment whose id is literally "0", created on first use, named "Default" (or "Default
    (MLflow)" when a Podstack experiment already holds that name)."""
    exp = s.get(Experiment, DEFAULT_EXPERIMENT_ID)
    if exp is not None:
        return exp
    from podstack.server.audit import service as audit
    from podstack.server.db.base import utcnow

    name = DEFAULT_EXPERIMENT_NAME
    if repo.experiment_name_taken(s, name):
        name = f"{DEFAULT_EXPERIMENT_NAME} (MLflow)"
    now = utcnow()
    exp = Experiment(
        id=DEFAULT_EXPERIMENT_ID,
        name=name,
        description=None,
        tags={},
        archived=False,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    try:
        # A savepoint: two first uses at once (several workers) must not fail the request.
        with s.begin_nested():
            s.add(exp)
            s.flush()
    except IntegrityError:
        existing = s.get(Experiment, DEFAULT_EXPERIMENT_ID)
        if existing is None:
            raise
        return existing
    audit.record(s, actor, "experiment.create", "experiment", exp.id, None, {"name": name})
    return exp


def experiment_by_name(s: Session, name: str) -> Experiment | None:
    """By name only (MLflow's get-by-name; ``service.get_experiment`` also takes ids)."""
    return repo.experiment_by_name(s, name)


def compare(col: Any, op: str, value: Any, dialect: str) -> ColumnElement[bool]:
    """One MLflow comparison on a column (for the MLflow API's own tables: logged models)."""
    return _compare(col, op, value, dialect)

"""Every tracking query lives here."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, func, insert, or_, select
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


def insert_metrics(s: Session, rows: list[dict[str, Any]]) -> None:
    # A Core executemany on the table, not the ORM bulk path (insert(Metric)): same SQL, but it
    # skips the ORM's per-row bookkeeping: ~8 -> ~5.7 ms CPU per 1,000 rows on SQLite (issue 8).
    s.execute(Metric.__table__.insert(), rows)


def upsert_latest(s: Session, rows: list[dict[str, Any]]) -> None:
    """Keeps latest_metrics at the highest step (latest timestamp on ties) per key."""
    # Rows go as executemany parameters, not baked in with .values(rows): a multi-row VALUES
    # statement has no cache key, so SQLAlchemy compiled it afresh on every request (~2 ms of
    # CPU per metrics request; issue 8). This shape compiles once. ``rows`` holds each key once.
    ins = _insert_for(s, LatestMetric.__table__)
    newer = or_(
        ins.excluded.step > LatestMetric.step,
        and_(
            ins.excluded.step == LatestMetric.step, ins.excluded.timestamp >= LatestMetric.timestamp
        ),
    )
    s.execute(
        ins.on_conflict_do_update(
            index_elements=["run_id", "key"],
            set_={
                "value": ins.excluded.value,
                "step": ins.excluded.step,
                "timestamp": ins.excluded.timestamp,
            },
            where=newer,
        ),
        rows,
    )


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

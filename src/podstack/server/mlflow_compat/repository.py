"""Every query on the MLflow API's own table (logged models)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from podstack.server.mlflow_compat.models import LoggedModel


def get(s: Session, model_id: str) -> LoggedModel | None:
    return s.get(LoggedModel, model_id)


def add(s: Session, model: LoggedModel) -> None:
    s.add(model)
    s.flush()


def delete(s: Session, model: LoggedModel) -> None:
    s.delete(model)


def paths_in_run(s: Session, run_id: str) -> set[str]:
    q = select(LoggedModel.artifact_path).where(LoggedModel.run_id == run_id)
    return set(s.scalars(q))


def of_source_runs(s: Session, run_ids: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {r: [] for r in run_ids}
    if not run_ids:
        return out
    q = (
        select(LoggedModel.source_run_id, LoggedModel.id)
        .where(LoggedModel.source_run_id.in_(list(run_ids)))
        .order_by(LoggedModel.created_at, LoggedModel.id)
    )
    for run_id, model_id in s.execute(q):
        out[run_id].append(model_id)
    return out


def search(
    s: Session,
    *,
    experiment_ids: Sequence[str],
    where: Sequence[ColumnElement[bool]],
    order_by: Sequence[tuple[Any, bool]],
    limit: int,
    offset: int,
) -> list[LoggedModel]:
    stmt: Select[Any] = select(LoggedModel)
    if experiment_ids:
        stmt = stmt.where(LoggedModel.experiment_id.in_(list(experiment_ids)))
    for cond in where:
        stmt = stmt.where(cond)
    for expr, desc in order_by:
        stmt = stmt.order_by(expr.is_(None).asc(), expr.desc() if desc else expr.asc())
    stmt = stmt.order_by(LoggedModel.id.asc()).limit(limit + 1).offset(offset)
    return list(s.scalars(stmt))

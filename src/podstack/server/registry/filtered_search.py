"""Searching models and versions by a list of field conditions, compiled to one SQL query.

The MLflow-compatible API (``mlflow_compat/registry.py``) parses MLflow's filter strings
(``name LIKE 'fraud%' AND tags.team = 'risk'``) into ``Condition``s; the SQL is built here,
beside the registry's other queries, so the rules of what a condition means live in one place
and run in the database on both SQLite and PostgreSQL. Pages are offsets into the ordered
result (``order`` is any list of columns, so there is no single keyset to page on).

Meaning of each field:

- ``name``: the model's name. ``=``/``!=``/``IN``/``NOT IN`` exact; ``LIKE`` case-sensitive
  (also on SQLite, whose own LIKE ignores case); ``ILIKE`` case-insensitive.
- ``tag:<key>``: the model's (or version's) key-value tag ``key``; a row without that tag
  does not match (not even ``!=``). On models a label counts as a tag whose value is ``""``.
- ``no_tag:<key>``: the row has no key-value tag ``key`` whose value matches (so a row
  without the tag matches).
- versions only: ``version`` (numbers, ``= != < <= > >=``, ``IN``), ``run_id`` (our run ids).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, false, func, not_, or_, select, true
from sqlalchemy.orm import Session

from podstack.server.registry.models import (
    ModelLabel,
    ModelVersion,
    RegisteredModel,
    RegisteredModelTag,
    VersionTag,
)

STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
NUMBER_OPS = ("=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN")


@dataclass(frozen=True)
class Condition:
    field: str  # name | version | run_id | tag:<key>
    op: str  # one of STRING_OPS / NUMBER_OPS
    value: Any  # a string, an int, or a tuple of them for IN / NOT IN


@dataclass(frozen=True)
class Order:
    field: str  # name | version | created | updated
    ascending: bool


def _glob(pattern: str) -> str:
    """A LIKE pattern as the equivalent GLOB pattern (SQLite's case-sensitive match)."""
    out = []
    for ch in pattern:
        if ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        elif ch in "*?[":
            out.append(f"[{ch}]")
        else:
            out.append(ch)
    return "".join(out)


def _string_match(s: Session, col: Any, op: str, value: Any) -> Any:
    if op == "=":
        return col == value
    if op == "!=":
        return col != value
    if op == "IN":
        return col.in_(list(value))
    if op == "NOT IN":
        return col.not_in(list(value))
    if op == "ILIKE":
        return func.lower(col).like(func.lower(value))
    # LIKE is case-sensitive in MLflow (and on PostgreSQL); SQLite's LIKE ignores ASCII case,
    # its GLOB does not.
    if s.get_bind().dialect.name == "sqlite":
        return col.op("GLOB")(_glob(value))
    return col.like(value)


def _python_match(op: str, value: Any, text: str) -> bool:
    """Does ``text`` match? (For labels: a label is a tag whose value is ``""``.)"""
    if op == "=":
        return text == value
    if op == "!=":
        return text != value
    if op in ("LIKE", "ILIKE"):
        rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in value)
        return re.fullmatch(rx, text, re.IGNORECASE if op == "ILIKE" else 0) is not None
    if op == "IN":
        return text in value
    return text not in value


def _model_condition(s: Session, c: Condition) -> Any:
    if c.field == "name":
        return _string_match(s, RegisteredModel.name, c.op, c.value)
    if c.field.startswith("no_tag:"):
        return not_(
            exists().where(
                RegisteredModelTag.model_id == RegisteredModel.id,
                RegisteredModelTag.key == c.field.removeprefix("no_tag:"),
                _string_match(s, RegisteredModelTag.value, c.op, c.value),
            )
        )
    key = c.field.removeprefix("tag:")
    kv = exists().where(
        RegisteredModelTag.model_id == RegisteredModel.id,
        RegisteredModelTag.key == key,
        _string_match(s, RegisteredModelTag.value, c.op, c.value),
    )
    if not _python_match(c.op, c.value, ""):
        return kv
    # A label named ``key`` is the tag (key, ""), unless a key-value tag of that name exists.
    label = exists().where(ModelLabel.model_id == RegisteredModel.id, ModelLabel.label == key)
    shadowed = exists().where(
        RegisteredModelTag.model_id == RegisteredModel.id, RegisteredModelTag.key == key
    )
    return or_(kv, and_(label, not_(shadowed)))


def _number_match(col: Any, op: str, value: Any) -> Any:
    return {
        "=": lambda: col == value,
        "!=": lambda: col != value,
        "<": lambda: col < value,
        "<=": lambda: col <= value,
        ">": lambda: col > value,
        ">=": lambda: col >= value,
        "IN": lambda: col.in_(list(value)),
        "NOT IN": lambda: col.not_in(list(value)),
    }[op]()


def _version_condition(s: Session, c: Condition) -> Any:
    if c.field == "name":
        return _string_match(s, RegisteredModel.name, c.op, c.value)
    if c.field == "version":
        return _number_match(ModelVersion.version, c.op, c.value)
    if c.field == "run_id":
        return _string_match(s, ModelVersion.source_run_id, c.op, c.value)
    negated = c.field.startswith("no_tag:")
    key = c.field.removeprefix("no_tag:" if negated else "tag:")
    found = exists().where(
        VersionTag.version_id == ModelVersion.id,
        VersionTag.key == key,
        _string_match(s, VersionTag.value, c.op, c.value),
    )
    return not_(found) if negated else found


_MODEL_ORDER = {
    "name": RegisteredModel.name,
    "created": RegisteredModel.created_at,
    "updated": RegisteredModel.updated_at,
}
_VERSION_ORDER = {
    "name": RegisteredModel.name,
    "version": ModelVersion.version,
    "created": ModelVersion.created_at,
    "updated": ModelVersion.updated_at,
}


def _ordered(
    s: Session, q: Any, columns: dict[str, Any], order: Sequence[Order], tiebreak: Any
) -> Any:
    pg = s.get_bind().dialect.name == "postgresql"
    keys = []
    for o in order:
        col = columns[o.field]
        if o.field == "name" and pg:
            # Code point order, as on SQLite (BINARY) and in the registry's own name order:
            # the same page on both databases, whatever the server's locale.
            col = col.collate("C")
        keys.append(col.asc() if o.ascending else col.desc())
    return q.order_by(*keys, tiebreak)


def search_models(
    s: Session,
    conditions: Sequence[Condition],
    order: Sequence[Order],
    *,
    limit: int,
    offset: int,
) -> tuple[list[RegisteredModel], bool]:
    """One page of models matching every condition, and whether more follow."""
    where = [_model_condition(s, c) for c in conditions]
    q = select(RegisteredModel).where(and_(true(), *where))
    q = _ordered(s, q, _MODEL_ORDER, order or [Order("name", True)], RegisteredModel.id.asc())
    rows = list(s.scalars(q.offset(offset).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def search_versions(
    s: Session,
    conditions: Sequence[Condition],
    order: Sequence[Order],
    *,
    limit: int,
    offset: int,
) -> tuple[list[tuple[RegisteredModel, ModelVersion]], bool]:
    """One page of (model, version) pairs matching every condition, and whether more follow."""
    if any(c.op in ("IN", "NOT IN") and not c.value for c in conditions):
        # "x IN ()" is not valid SQL everywhere: an empty IN matches nothing.
        where: list[Any] = [false()]
    else:
        where = [_version_condition(s, c) for c in conditions]
    q = (
        select(RegisteredModel, ModelVersion)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        .where(and_(true(), *where))
    )
    default = [Order("updated", False), Order("name", True), Order("version", False)]
    q = _ordered(s, q, _VERSION_ORDER, order or default, ModelVersion.id.asc())
    rows = [(m, v) for m, v in s.execute(q.offset(offset).limit(limit + 1))]
    return rows[:limit], len(rows) > limit


def latest_per_stage(s: Session, model_ids: Sequence[int]) -> dict[int, list[ModelVersion]]:
    """For each model, its highest version in each stage (MLflow's ``latest_versions``)."""
    out: dict[int, list[ModelVersion]] = {m: [] for m in model_ids}
    if not model_ids:
        return out
    top = (
        select(ModelVersion.model_id, ModelVersion.stage, func.max(ModelVersion.version).label("n"))
        .where(ModelVersion.model_id.in_(list(model_ids)))
        .group_by(ModelVersion.model_id, ModelVersion.stage)
        .subquery()
    )
    q = (
        select(ModelVersion)
        .join(top, and_(top.c.model_id == ModelVersion.model_id, top.c.n == ModelVersion.version))
        .order_by(ModelVersion.model_id, ModelVersion.version)
    )
    for v in s.scalars(q):
        out[v.model_id].append(v)
    return out

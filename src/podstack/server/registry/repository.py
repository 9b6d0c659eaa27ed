"""Every registry query lives here."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Float,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from podstack.server.registry.models import (
    AliasHistory,
    ModelAlias,
    ModelLabel,
    ModelVersion,
    RegisteredModel,
    StageTransition,
    VersionFile,
    VersionMetric,
    VersionTag,
)


def _insert_for(s: Session, model: Any) -> Any:
    return (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(model)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# ---------------------------------------------------------------- models


def get_model(s: Session, name: str, *, for_update: bool = False) -> RegisteredModel | None:
    q = select(RegisteredModel).where(RegisteredModel.name == name)
    if for_update:
        # PostgreSQL: serialises version creation per model. SQLite: a no-op, writers are
        # already serialised by BEGIN IMMEDIATE (db/session.py).
        q = q.with_for_update()
        return s.scalars(q.execution_options(populate_existing=True)).first()
    return s.scalars(q).first()


def models_by_ids(s: Session, ids: Iterable[int]) -> dict[int, RegisteredModel]:
    ids = list(set(ids))
    if not ids:
        return {}
    return {m.id: m for m in s.scalars(select(RegisteredModel).where(RegisteredModel.id.in_(ids)))}


class ModelRow(NamedTuple):
    """A registered model as the list views read it: plain columns, no ORM identity (a
    page of 100 ORM objects costs about as much as the query that finds them). Attribute
    names match ``RegisteredModel``, so callers read either the same way."""

    id: int
    name: str
    description: str | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    next_version: int


class VersionBrief(NamedTuple):
    """The columns of a version that the model list shows (latest / Production)."""

    model_id: int
    version: int
    stage: str
    created_at: datetime
    stage_updated_at: datetime


# Core columns, not ORM attributes: a statement over ORM attributes goes through the ORM's
# compile and execution layers even when it only selects columns.
_M = RegisteredModel.__table__.c
_L = ModelLabel.__table__.c
_V = ModelVersion.__table__.c
_ROW_COLUMNS = (
    _M.id,
    _M.name,
    _M.description,
    _M.created_by,
    _M.created_at,
    _M.updated_at,
    _M.next_version,
)


def _in_ids(col: Any, name: str, pg: bool) -> Any:
    """``col IN (ids)``. PostgreSQL: ``col = ANY(:ids)``, one array parameter, so the SQL
    text is the same short string for any page size (psycopg caches and prepares it; 100
    expanded placeholders are neither). SQLite has no arrays: an expanded IN."""
    if pg:
        return col == any_(bindparam(name, type_=ARRAY(col.type)))
    return col.in_(bindparam(name, expanding=True))


# Keyed by "is PostgreSQL".
_LABELS_OF = {
    pg: select(_L.model_id, _L.label)
    .where(_in_ids(_L.model_id, "model_ids", pg))
    .order_by(_L.model_id, _L.label)
    for pg in (False, True)
}


def _is_pg(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def labels_of(s: Session, model_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {m: [] for m in model_ids}
    if model_ids:
        rows = s.execute(_LABELS_OF[_is_pg(s)], {"model_ids": list(model_ids)})
        for model_id, label in rows:
            out[model_id].append(label)
    return out


def replace_labels(s: Session, model_id: int, labels: Sequence[str]) -> None:
    """The only writer of label rows: each row carries the model's name (the label search
    pages by it), taken from the model itself so it cannot disagree."""
    s.execute(delete(ModelLabel).where(ModelLabel.model_id == model_id))
    if labels:
        model = s.get(RegisteredModel, model_id)  # the caller's object: no query
        if model is None:
            raise LookupError(f"registered model id {model_id} does not exist")
        s.add_all(ModelLabel(model_id=model_id, label=lab, model_name=model.name) for lab in labels)
    s.flush()


def _prefix_bounds(q: str) -> tuple[str, str] | None:
    """``[lo, hi)``: exactly the strings that start with ``q`` in code point order (which is
    SQLite's BINARY and PostgreSQL's "C" order). None if ``q`` ends in the last code point."""
    nxt = ord(q[-1]) + 1
    if nxt == 0xD800:  # skip the surrogates: they cannot be encoded
        nxt = 0xE000
    if nxt > 0x10FFFF:
        return None
    return q, q[:-1] + chr(nxt)


def _lower_name(dialect: str) -> tuple[Any, Any]:
    """(lower(name), name) exactly as ``ix_registered_models_lower_name`` indexes them: in
    "C" order on PostgreSQL (a prefix is a range only in code point order), BINARY on SQLite."""
    lname, name = func.lower(_M.name), _M.name
    if dialect == "postgresql":
        return lname.collate("C"), name.collate("C")
    return lname, name


# Search statements by shape (dialect, filters present, order, phase, paging), with every
# value a bound parameter: building the statement costs more Python than SQLite takes to run
# it, and a prebuilt statement keeps its compiled-cache entry. A few dozen shapes at most.
_SEARCH_CACHE: dict[tuple[Any, ...], Any] = {}


def _search_stmt(key: tuple[Any, ...]) -> Any:
    stmt = _SEARCH_CACHE.get(key)
    if stmt is None:
        stmt = _build_search(*key)
        if key[2] <= 4:  # the label count is the client's: keep the cache bounded
            _SEARCH_CACHE[key] = stmt
    return stmt


def _build_label_search(stage: bool, n_labels: int, after: bool) -> Any:
    """Labels, no text, name order: the page is a range of ``ix_model_labels_label_name``
    for the first label (``model_name`` is the model's name, same type and collation, so the
    order and the ``[name]`` keyset are those of the name), stopping after ``limit`` rows;
    the model row is joined by primary key, other labels and the stage are probes per row."""
    first = ModelLabel.__table__.alias("first_label")
    stmt = (
        select(*_ROW_COLUMNS)
        .select_from(first.join(RegisteredModel.__table__, _M.id == first.c.model_id))
        .where(first.c.label == bindparam("label_0", type_=String))
    )
    if after:
        stmt = stmt.where(first.c.model_name > bindparam("after_name", type_=String))
    for i in range(1, n_labels):
        stmt = stmt.where(
            exists().where(_L.model_id == _M.id, _L.label == bindparam(f"label_{i}", type_=String))
        )
    if stage:
        stmt = stmt.where(
            exists().where(_V.model_id == _M.id, _V.stage == bindparam("stage", type_=String))
        )
    limit = bindparam("limit", type_=Integer, literal_execute=True)
    return stmt.order_by(first.c.model_name).limit(limit)


def _build_search(
    dialect: str, stage: bool, n_labels: int, text: bool, order: str, part: str, after: bool
) -> Any:
    """``part``: "all" (one statement), "prefix" or "rest" (the two phases of
    ``_search_prefix_first``)."""
    if n_labels and not text and order == "name" and part == "all":
        return _build_label_search(stage, n_labels, after)
    stmt = select(*_ROW_COLUMNS)
    if stage:
        stmt = stmt.where(
            exists().where(_V.model_id == _M.id, _V.stage == bindparam("stage", type_=String))
        )
    for i in range(n_labels):
        stmt = stmt.where(
            exists().where(_L.model_id == _M.id, _L.label == bindparam(f"label_{i}", type_=String))
        )
    if text:
        like = bindparam("like", type_=String)
        stmt = stmt.where(
            or_(
                func.lower(_M.name).like(like, escape="\\"),
                func.lower(_M.description).like(like, escape="\\"),
            )
        )
    # Rendered into the SQL text (still one cached compilation): with LIMIT as a server-side
    # parameter a PostgreSQL generic plan cannot see that only ~100 rows are wanted and, at
    # 100,000 models, plans a hash join of every labelled model plus a sort (16 ms) instead of
    # the name-index walk that stops at the page's end (1.5 ms).
    limit = bindparam("limit", type_=Integer, literal_execute=True)
    if part != "all":
        lname, cname = _lower_name(dialect)
        lo, hi = bindparam("lo", type_=String), bindparam("hi", type_=String)
        is_prefix = and_(lname >= lo, lname < hi)
        if part == "prefix":
            stmt = stmt.where(is_prefix)
            if after:
                name = bindparam("after_name", type_=String)
                stmt = stmt.where(tuple_(lname, cname) > tuple_(func.lower(name), name))
            return stmt.order_by(lname, cname).limit(limit)
        stmt = stmt.where(~is_prefix)
        if after:
            stmt = stmt.where(_M.name > bindparam("after_name", type_=String))
        return stmt.order_by(_M.name).limit(limit)
    if order == "updated":
        if after:
            at = bindparam("after_at", type_=_M.updated_at.type)
            mid = bindparam("after_id", type_=_M.id.type)
            stmt = stmt.where(or_(_M.updated_at < at, and_(_M.updated_at == at, _M.id < mid)))
        return stmt.order_by(_M.updated_at.desc(), _M.id.desc()).limit(limit)
    if after:
        stmt = stmt.where(_M.name > bindparam("after_name", type_=String))
    return stmt.order_by(_M.name).limit(limit)


def _rows(s: Session, stmt: Any, params: dict[str, Any]) -> list[ModelRow]:
    return [ModelRow._make(r) for r in s.execute(stmt, params)]


def search_models(
    s: Session,
    *,
    q: str | None,
    stage: str | None,
    labels: Sequence[str],
    order: str,
    limit: int,
    after: list[Any] | None,
) -> tuple[list[ModelRow], bool]:
    """``order``: "name" (A→Z, keyset on the unique name) or "updated" (newest first,
    keyset on (updated_at, id)). Returns up to ``limit`` models and whether a next page may
    exist.

    With labels, no ``q`` and order "name", the page is a range of the first label's
    (label, model name) index.

    With text ``q`` and order "name", models whose name starts with ``q`` (case-insensitive)
    come first, A→Z, straight from an index range; then every other match (a substring of
    the name or the description), A→Z. The matches are the same as a plain substring search;
    only the prefix matches are found without reading the whole table. A page filled by
    prefix matches never looks further, so when they end exactly at a page boundary the
    token is returned unverified and the next page may be empty."""
    dialect = s.get_bind().dialect.name
    params: dict[str, Any] = {"limit": limit + 1}
    if stage:
        params["stage"] = stage
    for i, label in enumerate(labels):
        params[f"label_{i}"] = label
    shape = (dialect, bool(stage), len(labels), bool(q), order)
    if q:
        ql = q.lower()
        params["like"] = f"%{_escape_like(ql)}%"
        bounds = _prefix_bounds(ql)
        if order == "name" and bounds is not None:
            return _search_prefix_first(s, shape, params, bounds, limit, after)
    if after:
        if order == "updated":
            params["after_at"], params["after_id"] = after
        else:
            params["after_name"] = after[0]
    rows = _rows(s, _search_stmt((*shape, "all", bool(after))), params)
    return rows[:limit], len(rows) > limit


def _search_prefix_first(
    s: Session,
    shape: tuple[Any, ...],
    params: dict[str, Any],
    bounds: tuple[str, str],
    limit: int,
    after: list[Any] | None,
) -> tuple[list[ModelRow], bool]:
    """Phase 1: name-prefix matches in (lower(name), name) order, an index range. Phase 2:
    the other matches in name order (this one reads the table). The page token is the last
    name; which phase it belongs to follows from the name itself."""
    lo, hi = bounds
    params["lo"], params["hi"] = lo, hi
    in_phase_2 = False
    if after:
        params["after_name"] = after[0]
        # lower() of the token as the database computes it (SQLite folds ASCII only).
        after_l = s.scalar(select(func.lower(literal(after[0]))))
        in_phase_2 = not (after_l is not None and lo <= after_l < hi)
    rows: list[ModelRow] = []
    if not in_phase_2:
        rows = _rows(s, _search_stmt((*shape, "prefix", bool(after))), params)
        if len(rows) >= limit:
            # A page full of prefix matches does not scan the table for the others now: it
            # says "maybe more", and the next page (possibly empty) looks.
            return rows[:limit], True
    params["limit"] = limit + 1 - len(rows)
    rows += _rows(s, _search_stmt((*shape, "rest", in_phase_2 and bool(after))), params)
    return rows[:limit], len(rows) > limit


# ---------------------------------------------------------------- versions


def get_version(
    s: Session, model_id: int, version: int, *, for_update: bool = False
) -> ModelVersion | None:
    q = select(ModelVersion).where(
        ModelVersion.model_id == model_id, ModelVersion.version == version
    )
    if for_update:
        q = q.with_for_update().execution_options(populate_existing=True)
    return s.scalars(q).first()


def versions_by_ids(s: Session, ids: Iterable[int]) -> dict[int, ModelVersion]:
    ids = list(set(ids))
    if not ids:
        return {}
    return {v.id: v for v in s.scalars(select(ModelVersion).where(ModelVersion.id.in_(ids)))}


def list_versions(
    s: Session, model_id: int, *, stage: str | None, limit: int, after: list[Any] | None
) -> Sequence[ModelVersion]:
    """Newest version first; keyset on the version number."""
    q = select(ModelVersion).where(ModelVersion.model_id == model_id)
    if stage:
        q = q.where(ModelVersion.stage == stage)
    if after:
        q = q.where(ModelVersion.version < after[0])
    return s.scalars(q.order_by(ModelVersion.version.desc()).limit(limit + 1)).all()


def all_versions(s: Session, model_id: int) -> list[ModelVersion]:
    q = select(ModelVersion).where(ModelVersion.model_id == model_id).order_by(ModelVersion.version)
    return list(s.scalars(q))


def versions_in_stage(s: Session, model_id: int, stage: str) -> list[ModelVersion]:
    """Most recently moved into ``stage`` first (ties: higher version first)."""
    q = (
        select(ModelVersion)
        .where(ModelVersion.model_id == model_id, ModelVersion.stage == stage)
        .order_by(ModelVersion.stage_updated_at.desc(), ModelVersion.version.desc())
    )
    return list(s.scalars(q))


_V2 = ModelVersion.__table__.alias("v2")
_HIGHEST = select(func.max(_V2.c.version)).where(_V2.c.model_id == _V.model_id).scalar_subquery()


def _leaders_stmt(pg: bool) -> Any:
    return (
        select(_V.model_id, _V.version, _V.stage, _V.created_at, _V.stage_updated_at)
        .where(
            _in_ids(_V.model_id, "model_ids", pg),
            or_(_V.stage == bindparam("stage", type_=String), _V.version == _HIGHEST),
        )
        .order_by(_V.stage_updated_at, _V.version)
    )


def _list_extras_stmt(pg: bool) -> Any:
    """The model list's labels and latest/stage versions in one round trip. Versions come
    first in the UNION so the result columns take their types (and UTC conversion) from
    real columns."""
    return union_all(
        _leaders_stmt(pg)
        .with_only_columns(
            literal(0).label("kind"),
            _V.model_id.label("model_id"),
            _V.stage.label("text"),
            _V.version.label("version"),
            _V.created_at.label("created_at"),
            _V.stage_updated_at.label("stage_updated_at"),
        )
        .order_by(None),
        select(
            literal(1),
            _L.model_id,
            _L.label,
            cast(null(), Integer),
            cast(null(), _V.created_at.type),
            cast(null(), _V.stage_updated_at.type),
        ).where(_in_ids(_L.model_id, "label_model_ids", pg)),
    ).order_by("kind", "model_id", "stage_updated_at", "version", "text")


_LEADERS = {pg: _leaders_stmt(pg) for pg in (False, True)}
_LIST_EXTRAS = {pg: _list_extras_stmt(pg) for pg in (False, True)}


def _leaders_of(
    rows: Iterable[VersionBrief], stage: str
) -> tuple[dict[int, VersionBrief], dict[int, VersionBrief]]:
    """``rows`` ordered by (stage_updated_at, version) within each model."""
    latest: dict[int, VersionBrief] = {}
    leaders: dict[int, VersionBrief] = {}
    for v in rows:
        if v.stage == stage:
            leaders[v.model_id] = v  # later rows win: the most recent move into the stage
        cur = latest.get(v.model_id)
        if cur is None or v.version > cur.version:
            latest[v.model_id] = v
    return latest, leaders


def latest_and_stage_leaders(
    s: Session, model_ids: Sequence[int], stage: str = "Production"
) -> tuple[dict[int, VersionBrief], dict[int, VersionBrief]]:
    """Per model: its highest version, and the version most recently moved into ``stage``.
    One query for a whole page of models (the list view shows both)."""
    if not model_ids:
        return {}, {}
    rows = s.execute(_LEADERS[_is_pg(s)], {"model_ids": list(model_ids), "stage": stage})
    return _leaders_of(map(VersionBrief._make, rows), stage)


def list_extras(
    s: Session, model_ids: Sequence[int], version_model_ids: Sequence[int], stage: str
) -> tuple[dict[int, list[str]], dict[int, VersionBrief], dict[int, VersionBrief]]:
    """Labels of ``model_ids`` and, of ``version_model_ids`` (the ones that may have versions),
    the highest version and the one most recently moved into ``stage``: one query (labels
    only when no model of the page has versions)."""
    if not version_model_ids:
        return labels_of(s, model_ids), {}, {}
    labels: dict[int, list[str]] = {m: [] for m in model_ids}
    versions: list[VersionBrief] = []
    params = {
        "model_ids": list(version_model_ids),
        "label_model_ids": list(model_ids),
        "stage": stage,
    }
    for kind, model_id, text, number, created_at, stage_updated_at in s.execute(
        _LIST_EXTRAS[_is_pg(s)], params
    ):
        if kind == 0:
            versions.append(VersionBrief(model_id, number, text, created_at, stage_updated_at))
        else:
            labels[model_id].append(text)
    latest, leaders = _leaders_of(versions, stage)
    return labels, latest, leaders


def highest_version(
    s: Session, model_id: int, created_before: datetime | None = None
) -> ModelVersion | None:
    q = select(ModelVersion).where(ModelVersion.model_id == model_id)
    if created_before is not None:
        q = q.where(ModelVersion.created_at <= created_before)
    return s.scalars(q.order_by(ModelVersion.version.desc()).limit(1)).first()


def children_of(s: Session, version_id: int) -> list[ModelVersion]:
    q = (
        select(ModelVersion)
        .where(ModelVersion.parent_version_id == version_id)
        .order_by(ModelVersion.model_id, ModelVersion.version)
    )
    return list(s.scalars(q))


def versions_of_runs(s: Session, run_ids: Sequence[str], limit: int = 10) -> list[ModelVersion]:
    if not run_ids:
        return []
    q = select(ModelVersion).where(ModelVersion.source_run_id.in_(list(run_ids))).limit(limit)
    return list(s.scalars(q))


def tags_of(s: Session, version_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {v: {} for v in version_ids}
    if version_ids:
        for t in s.scalars(select(VersionTag).where(VersionTag.version_id.in_(list(version_ids)))):
            out[t.version_id][t.key] = t.value
    return out


def upsert_tags(s: Session, version_id: int, tags: dict[str, str]) -> None:
    if not tags:
        return
    ins = _insert_for(s, VersionTag).values(
        [{"version_id": version_id, "key": k, "value": v} for k, v in tags.items()]
    )
    s.execute(
        ins.on_conflict_do_update(
            index_elements=["version_id", "key"], set_={"value": ins.excluded.value}
        )
    )


def delete_tag(s: Session, version_id: int, key: str) -> int:
    stmt = delete(VersionTag).where(VersionTag.version_id == version_id, VersionTag.key == key)
    return s.execute(stmt).rowcount


def metrics_of(s: Session, version_ids: Sequence[int]) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {v: {} for v in version_ids}
    if version_ids:
        q = select(VersionMetric).where(VersionMetric.version_id.in_(list(version_ids)))
        for m in s.scalars(q):
            out[m.version_id][m.key] = math.nan if m.value is None else m.value
    return out


def upsert_metrics(s: Session, rows: list[dict[str, Any]]) -> None:
    ins = _insert_for(s, VersionMetric).values(rows)
    s.execute(
        ins.on_conflict_do_update(
            index_elements=["version_id", "key"],
            set_={
                "value": ins.excluded.value,
                "logged_by": ins.excluded.logged_by,
                "timestamp": ins.excluded.timestamp,
            },
        )
    )


def files_of(s: Session, version_id: int) -> list[VersionFile]:
    q = select(VersionFile).where(VersionFile.version_id == version_id).order_by(VersionFile.path)
    return list(s.scalars(q))


def get_file(s: Session, version_id: int, path: str) -> VersionFile | None:
    return s.get(VersionFile, (version_id, path))


def referenced_digests(s: Session) -> set[str]:
    return set(s.scalars(select(VersionFile.sha256).distinct()))


def delete_version(s: Session, mv: ModelVersion) -> None:
    s.delete(mv)
    s.flush()


# ---------------------------------------------------------------- transitions


def add_transition(s: Session, row: StageTransition) -> None:
    s.add(row)


def transitions_of_version(s: Session, version_id: int) -> list[StageTransition]:
    q = (
        select(StageTransition)
        .where(StageTransition.version_id == version_id)
        .order_by(StageTransition.at, StageTransition.id)
    )
    return list(s.scalars(q))


def transitions_until(s: Session, model_id: int, until: datetime) -> list[StageTransition]:
    q = (
        select(StageTransition)
        .where(StageTransition.model_id == model_id, StageTransition.at <= until)
        .order_by(StageTransition.at, StageTransition.id)
    )
    return list(s.scalars(q))


def versions_created_until(s: Session, model_id: int, until: datetime) -> list[ModelVersion]:
    q = select(ModelVersion).where(
        ModelVersion.model_id == model_id, ModelVersion.created_at <= until
    )
    return list(s.scalars(q))


def model_transitions_page(
    s: Session, model_id: int, limit: int, after: tuple[datetime, int] | None
) -> list[StageTransition]:
    q = select(StageTransition).where(StageTransition.model_id == model_id)
    if after:
        at, rid = after
        q = q.where(
            or_(StageTransition.at < at, and_(StageTransition.at == at, StageTransition.id < rid))
        )
    q = q.order_by(StageTransition.at.desc(), StageTransition.id.desc()).limit(limit)
    return list(s.scalars(q))


# ---------------------------------------------------------------- aliases


def get_alias(s: Session, model_id: int, alias: str) -> ModelAlias | None:
    return s.get(ModelAlias, (model_id, alias))


def aliases_of_model(s: Session, model_id: int) -> list[ModelAlias]:
    q = select(ModelAlias).where(ModelAlias.model_id == model_id).order_by(ModelAlias.alias)
    return list(s.scalars(q))


def aliases_of_versions(s: Session, version_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {v: [] for v in version_ids}
    if version_ids:
        q = (
            select(ModelAlias)
            .where(ModelAlias.version_id.in_(list(version_ids)))
            .order_by(ModelAlias.alias)
        )
        for a in s.scalars(q):
            out[a.version_id].append(a.alias)
    return out


def aliases_pointing_at(s: Session, version_ids: Sequence[int]) -> list[ModelAlias]:
    if not version_ids:
        return []
    q = select(ModelAlias).where(ModelAlias.version_id.in_(list(version_ids)))
    return list(s.scalars(q.order_by(ModelAlias.alias)))


def add_alias_history(s: Session, row: AliasHistory) -> None:
    s.add(row)


def alias_history(s: Session, model_id: int, alias: str) -> list[AliasHistory]:
    q = (
        select(AliasHistory)
        .where(AliasHistory.model_id == model_id, AliasHistory.alias == alias)
        .order_by(AliasHistory.id)
    )
    return list(s.scalars(q))


def alias_state_at(s: Session, model_id: int, alias: str, at: datetime) -> AliasHistory | None:
    q = (
        select(AliasHistory)
        .where(
            AliasHistory.model_id == model_id, AliasHistory.alias == alias, AliasHistory.at <= at
        )
        .order_by(AliasHistory.at.desc(), AliasHistory.id.desc())
        .limit(1)
    )
    return s.scalars(q).first()


def model_alias_page(
    s: Session, model_id: int, limit: int, after: tuple[datetime, int] | None
) -> list[AliasHistory]:
    q = select(AliasHistory).where(AliasHistory.model_id == model_id)
    if after:
        at, rid = after
        q = q.where(or_(AliasHistory.at < at, and_(AliasHistory.at == at, AliasHistory.id < rid)))
    q = q.order_by(AliasHistory.at.desc(), AliasHistory.id.desc()).limit(limit)
    return list(s.scalars(q))


# ---------------------------------------------------------------- hot paths (one statement each)
# Built once at import with bound parameters: constructing a statement costs more Python than
# running one of these indexed lookups on SQLite, and a prebuilt statement also keeps its
# compiled-cache key.

_MODELS = RegisteredModel.__table__
_ALLOCATE_VERSION = (
    update(_MODELS)
    .where(_MODELS.c.name == bindparam("model_name"))
    .values(next_version=_MODELS.c.next_version + 1, updated_at=bindparam("at"))
    .returning(*_MODELS.c)
)
_MODEL_KEYS = tuple(c.key for c in _MODELS.c)


def allocate_version(s: Session, name: str, now: datetime) -> RegisteredModel | None:
    """Takes the next version number of model ``name``: one ``UPDATE ... RETURNING`` that
    locks the model row (PostgreSQL; SQLite writers are serialised by BEGIN IMMEDIATE),
    increments ``next_version`` and returns the row, so the number is
    ``returned.next_version - 1``. None if the model does not exist.

    The row lock is held until commit: concurrent creators of the same model queue here,
    which (with the unique (model_id, version) key) keeps numbering gap-free.

    Core on the session's connection, the returned row then attached as the model object:
    the ORM's bulk-UPDATE path costs more Python than the statement itself.
    """
    conn = s.connection()
    if not conn.dialect.update_returning:  # pragma: no cover - SQLite < 3.35
        m = get_model(s, name, for_update=True)
        if m is not None:
            m.next_version += 1
            m.updated_at = now
            s.flush()
        return m
    # What an ORM statement would do first: pending changes must not be overwritten below.
    s.flush()
    row = conn.execute(_ALLOCATE_VERSION, {"model_name": name, "at": now}).first()
    return None if row is None else _attach_model(s, row)


def _attach_model(s: Session, row: Any) -> RegisteredModel:
    """The session's object for the model ``row`` was read from, with the row's values (as
    ``populate_existing`` would: the object may already be loaded with the old counter)."""
    values = dict(zip(_MODEL_KEYS, row, strict=True))
    key = s.identity_key(RegisteredModel, (values["id"],))  # type: ignore[arg-type]
    m = s.identity_map.get(key)
    if m is not None:
        for k, v in values.items():
            set_committed_value(m, k, v)
        return m  # type: ignore[return-value]
    m = RegisteredModel(**values)
    make_transient_to_detached(m)
    s.add(m)
    return m


_VERSIONS = ModelVersion.__table__
_INSERT_VERSION = insert(_VERSIONS).returning(_VERSIONS.c.id)
_VERSION_KEYS = tuple(c.key for c in _VERSIONS.c if c.key != "id")


def insert_version(s: Session, mv: ModelVersion) -> ModelVersion:
    """Inserts the new version ``mv`` (transient, every column but ``id`` set) with one
    ``INSERT ... RETURNING id`` and attaches it to the session as the persistent row it now
    is: the unit of work's flush machinery costs more than the insert for a single row."""
    conn = s.connection()
    if not conn.dialect.insert_returning:  # pragma: no cover - SQLite < 3.35
        s.add(mv)
        s.flush()
        return mv
    mv.id = conn.execute(_INSERT_VERSION, {k: getattr(mv, k) for k in _VERSION_KEYS}).scalar_one()
    make_transient_to_detached(mv)
    s.add(mv)
    return mv


_INSERT_FILES = insert(VersionFile.__table__)


def add_files(s: Session, version_id: int, files: list[tuple[str, int, str]]) -> None:
    """A new version's files, one (executemany) INSERT; plain Core on the connection."""
    if files:
        s.connection().execute(
            _INSERT_FILES,
            [{"version_id": version_id, "path": p, "size": n, "sha256": h} for p, n, h in files],
        )


_MODEL_AND_ALIASED_VERSION = (
    select(RegisteredModel, ModelVersion)
    .join(ModelAlias, ModelAlias.model_id == RegisteredModel.id)
    .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
    .where(RegisteredModel.name == bindparam("name"), ModelAlias.alias == bindparam("alias"))
)


def model_and_aliased_version(
    s: Session, name: str, alias: str
) -> tuple[RegisteredModel, ModelVersion] | None:
    """Model ``name`` and the version its stored alias ``alias`` points at, in one indexed
    join (unique name -> alias primary key -> version primary key); None if either is
    missing (the caller then works out which, for the error message)."""
    row = s.execute(_MODEL_AND_ALIASED_VERSION, {"name": name, "alias": alias}).first()
    return None if row is None else (row[0], row[1])


_IDS = bindparam("ids", expanding=True)
_VERSION_EXTRAS = union_all(
    select(
        literal(0).label("kind"),
        VersionTag.version_id.label("vid"),
        VersionTag.key.label("key"),
        VersionTag.value.label("text"),
        cast(null(), Float).label("num"),
    ).where(VersionTag.version_id.in_(_IDS)),
    select(
        literal(1),
        VersionMetric.version_id,
        VersionMetric.key,
        cast(null(), String),
        VersionMetric.value,
    ).where(VersionMetric.version_id.in_(_IDS)),
    select(
        literal(2),
        ModelAlias.version_id,
        ModelAlias.alias,
        cast(null(), String),
        cast(null(), Float),
    ).where(ModelAlias.version_id.in_(_IDS)),
).order_by("kind", "key")  # aliases listed in name order; tags and metrics by key


def version_extras(
    s: Session, version_ids: Sequence[int]
) -> tuple[dict[int, dict[str, str]], dict[int, dict[str, float]], dict[int, list[str]]]:
    """Tags, validation metrics and alias names of versions in one round trip (a UNION ALL
    of three indexed lookups) instead of three queries. Metric NULL encodes NaN."""
    tags: dict[int, dict[str, str]] = {v: {} for v in version_ids}
    metrics: dict[int, dict[str, float]] = {v: {} for v in version_ids}
    aliases: dict[int, list[str]] = {v: [] for v in version_ids}
    if not version_ids:
        return tags, metrics, aliases
    for kind, vid, key, text, num in s.execute(_VERSION_EXTRAS, {"ids": list(version_ids)}):
        if kind == 0:
            tags[vid][key] = text
        elif kind == 1:
            metrics[vid][key] = math.nan if num is None else num
        else:
            aliases[vid].append(key)
    return tags, metrics, aliases


def version_refs(s: Session, version_ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """(model name, version number) per version id, one joined query (parents in views)."""
    ids = list(set(version_ids))
    if not ids:
        return {}
    q = (
        select(ModelVersion.id, RegisteredModel.name, ModelVersion.version)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        .where(ModelVersion.id.in_(ids))
    )
    return {vid: (name, number) for vid, name, number in s.execute(q)}


def files_of_versions(s: Session, version_ids: Sequence[int]) -> dict[int, list[VersionFile]]:
    out: dict[int, list[VersionFile]] = {v: [] for v in version_ids}
    if version_ids:
        q = (
            select(VersionFile)
            .where(VersionFile.version_id.in_(list(version_ids)))
            .order_by(VersionFile.version_id, VersionFile.path)
        )
        for f in s.scalars(q):
            out[f.version_id].append(f)
    return out

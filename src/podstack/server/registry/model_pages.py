"""Reading models page by page: the registry search (name prefix first, label pages from
the (label, model_name) index, keyset pages) and what each listed model shows (labels, latest
and Production versions), each a statement built once per shape. The registry's other queries
are in repository.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Integer,
    String,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from podstack.server.permissions import service as permissions
from podstack.server.permissions.levels import MODEL
from podstack.server.registry.models import ModelLabel, ModelVersion, RegisteredModel
from podstack.server.registry.rules import STAGE_ORDER


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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
        # Core, not narrowed: safe, every caller passes ids of models it loaded through the
        # read filter (ORM lookups) or the narrowed search (_rows).
        rows = s.execute(_LABELS_OF[_is_pg(s)], {"model_ids": list(model_ids)})
        for model_id, label in rows:
            out[model_id].append(label)
    return out


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
    if order == "stage":
        if after:
            rank = bindparam("after_rank", type_=Integer)
            name = bindparam("after_name", type_=String)
            stmt = stmt.where(or_(rank < _STAGE_RANK, and_(rank == _STAGE_RANK, _M.name > name)))
        return stmt.order_by(_STAGE_RANK, _M.name).limit(limit)
    if order == "updated":
        if after:
            at = bindparam("after_at", type_=_M.updated_at.type)
            mid = bindparam("after_id", type_=_M.id.type)
            stmt = stmt.where(or_(_M.updated_at < at, and_(_M.updated_at == at, _M.id < mid)))
        return stmt.order_by(_M.updated_at.desc(), _M.id.desc()).limit(limit)
    if after:
        stmt = stmt.where(_M.name > bindparam("after_name", type_=String))
    return stmt.order_by(_M.name).limit(limit)


# Sort by stage: a model ranks by the best stage any of its versions is in (Production, then
# Staging, None, Archived), models without versions last; ties by name (the keyset is
# (rank, name)). A correlated MIN per model: this order reads every model, unlike name order.
NO_VERSIONS_RANK = len(STAGE_ORDER)
_VR = ModelVersion.__table__.alias("vr")
_STAGE_RANK = func.coalesce(
    select(
        func.min(
            case(
                {stage: i for i, stage in enumerate(STAGE_ORDER)},
                value=_VR.c.stage,
                else_=NO_VERSIONS_RANK,
            )
        )
    )
    .where(_VR.c.model_id == _M.id)
    .scalar_subquery(),
    NO_VERSIONS_RANK,
)


def stage_rank(s: Session, model_id: int) -> int:
    """The rank ``order="stage"`` sorts ``model_id`` by (for the page token)."""
    # Core, not narrowed: safe, ``model_id`` is the last row of a page the narrowed search
    # returned.
    return int(s.scalar(select(_STAGE_RANK).where(_M.id == model_id)))


def _rows(s: Session, stmt: Any, params: dict[str, Any]) -> list[ModelRow]:
    # These statements are Core (the ORM's read filter does not see them): narrowed here to
    # the models the caller may read when the server's default permission is below READ.
    readable = permissions.readable_clause(s, MODEL, _M.id)
    if readable is not None:
        stmt = stmt.where(readable)
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
    """``order``: "name" (A→Z, keyset on the unique name), "updated" (newest first,
    keyset on (updated_at, id)) or "stage" (best stage first, see ``STAGE_ORDER``; keyset on
    (rank, name)). Returns up to ``limit`` models and whether a next page may
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
        params["like"] = f"%{escape_like(ql)}%"
        bounds = _prefix_bounds(ql)
        if order == "name" and bounds is not None:
            return _search_prefix_first(s, shape, params, bounds, limit, after)
    if after:
        if order == "updated":
            params["after_at"], params["after_id"] = after
        elif order == "stage":
            params["after_rank"], params["after_name"] = after
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
    # Core, not narrowed: safe, the ids are those of a page of the narrowed search.
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
    # Core, not narrowed: safe, the ids are those of a page of the narrowed search.
    for kind, model_id, text, number, created_at, stage_updated_at in s.execute(
        _LIST_EXTRAS[_is_pg(s)], params
    ):
        if kind == 0:
            versions.append(VersionBrief(model_id, number, text, created_at, stage_updated_at))
        else:
            labels[model_id].append(text)
    latest, leaders = _leaders_of(versions, stage)
    return labels, latest, leaders

"""Read enforcement in one place: a session event that narrows every ORM query to the models
and experiments the session's principal may read.

``Database.session(principal=...)`` (called by ``Ctx.read``/``Ctx.write`` for the API and the
MLflow-compatible API, and by ``WebCtx`` for the UI) puts the caller into ``session.info``.
When the server's default permission is below READ and the caller is not an admin, every ORM
SELECT gets ``with_loader_criteria`` for:

* ``RegisteredModel`` and ``Experiment``: owned by the caller, or granted to them or a group
  of theirs;
* every mapped table with a foreign key to ``registered_models`` / ``model_versions`` /
  ``experiments`` / ``runs`` / ``schedules`` (a schedule is readable with its experiment;
  versions, files, tags, aliases, transitions, runs, metrics,
  params, artifacts, deployments, approval requests, signatures, ...): the row's parent must
  be readable. Found from the foreign keys at first use, so a new table is covered the day it
  is added. A NULL foreign key (a global approval policy, a schedule without experiment)
  does not hide the row.

So ``session.get``, lookups by name, lists, searches and ``count()`` built on the ORM can
neither return nor count an unreadable row, and the services answer 404 exactly as for a
resource that does not exist. Queries on Core tables (``Model.__table__``) and raw SQL are
not narrowed; each of those is listed in the report of issue 21 with how it is kept safe.

With the default permission at READ or above (the shipped default is MANAGE) the event adds
nothing, so existing installations pay nothing. ``unrestricted(session)`` lifts the filter
for code that must see past the caller (a permission check, carrying out an approved request).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, and_, event, false, or_, select
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from podstack.server.auth.principal import Principal
from podstack.server.db.base import Base
from podstack.server.db.session import PRINCIPAL_INFO
from podstack.server.permissions import repository as repo
from podstack.server.permissions.levels import (
    DEFAULT_PERMISSION,
    EXPERIMENT,
    MODEL,
    READ,
    at_least,
)
from podstack.server.schedules.models import Schedule

DEFAULT_PERMISSION_INFO = "podstack_default_permission"
_CRITERIA = "podstack_read_criteria"

MODELS = repo.MODELS
EXPERIMENTS = repo.EXPERIMENTS
VERSIONS = Base.metadata.tables.get("model_versions")
RUNS = Base.metadata.tables.get("runs")
SCHEDULES = Schedule.__table__


def default_permission(session: Session) -> str:
    return session.info.get(DEFAULT_PERMISSION_INFO, DEFAULT_PERMISSION)


def principal_of(session: Session) -> Principal | None:
    return session.info.get(PRINCIPAL_INFO)


def run_scope(principal: Principal) -> str | None:
    if principal.scope and principal.scope.startswith("run:"):
        return principal.scope[4:]
    return None


def is_restricted(session: Session) -> bool:
    """Whether reads in this session are narrowed (see the module docstring)."""
    p = principal_of(session)
    if p is None:
        return False
    if run_scope(p) is not None:
        return True
    if p.role == "admin":
        return False
    return not at_least(default_permission(session), READ)


@contextmanager
def unrestricted(session: Session) -> Iterator[None]:
    """Runs the block as the server itself: no read filter, no permission checks. For work
    whose caller was authorised another way (carrying out an approved request: its requester
    needed EDIT when asking, its reviewers were named by the policy)."""
    principal = session.info.pop(PRINCIPAL_INFO, None)
    try:
        yield
    finally:
        if principal is not None:
            session.info[PRINCIPAL_INFO] = principal


_PARENTS = ("registered_models", "model_versions", "experiments", "runs", "schedules")
_OWNING = ("model_id", "version_id", "experiment_id", "run_id", "schedule_id")
# A row owned by one of these is judged by that owner only; its other links are references
# (a version's source run, an execution's run). A schedule is readable with its experiment.
_SOLE_OWNERS = (("registered_models", "model_versions"), ("schedules",))
_children: list[tuple[type, list[tuple[Any, str, bool]]]] | None = None


def _child_entities() -> list[tuple[type, list[tuple[Any, str, bool]]]]:
    """(mapped class, [(column attribute, parent table, nullable)]) for every mapped table whose
    owning foreign key (``model_id``, ``version_id``, ``experiment_id``, ``run_id``) points at
    one of the four parent tables; computed once from the metadata.

    Only the owning link counts: a version's ``source_run_id`` or ``parent_version_id`` is a
    reference, not its owner (a model readable to someone who cannot read the experiment it
    was trained in still shows its versions; the run itself stays hidden). A row owned on the
    registry side is judged by that side only."""
    global _children
    if _children is None:
        found = []
        for mapper in Base.registry.mappers:
            cls = mapper.class_
            table = mapper.local_table
            if table.name in ("registered_models", "experiments", "resource_grants"):
                continue
            cols = []
            for col in table.columns:
                if col.name not in _OWNING:
                    continue
                for fk in col.foreign_keys:
                    parent = fk.column.table.name
                    if parent in _PARENTS and parent != table.name and fk.column.name == "id":
                        key = mapper.get_property_by_column(col).key
                        cols.append((getattr(cls, key), parent, bool(col.nullable)))
            for owners in _SOLE_OWNERS:
                if any(p in owners for _, p, _ in cols):
                    cols = [c for c in cols if c[1] in owners]
                    break
            if cols:
                found.append((cls, cols))
        _children = found
    return _children


# Statement objects built per principal, kept across sessions: they hold only the principal's
# name and id (the rows are read by the database at every query, so a grant or a membership
# changed a moment ago counts), and building them is most of what a narrowed search cost in
# Python (benchmarks/permissions_search.py). Bounded: cleared when full.
_BUILT_MAX = 1024
_SETS: dict[tuple[str, int | None, str | None], dict[str, Any]] = {}
_OPTIONS: dict[tuple[str, int | None, str | None], list[Any]] = {}


def _key(p: Principal) -> tuple[str, int | None, str | None]:
    return (p.username, p.user_id, run_scope(p))


def _readable_sets(p: Principal) -> dict[str, Any]:
    """Subqueries of the readable ids of each parent table, for this principal."""
    key = _key(p)
    sets = _SETS.get(key)
    if sets is None:
        if len(_SETS) >= _BUILT_MAX:
            _SETS.clear()
        sets = _SETS[key] = _build_readable_sets(p)
    return sets


def _build_readable_sets(p: Principal) -> dict[str, Any]:
    run_id = run_scope(p)
    if run_id is not None:
        # A job's token (scope "run:<id>") reads its own run and that run's experiment, and
        # nothing of the registry; the path scope (auth/principal.py) already keeps it to
        # /api/v1/runs/<id>/..., this keeps it there even in code that follows references.
        runs = select(RUNS.c.id).where(RUNS.c.id == run_id)
        exps = select(RUNS.c.experiment_id).where(RUNS.c.id == run_id)
        models = select(MODELS.c.id).where(false())
    else:
        models = repo.readable_ids_query(MODEL, p.username, p.user_id)
        exps = repo.readable_ids_query(EXPERIMENT, p.username, p.user_id)
        runs = select(RUNS.c.id).where(RUNS.c.experiment_id.in_(exps))
    versions = select(VERSIONS.c.id).where(VERSIONS.c.model_id.in_(models))
    schedules = select(SCHEDULES.c.id).where(
        or_(SCHEDULES.c.experiment_id.is_(None), SCHEDULES.c.experiment_id.in_(exps))
    )
    return {
        "registered_models": models,
        "model_versions": versions,
        "experiments": exps,
        "runs": runs,
        "schedules": schedules,
    }


def readable_clause(session: Session, kind: str, id_col: Any) -> ColumnElement[bool] | None:
    """For hand-built Core queries the ORM criteria do not reach (the registry's model search):
    a condition keeping ``id_col`` (a model or experiment id column) to what the session's
    principal may read, or None when reads are not narrowed."""
    if not is_restricted(session):
        return None
    p = principal_of(session)
    assert p is not None
    sets = _readable_sets(p)
    return id_col.in_(sets["registered_models" if kind == MODEL else "experiments"])


def _criteria(session: Session, p: Principal) -> list[Any]:
    cached = session.info.get(_CRITERIA)
    if cached is not None and cached[0] is p:
        return cached[1]
    key = _key(p)
    opts = _OPTIONS.get(key)
    if opts is None:
        if len(_OPTIONS) >= _BUILT_MAX:
            _OPTIONS.clear()
        opts = _OPTIONS[key] = _build_criteria(p)
    session.info[_CRITERIA] = (p, opts)
    return opts


def _build_criteria(p: Principal) -> list[Any]:
    from podstack.server.registry.models import RegisteredModel
    from podstack.server.tracking.models import Experiment

    sets = _readable_sets(p)
    opts: list[Any] = [
        with_loader_criteria(
            RegisteredModel, RegisteredModel.id.in_(sets["registered_models"]), include_aliases=True
        ),
        with_loader_criteria(
            Experiment, Experiment.id.in_(sets["experiments"]), include_aliases=True
        ),
    ]
    for cls, cols in _child_entities():
        conds: list[ColumnElement[bool]] = []
        for attr, parent, nullable in cols:
            cond = attr.in_(sets[parent])
            conds.append(or_(attr.is_(None), cond) if nullable else cond)
        where = conds[0] if len(conds) == 1 else and_(*conds)
        opts.append(with_loader_criteria(cls, where, include_aliases=True))
    return opts


@event.listens_for(Session, "do_orm_execute")
def _restrict_reads(state: ORMExecuteState) -> None:
    if not state.is_select or state.is_column_load or not state.is_orm_statement:
        # A Core statement (Table columns only) is not narrowed by loader criteria anyway;
        # attaching them cost a cache-key walk over every option on each query.
        return
    session = state.session
    if not is_restricted(session):
        return
    p = principal_of(session)
    assert p is not None
    state.statement = state.statement.options(*_criteria(session, p))

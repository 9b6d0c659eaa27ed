"""The registry's queries, except reading models page by page (search, list views), which is
in model_pages.py."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    String,
    and_,
    bindparam,
    cast,
    delete,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
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
    RegisteredModelTag,
    StageTransition,
    VersionFile,
    VersionMetric,
    VersionOrigin,
    VersionTag,
)


def _insert_for(s: Session, model: Any) -> Any:
    return (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(model)


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


def version_metric_rows(s: Session, version_id: int) -> list[VersionMetric]:
    """A version's validation metrics with who logged each and when, by key."""
    q = select(VersionMetric).where(VersionMetric.version_id == version_id)
    return list(s.scalars(q.order_by(VersionMetric.key)))


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


def existing_versions(s: Session, model_names: Sequence[str]) -> set[tuple[str, int]]:
    """Which (model name, version number) pairs of those models exist."""
    if not model_names:
        return set()
    q = (
        select(RegisteredModel.name, ModelVersion.version)
        .join(ModelVersion, ModelVersion.model_id == RegisteredModel.id)
        .where(RegisteredModel.name.in_(list(model_names)))
    )
    return {(name, version) for name, version in s.execute(q)}


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
    # Not narrowed by the read filter: the caller (service._allocate_number) requires EDIT on
    # the returned row (404 when unreadable), and that error rolls the increment back.
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


def files_with_digests(
    s: Session, digests: set[str]
) -> list[tuple[VersionFile, ModelVersion, RegisteredModel]]:
    q = (
        select(VersionFile, ModelVersion, RegisteredModel)
        .join(ModelVersion, ModelVersion.id == VersionFile.version_id)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        .where(VersionFile.sha256.in_(sorted(digests)))
    )
    return [(f, mv, m) for f, mv, m in s.execute(q)]


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


# ---------------------------------------------------------------- key-value model tags


def model_tags_of(s: Session, model_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {m: {} for m in model_ids}
    if model_ids:
        q = (
            select(RegisteredModelTag)
            .where(RegisteredModelTag.model_id.in_(list(model_ids)))
            .order_by(RegisteredModelTag.model_id, RegisteredModelTag.key)
        )
        for t in s.scalars(q):
            out[t.model_id][t.key] = t.value
    return out


def upsert_model_tag(s: Session, model_id: int, key: str, value: str) -> None:
    ins = _insert_for(s, RegisteredModelTag).values(model_id=model_id, key=key, value=value)
    s.execute(
        ins.on_conflict_do_update(
            index_elements=["model_id", "key"], set_={"value": ins.excluded.value}
        )
    )


def delete_model_tag(s: Session, model_id: int, key: str) -> int:
    stmt = delete(RegisteredModelTag).where(
        RegisteredModelTag.model_id == model_id, RegisteredModelTag.key == key
    )
    return s.execute(stmt).rowcount


def origins_of(s: Session, version_ids: Sequence[int]) -> dict[int, VersionOrigin]:
    if not version_ids:
        return {}
    q = select(VersionOrigin).where(VersionOrigin.version_id.in_(list(version_ids)))
    return {o.version_id: o for o in s.scalars(q)}


def add_origin(s: Session, row: VersionOrigin) -> None:
    s.add(row)


def aliases_of_models(s: Session, model_ids: Sequence[int]) -> dict[int, list[ModelAlias]]:
    """Each model's aliases by name, one query for a page of models."""
    out: dict[int, list[ModelAlias]] = {m: [] for m in model_ids}
    if model_ids:
        q = (
            select(ModelAlias)
            .where(ModelAlias.model_id.in_(list(model_ids)))
            .order_by(ModelAlias.model_id, ModelAlias.alias)
        )
        for a in s.scalars(q):
            out[a.model_id].append(a)
    return out

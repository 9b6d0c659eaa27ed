"""Model registry rules, each in one place: names, version numbering, stages, aliases,
deletion, ``models:/`` references, and the hooks other capabilities plug into.

Hooks (registered at import time by other capabilities):

- ``register_transition_gate(fn)``: ``fn(session, proposal) -> Interception | None`` is asked
  before a requested stage change is applied; returning an ``Interception`` (e.g. "an approval
  request was created") stops the change, which the caller then sees as pending. Raising a
  ``PodstackError`` refuses it. ``transition_stage`` is the public entry that consults gates;
  ``apply_transition`` is the primitive that really changes the stage (approvals call it when
  a request is approved, passing ``request_id``).
- ``register_delete_guard(fn)``: ``fn(session, model, versions)`` raises ``Conflict`` to refuse
  deleting those versions (deployments refuse deleting what they serve). Called for version
  deletes and, with every version, for model deletes.
- ``register_alias_delete_guard(fn)``: ``fn(session, model, alias)`` raises to refuse deleting
  an alias (e.g. one a deployment follows).
- ``register_lineage_contributor(fn)``: ``fn(session, model, version) -> (nodes, edges)`` adds
  downstream nodes (deployments) to a version's lineage graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from podstack.errors import BadRequest, Conflict, NotFound, ValidationFailed
from podstack.server.artifacts import service as artifacts
from podstack.server.artifacts.paths import validate_artifact_path
from podstack.server.audit import service as audit
from podstack.server.db.base import as_utc, utcnow
from podstack.server.events import service as events
from podstack.server.pagination import clamp_limit, decode_token, encode_token, page_of
from podstack.server.registry import hooks
from podstack.server.registry import model_pages as pages
from podstack.server.registry import repository as repo
from podstack.server.registry.hooks import (
    Interception,
    TransitionOutcome,
    TransitionProposal,
    register_alias_delete_guard,
    register_delete_guard,
    register_lineage_contributor,
    register_transition_gate,
)
from podstack.server.registry.models import (
    AliasHistory,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    StageTransition,
    VersionFile,
)
from podstack.server.registry.rules import (
    ALIAS_RE,
    EXCLUSIVE_STAGES,
    LATEST,
    ORDER_BY,
    RESERVED_VERSION_RE,
    STAGES,
    ModelRef,
    is_reserved_alias,
    normalize_stage,
    parse_model_uri,
    parse_version,
    validate_alias,
    validate_labels,
    validate_model_name,
)
from podstack.server.tracking import service as tracking

# Re-exported: other capabilities and adapters reach the rules and hooks through the service.
__all__ = [
    "STAGES",
    "Interception",
    "ModelRef",
    "NewVersion",
    "TransitionOutcome",
    "TransitionProposal",
    "add_version",
    "apply_transition",
    "delete_model",
    "delete_version",
    "get_model",
    "get_version",
    "is_reserved_alias",
    "normalize_stage",
    "parse_model_uri",
    "parse_version",
    "register_alias_delete_guard",
    "register_delete_guard",
    "register_lineage_contributor",
    "register_model",
    "register_transition_gate",
    "resolve_in_model",
    "resolve_uri",
    "transition_stage",
    "validate_alias",
    "validate_model_name",
    "version_by_alias",
    "version_by_stage",
]


def _runs_back_versions(s: Session, run_ids: list[str]) -> None:
    """Tracking's run-delete guard: a run that a registered version came from stays."""
    used = repo.versions_of_runs(s, run_ids)
    if used:
        models = repo.models_by_ids(s, (v.model_id for v in used))
        refs = ", ".join(f"{models[v.model_id].name} v{v.version}" for v in used)
        raise Conflict(
            f"Run {used[0].source_run_id} is the source of registered model version(s) {refs}; "
            "delete those versions first.",
            {
                "run_id": used[0].source_run_id,
                "versions": [
                    {"model_name": models[v.model_id].name, "version": v.version} for v in used
                ],
            },
        )


tracking.register_run_delete_guard(_runs_back_versions)


# ---------------------------------------------------------------- registered models


def _model_doc(m: RegisteredModel, labels: Sequence[str]) -> dict[str, Any]:
    return {"name": m.name, "description": m.description, "tags": list(labels)}


def _dedupe(labels: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(labels))


def get_model(s: Session, name: str, *, for_update: bool = False) -> RegisteredModel:
    m = repo.get_model(s, name, for_update=for_update)
    if m is None:
        raise NotFound(
            f"Registered model {name!r} does not exist.",
            {"model_name": name},
        )
    return m


def _insert_model(
    s: Session,
    actor: str,
    name: str,
    description: str | None,
    labels: Sequence[str],
    *,
    next_version: int = 1,
) -> RegisteredModel:
    now = utcnow()
    m = RegisteredModel(
        name=name,
        description=description,
        created_by=actor,
        created_at=now,
        updated_at=now,
        next_version=next_version,
    )
    s.add(m)
    s.flush()
    if labels:
        repo.replace_labels(s, m.id, labels)
    return m


def _model_created(s: Session, actor: str, m: RegisteredModel, labels: Sequence[str]) -> None:
    audit.record(s, actor, "model.create", "registered_model", m.name, None, _model_doc(m, labels))
    events.emit(s, "model.created", {"model_name": m.name, "tags": list(labels)}, actor)


def register_model(
    s: Session,
    actor: str,
    name: str,
    description: str | None = None,
    labels: Sequence[str] = (),
) -> RegisteredModel:
    validate_model_name(name)
    labels = validate_labels(labels)
    if repo.get_model(s, name) is not None:
        raise Conflict(
            f"Registered model {name!r} already exists. Add a version to it with "
            "create_model_version, or pick another name.",
            {"model_name": name},
        )
    try:
        with s.begin_nested():
            m = _insert_model(s, actor, name, description, labels)
    except DBIntegrityError:
        # Lost a race with a concurrent register of the same name.
        raise Conflict(f"Registered model {name!r} already exists.", {"model_name": name})
    _model_created(s, actor, m, labels)
    return m


def _allocate_number(s: Session, actor: str, name: str) -> tuple[RegisteredModel, int]:
    """Locks the model row and takes its next version number; registers the model first if
    absent (the seed's Integration Example calls create_model_version without
    register_model).

    Two creators racing to auto-register: the loser's INSERT waits for the winner's commit,
    then fails on the unique name; its savepoint is rolled back and it allocates from the
    winner's row (waiting for that row's lock like any other creator).
    """
    m = repo.allocate_version(s, name, utcnow())
    if m is not None:
        return m, m.next_version - 1
    validate_model_name(name)
    try:
        with s.begin_nested():
            # Inserted already holding number 1: the new row is locked until commit.
            m = _insert_model(s, actor, name, None, [], next_version=2)
    except DBIntegrityError:
        m = repo.allocate_version(s, name, utcnow())
        if m is None:  # pragma: no cover - the unique violation proves it exists
            raise
        return m, m.next_version - 1
    _model_created(s, actor, m, [])
    return m, 1


def update_model(
    s: Session,
    actor: str,
    name: str,
    description: str | None = None,
    labels: Sequence[str] | None = None,
) -> RegisteredModel:
    m = get_model(s, name)
    before = _model_doc(m, pages.labels_of(s, [m.id])[m.id])
    if description is not None:
        m.description = description
    if labels is not None:
        labels = validate_labels(labels)
        repo.replace_labels(s, m.id, labels)
    m.updated_at = utcnow()
    after = _model_doc(m, labels if labels is not None else before["tags"])
    audit.record(s, actor, "model.update", "registered_model", m.name, before, after)
    return m


def delete_model(s: Session, actor: str, name: str) -> None:
    m = get_model(s, name, for_update=True)
    versions = repo.all_versions(s, m.id)
    prod = [v.version for v in versions if v.stage == "Production"]
    if prod:
        listed = ", ".join(f"v{n}" for n in prod)
        raise Conflict(
            f"Cannot delete model {name!r}: version(s) {listed} are in Production. Transition "
            "them to Archived first (archive rather than delete if you may need them later).",
            {"model_name": name, "production_versions": prod},
        )
    for guard in hooks.DELETE_GUARDS:
        guard(s, m, versions)
    before = _model_doc(m, pages.labels_of(s, [m.id])[m.id])
    before["versions"] = [v.version for v in versions]
    s.delete(m)  # versions, files, tags, metrics, aliases and history cascade in the database
    s.flush()
    audit.record(s, actor, "model.delete", "registered_model", name, before, None)
    events.emit(s, "model.deleted", {"model_name": name, "versions": before["versions"]}, actor)


def search_models(
    s: Session,
    *,
    q: str | None = None,
    stage: str | None = None,
    labels: Sequence[str] = (),
    order_by: str = "name",
    limit: int | None = None,
    page_token: str | None = None,
) -> tuple[list[pages.ModelRow], str | None]:
    """Free text over name and description; ``stage``: has a version in that stage;
    ``labels``: has all of them. Ordered by name (A→Z) or last update (newest first).
    The rows are plain column tuples with ``RegisteredModel``'s attribute names."""
    order = (order_by or "name").strip().lower()
    order = {"updated_at": "updated", "last_updated": "updated", "-updated": "updated"}.get(
        order, order
    )
    if order not in ORDER_BY:
        raise ValidationFailed(
            f"Unknown order_by {order_by!r}. Valid: {', '.join(ORDER_BY)}.",
            {"order_by": order_by, "valid": list(ORDER_BY)},
        )
    lim = clamp_limit(limit)
    stage_c = normalize_stage(stage) if stage else None
    after = decode_token(page_token, 2 if order == "updated" else 1)
    if after is not None:
        # A token is opaque but client-held: check its shape so a forged one is a 400, not a
        # type error in the database.
        try:
            if order == "updated":
                after = [datetime.fromisoformat(str(after[0])), int(after[1])]
            elif not isinstance(after[0], str):
                raise ValueError(after[0])
        except (TypeError, ValueError):
            raise BadRequest("Invalid page_token.", {"page_token": page_token})
    rows, maybe_more = pages.search_models(
        s,
        q=(q or "").strip() or None,
        stage=stage_c,
        labels=_dedupe([lab for lab in labels if lab]),
        order=order,
        limit=lim,
        after=after,
    )
    if not (maybe_more and rows):
        return rows, None
    last = rows[-1]
    key = [last.updated_at.isoformat(), last.id] if order == "updated" else [last.name]
    return rows, encode_token(key)


# ---------------------------------------------------------------- versions


def _version_ref(m: RegisteredModel, mv: ModelVersion) -> str:
    return f"{m.name}/{mv.version}"


def get_version(
    s: Session, name: str, version: Any, *, for_update: bool = False
) -> tuple[RegisteredModel, ModelVersion]:
    n = parse_version(version)
    m = get_model(s, name)
    mv = repo.get_version(s, m.id, n, for_update=for_update)
    if mv is None:
        latest = repo.highest_version(s, m.id)
        hint = f" Its highest version is {latest.version}." if latest else " It has no versions."
        raise NotFound(
            f"Model {name!r} has no version {n}.{hint}",
            {"model_name": name, "version": n},
        )
    return m, mv


def _relative_files(prefix: str, entries: Sequence[Any]) -> list[tuple[str, int, str]]:
    """Manifest paths are run-relative; a version's files are relative to its artifact path
    (a single-file artifact keeps just its file name), so downloads land as ``dest/<file>``."""
    out = []
    for e in entries:
        if e.path == prefix:
            rel = e.path.rsplit("/", 1)[-1]
        elif prefix:
            rel = e.path[len(prefix) + 1 :]
        else:
            rel = e.path
        out.append((rel, e.size, e.sha256))
    return out


@dataclass(frozen=True)
class NewVersion:
    """A version created in this transaction, with what its creation already knows (so
    the response needs no query to read it back)."""

    model: RegisteredModel
    version: ModelVersion
    tags: dict[str, str]
    parent: tuple[str, int] | None  # (model name, version number)


def add_version(
    s: Session,
    actor: str,
    model_name: str,
    source_run_id: str,
    artifact_path: str,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    parent: str | None = None,
) -> NewVersion:
    """Creates the next version of ``model_name`` from a run's artifact (registering the
    model on first use) and returns it with the parts of its view (model, tags, parent)."""
    # Everything that can refuse the request is checked before the model row is locked, so
    # the lock is held only for the few statements that allocate and insert.
    validate_model_name(model_name)
    prefix = validate_artifact_path(artifact_path or "", directory=True)
    # manifest() also checks that the run exists ("Run ... does not exist.").
    files = _relative_files(prefix, artifacts.manifest(s, source_run_id, prefix))
    parent_mv: ModelVersion | None = None
    parent_ref: tuple[str, int] | None = None
    if parent:
        parent_m, parent_mv = resolve_uri(s, parent)
        parent_ref = (parent_m.name, parent_mv.version)
    tags = dict(tags or {})

    m, number = _allocate_number(s, actor, model_name)
    now = utcnow()
    mv = ModelVersion(
        model_id=m.id,
        version=number,
        source_run_id=source_run_id,
        artifact_path=prefix,
        description=description,
        stage="None",
        stage_updated_at=now,
        created_by=actor,
        created_at=now,
        updated_at=now,
        parent_version_id=parent_mv.id if parent_mv else None,
    )
    repo.insert_version(s, mv)  # the unique (model_id, version) key backs the row lock
    repo.add_files(s, mv.id, files)
    repo.upsert_tags(s, mv.id, tags)
    doc = {
        "source_run_id": source_run_id,
        "artifact_path": prefix,
        "description": description,
        "tags": tags,
        "parent": parent,
        "files": len(files),
    }
    audit.record(s, actor, "version.create", "model_version", _version_ref(m, mv), None, doc)
    events.emit(
        s,
        "version.created",
        {
            "model_name": m.name,
            "version": number,
            "source_run_id": source_run_id,
            "artifact_path": prefix,
        },
        actor,
    )
    return NewVersion(model=m, version=mv, tags=tags, parent=parent_ref)


def list_versions(
    s: Session,
    name: str,
    *,
    stage: str | None = None,
    limit: int | None = None,
    page_token: str | None = None,
) -> tuple[RegisteredModel, list[ModelVersion], str | None]:
    m = get_model(s, name)
    lim = clamp_limit(limit)
    stage_c = normalize_stage(stage) if stage else None
    after = decode_token(page_token, 1)
    if after is not None and (not isinstance(after[0], int) or isinstance(after[0], bool)):
        raise BadRequest("Invalid page_token.", {"page_token": page_token})
    rows = repo.list_versions(s, m.id, stage=stage_c, limit=lim, after=after)
    items, token = page_of(rows, lim, lambda v: [v.version])
    return m, items, token


def update_version(
    s: Session, actor: str, name: str, version: Any, description: str | None
) -> tuple[RegisteredModel, ModelVersion]:
    m, mv = get_version(s, name, version)
    before = {"description": mv.description}
    if description is not None:
        mv.description = description
    mv.updated_at = utcnow()
    audit.record(
        s,
        actor,
        "version.update",
        "model_version",
        _version_ref(m, mv),
        before,
        {"description": mv.description},
    )
    return m, mv


def delete_version(s: Session, actor: str, name: str, version: Any) -> None:
    # Model row first, then the version: the same lock order as transitions, so a delete
    # racing a promotion waits instead of deadlocking.
    parse_version(version)
    get_model(s, name, for_update=True)
    m, mv = get_version(s, name, version, for_update=True)
    if mv.stage == "Production":
        raise Conflict(
            f"Version {mv.version} of {name!r} is in Production and cannot be deleted. "
            "Transition it to Archived first.",
            {"model_name": name, "version": mv.version, "stage": mv.stage},
        )
    for guard in hooks.DELETE_GUARDS:
        guard(s, m, [mv])
    for a in repo.aliases_pointing_at(s, [mv.id]):
        drop_alias(s, actor, m, a, mv.version, reason="version deleted")
    before = {
        "source_run_id": mv.source_run_id,
        "artifact_path": mv.artifact_path,
        "stage": mv.stage,
    }
    number = mv.version
    repo.delete_version(s, mv)
    m.updated_at = utcnow()
    audit.record(s, actor, "version.delete", "model_version", f"{m.name}/{number}", before, None)
    events.emit(s, "version.deleted", {"model_name": m.name, "version": number}, actor)


def set_version_tag(s: Session, actor: str, name: str, version: Any, key: str, value: str) -> None:
    m, mv = get_version(s, name, version)
    old = repo.tags_of(s, [mv.id])[mv.id].get(key)
    repo.upsert_tags(s, mv.id, {key: value})
    mv.updated_at = utcnow()
    audit.record(
        s,
        actor,
        "version.set_tag",
        "model_version",
        _version_ref(m, mv),
        None if old is None else {key: old},
        {key: value},
    )


def delete_version_tag(s: Session, actor: str, name: str, version: Any, key: str) -> None:
    m, mv = get_version(s, name, version)
    old = repo.tags_of(s, [mv.id])[mv.id].get(key)
    if old is None or not repo.delete_tag(s, mv.id, key):
        raise NotFound(
            f"Version {mv.version} of {name!r} has no tag {key!r}.",
            {"model_name": name, "version": mv.version, "key": key},
        )
    mv.updated_at = utcnow()
    audit.record(
        s, actor, "version.delete_tag", "model_version", _version_ref(m, mv), {key: old}, None
    )


def log_version_metrics(
    s: Session, actor: str, name: str, version: Any, metrics: dict[str, float]
) -> None:
    """Validation metrics of the version itself; logging a key again replaces its value."""
    m, mv = get_version(s, name, version)
    if not metrics:
        raise ValidationFailed("No metrics given.", {})
    now = utcnow()
    rows = [
        {
            "version_id": mv.id,
            "key": k,
            "value": None if math.isnan(v) else v,  # NULL encodes NaN (SQLite cannot store NaN)
            "logged_by": actor,
            "timestamp": now,
        }
        for k, v in metrics.items()
    ]
    repo.upsert_metrics(s, rows)
    mv.updated_at = now
    audit.record(
        s,
        actor,
        "version.log_metrics",
        "model_version",
        _version_ref(m, mv),
        None,
        {"metrics": {k: _json_number(v) for k, v in metrics.items()}},
    )


def _json_number(v: float) -> float | str:
    # The audit log is JSON, which has no NaN/Infinity.
    return v if math.isfinite(v) else str(v)


def version_files(s: Session, name: str, version: Any) -> list[VersionFile]:
    _, mv = get_version(s, name, version)
    return repo.files_of(s, mv.id)


def version_file(s: Session, name: str, version: Any, path: str) -> VersionFile:
    _, mv = get_version(s, name, version)
    validate_artifact_path(path)
    row = repo.get_file(s, mv.id, path)
    if row is None:
        sample = [f.path for f in repo.files_of(s, mv.id)[:10]]
        raise NotFound(
            f"Version {mv.version} of {name!r} has no file {path!r}. Its files: "
            + ", ".join(repr(p) for p in sample),
            {"model_name": name, "version": mv.version, "path": path, "available": sample},
        )
    return row


# ---------------------------------------------------------------- stages


def transition_stage(
    s: Session,
    actor: str,
    name: str,
    version: Any,
    stage: Any,
    *,
    note: str | None = None,
    archive_existing: bool = False,
) -> TransitionOutcome:
    """The public entry for a requested stage change: validates, lets registered gates
    (approvals) take it over, otherwise applies it."""
    to_stage = normalize_stage(stage)
    _check_archive_existing(to_stage, archive_existing)
    m, mv = get_version(s, name, version)
    if mv.stage == to_stage and not (archive_existing and _others_in(s, mv, to_stage)):
        return TransitionOutcome(mv, applied=False)  # nothing to do, nothing to record
    proposal = TransitionProposal(
        model_name=m.name,
        version=mv.version,
        from_stage=mv.stage,
        to_stage=to_stage,
        note=note,
        archive_existing=archive_existing,
        actor=actor,
    )
    for gate in hooks.TRANSITION_GATES:
        taken = gate(s, proposal)
        if taken is not None:
            return TransitionOutcome(mv, applied=False, interception=taken)
    mv = apply_transition(
        s, actor, name, mv.version, to_stage, note=note, archive_existing=archive_existing
    )
    return TransitionOutcome(mv, applied=True)


def _check_archive_existing(to_stage: str, archive_existing: bool) -> None:
    if archive_existing and to_stage not in EXCLUSIVE_STAGES:
        raise ValidationFailed(
            f"archive_existing applies to transitions into Staging or Production, not {to_stage}.",
            {"stage": to_stage, "archive_existing": True},
        )


def _others_in(s: Session, mv: ModelVersion, stage: str) -> list[ModelVersion]:
    return [v for v in repo.versions_in_stage(s, mv.model_id, stage) if v.id != mv.id]


def apply_transition(
    s: Session,
    actor: str,
    name: str,
    version: Any,
    stage: Any,
    *,
    note: str | None = None,
    archive_existing: bool = False,
    request_id: str | None = None,
) -> ModelVersion:
    """The primitive that changes a version's stage (no gates): records the transition,
    archives the others in the target stage if asked (each recorded too), emits events."""
    to_stage = normalize_stage(stage)
    _check_archive_existing(to_stage, archive_existing)
    # Lock the model row: two promotions with archive_existing must not both survive.
    m = get_model(s, name, for_update=True)
    _, mv = get_version(s, name, version, for_update=True)
    if archive_existing:
        for other in _others_in(s, mv, to_stage):
            _record_transition(
                s,
                actor,
                m,
                other,
                "Archived",
                note=f"Archived: version {mv.version} moved to {to_stage}.",
                request_id=request_id,
            )
    if mv.stage != to_stage:
        _record_transition(s, actor, m, mv, to_stage, note=note, request_id=request_id)
    m.updated_at = utcnow()
    return mv


def _record_transition(
    s: Session,
    actor: str,
    m: RegisteredModel,
    mv: ModelVersion,
    to_stage: str,
    *,
    note: str | None,
    request_id: str | None,
) -> None:
    now = utcnow()
    from_stage = mv.stage
    mv.stage = to_stage
    mv.stage_updated_at = now
    mv.updated_at = now
    repo.add_transition(
        s,
        StageTransition(
            model_id=m.id,
            version_id=mv.id,
            version=mv.version,
            from_stage=from_stage,
            to_stage=to_stage,
            actor=actor,
            at=now,
            note=note,
            request_id=request_id,
        ),
    )
    audit.record(
        s,
        actor,
        "version.transition",
        "model_version",
        _version_ref(m, mv),
        {"stage": from_stage},
        {"stage": to_stage, "note": note, "request_id": request_id},
    )
    events.emit(
        s,
        "stage.transition_applied",
        {
            "model_name": m.name,
            "version": mv.version,
            "from_stage": from_stage,
            "to_stage": to_stage,
            "note": note,
            "request_id": request_id,
        },
        actor,
    )


def stage_history(
    s: Session, name: str, version: Any
) -> tuple[RegisteredModel, list[StageTransition]]:
    m, mv = get_version(s, name, version)
    return m, repo.transitions_of_version(s, mv.id)


def version_by_stage(
    s: Session, name: str, stage: Any, at: datetime | None = None
) -> tuple[RegisteredModel, ModelVersion]:
    """The version in ``stage`` (the one moved there most recently), now or at ``at``."""
    stage_c = normalize_stage(stage)
    m = get_model(s, name)
    if at is None:
        found = repo.versions_in_stage(s, m.id, stage_c)
        if not found:
            raise NotFound(
                f"Model {name!r} has no version in stage {stage_c}.",
                {"model_name": name, "stage": stage_c},
            )
        return m, found[0]
    at = as_utc(at)
    # Replay the recorded transitions up to ``at``: stage and entry time per version number.
    state: dict[int, tuple[str, datetime]] = {
        v.version: ("None", v.created_at) for v in repo.versions_created_until(s, m.id, at)
    }
    for t in repo.transitions_until(s, m.id, at):
        state[t.version] = (t.to_stage, t.at)
    in_stage = [(entered, n) for n, (st, entered) in state.items() if st == stage_c]
    when = at.isoformat()
    if not in_stage:
        raise NotFound(
            f"Model {name!r} had no version in stage {stage_c} at {when}.",
            {"model_name": name, "stage": stage_c, "at": when},
        )
    _, number = max(in_stage)
    mv = repo.get_version(s, m.id, number)
    if mv is None:
        raise NotFound(
            f"Version {number} of {name!r} was in {stage_c} at {when} but has since been deleted.",
            {"model_name": name, "stage": stage_c, "at": when, "version": number},
        )
    return m, mv


# ---------------------------------------------------------------- aliases


def drop_alias(
    s: Session, actor: str, m: RegisteredModel, a: ModelAlias, version: int | None, reason: str
) -> None:
    now = utcnow()
    alias = a.alias
    s.delete(a)
    repo.add_alias_history(
        s,
        AliasHistory(
            model_id=m.id,
            alias=alias,
            kind="delete",
            version=None,
            previous_version=version,
            actor=actor,
            at=now,
        ),
    )
    m.updated_at = now
    s.flush()
    audit.record(
        s,
        actor,
        "alias.delete",
        "registered_model",
        m.name,
        {"alias": alias, "version": version},
        {"reason": reason},
    )
    events.emit(
        s,
        "alias.deleted",
        {"model_name": m.name, "alias": alias, "version": version, "reason": reason},
        actor,
    )


def existing_alias(s: Session, m: RegisteredModel, alias: str) -> ModelAlias:
    if is_reserved_alias(alias):
        raise ValidationFailed(
            f"{alias!r} is a reserved alias (computed, not stored); it cannot be changed.",
            {"alias": alias},
        )
    a = repo.get_alias(s, m.id, alias)
    if a is None:
        names = [x.alias for x in repo.aliases_of_model(s, m.id)]
        raise NotFound(
            f"Model {m.name!r} has no alias {alias!r}."
            + (f" Its aliases: {', '.join(names)}." if names else " It has no aliases."),
            {"model_name": m.name, "alias": alias, "aliases": names},
        )
    return a


def version_by_alias(
    s: Session, name: str, alias: str, at: datetime | None = None
) -> tuple[RegisteredModel, ModelVersion]:
    """Resolves an alias (or the reserved ``latest`` / ``v<N>``), now or at date ``at``."""
    if (
        at is None
        and isinstance(alias, str)
        and ALIAS_RE.fullmatch(alias)
        and not is_reserved_alias(alias)
    ):
        # The common case, a stored alias now: one joined query. A miss falls through to
        # the step-by-step lookups below, which say what is missing.
        hit = repo.model_and_aliased_version(s, name, alias)
        if hit is not None:
            return hit
    m = get_model(s, name)
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias):
        validate_alias(alias)  # raises with the syntax message
    at_c = as_utc(at) if at is not None else None
    when = at_c.isoformat() if at_c else None
    if alias.lower() == LATEST:
        mv = repo.highest_version(s, m.id, created_before=at_c)
        if mv is None:
            raise NotFound(
                f"Model {name!r} has no versions" + (f" created by {when}." if when else "."),
                {"model_name": name, "alias": alias},
            )
        return m, mv
    if (hit := RESERVED_VERSION_RE.fullmatch(alias)) is not None:
        _, mv = get_version(s, name, int(hit.group(1)))
        if at_c is not None and mv.created_at > at_c:
            raise NotFound(
                f"Version {mv.version} of {name!r} did not exist yet at {when}.",
                {"model_name": name, "alias": alias, "at": when},
            )
        return m, mv
    if at_c is None:
        a = existing_alias(s, m, alias)
        return m, repo.versions_by_ids(s, [a.version_id])[a.version_id]
    row = repo.alias_state_at(s, m.id, alias, at_c)
    if row is None or row.version is None:
        raise NotFound(
            f"Alias {alias!r} of {name!r} did not point at any version at {when}.",
            {"model_name": name, "alias": alias, "at": when},
        )
    mv = repo.get_version(s, m.id, row.version)
    if mv is None:
        raise NotFound(
            f"Alias {alias!r} of {name!r} pointed at version {row.version} at {when}, which has "
            "since been deleted.",
            {"model_name": name, "alias": alias, "at": when, "version": row.version},
        )
    return m, mv


# ---------------------------------------------------------------- models:/ references


def resolve_uri(s: Session, uri: str) -> tuple[RegisteredModel, ModelVersion]:
    ref = parse_model_uri(uri)
    if ref.kind == "version":
        return get_version(s, ref.name, int(ref.value))
    if ref.kind == "stage":
        return version_by_stage(s, ref.name, ref.value)
    return version_by_alias(s, ref.name, ref.value)  # alias, or the reserved "latest"


def resolve_in_model(
    s: Session, m: RegisteredModel, ref: Any, why: str | None = None
) -> ModelVersion:
    """A version of model ``m`` given as a number or a ``models:/`` URI that must name ``m``
    (``why`` ends the error message when it names another model)."""
    if isinstance(ref, str) and ref.startswith("models:/"):
        other, mv = resolve_uri(s, ref)
        if other.id != m.id:
            raise ValidationFailed(
                f"{ref} is a version of model {other.name!r}, not of {m.name!r}"
                + (f"; {why}." if why else "."),
                {"model_name": m.name, "ref": ref, "ref_model_name": other.name},
            )
        return mv
    _, mv = get_version(s, m.name, ref)
    return mv

"""Model registry rules for registered models and their versions: names, version numbering,
tags, metrics, files, deletion, search, and the hooks other capabilities plug into. This is
the registry's entry point: it re-exports what callers use from the modules it is split into:

- ``lookup``: finding a model or a version (by number, stage, alias, ``models:/`` URI);
- ``stages``: stage changes (``transition_stage``, ``apply_transition``, history);
- ``aliases``: alias changes (set, delete, roll back, carry out an approved change).

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
- ``hooks.register_version_created_hook(fn)``: ``fn(session, model, version, files)`` runs in
  the transaction that creates a version (provenance signs it there); raising rolls it back.
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
from podstack.schemas.artifact_paths import validate_artifact_path
from podstack.server.artifacts import service as artifacts
from podstack.server.audit import service as audit
from podstack.server.db.base import utcnow
from podstack.server.events import service as events
from podstack.server.pagination import clamp_limit, decode_token, encode_token, page_of
from podstack.server.permissions import service as permissions
from podstack.server.registry import hooks
from podstack.server.registry import model_pages as pages
from podstack.server.registry import repository as repo
from podstack.server.registry.aliases import drop_alias
from podstack.server.registry.hooks import (
    Interception,
    TransitionOutcome,
    TransitionProposal,
    register_alias_delete_guard,
    register_delete_guard,
    register_lineage_contributor,
    register_transition_gate,
)
from podstack.server.registry.lookup import (
    aliases_of_versions,
    files_of_version,
    files_using_digests,
    get_model,
    get_version,
    models_by_ids,
    resolve_in_model,
    resolve_uri,
    version_by_alias,
    version_by_number,
    version_by_stage,
    version_metric_rows,
    version_ref,
    versions_in_stage,
    versions_of_runs,
)
from podstack.server.registry.models import ModelVersion, RegisteredModel, VersionFile
from podstack.server.registry.rules import (
    ORDER_BY,
    STAGE_ORDER,
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
from podstack.server.registry.stages import apply_transition, stage_history, transition_stage
from podstack.server.tracking import service as tracking

# Re-exported: other capabilities and adapters reach the rules, hooks, lookups and stage
# changes through the service.
__all__ = [
    "STAGES",
    "STAGE_ORDER",
    "Interception",
    "ModelRef",
    "NewVersion",
    "TransitionOutcome",
    "TransitionProposal",
    "add_version",
    "aliases_of_versions",
    "apply_transition",
    "delete_model",
    "delete_version",
    "files_of_version",
    "files_using_digests",
    "get_model",
    "get_version",
    "is_reserved_alias",
    "models_by_ids",
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
    "stage_history",
    "transition_stage",
    "validate_alias",
    "validate_model_name",
    "version_by_alias",
    "version_by_number",
    "version_by_stage",
    "version_metric_rows",
    "versions_in_stage",
    "versions_of_runs",
]


def _runs_back_versions(s: Session, run_ids: list[str]) -> None:
    """Tracking's run-delete guard: a run that a registered version came from stays."""
    used = repo.versions_of_runs(s, run_ids)
    if not used and permissions.is_restricted(s):
        # Versions in models the caller cannot read still hold the run (the foreign key
        # would refuse the delete anyway): refuse without naming them.
        with permissions.unrestricted(s):
            hidden = repo.versions_of_runs(s, run_ids)
        if hidden:
            raise Conflict(
                f"Run {hidden[0].source_run_id} is the source of registered model versions "
                "you cannot read; their owners or an admin must delete those versions first.",
                {"run_id": hidden[0].source_run_id},
            )
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
        permissions.require_model(s, m, permissions.EDIT)
        return m, m.next_version - 1
    validate_model_name(name)
    try:
        with s.begin_nested():
            # Inserted already holding number 1: the new row is locked until commit.
            m = _insert_model(s, actor, name, None, [], next_version=2)
    except DBIntegrityError:
        m = repo.allocate_version(s, name, utcnow())
        if m is None:
            # The name is taken by a model this caller cannot read (the read filter hid it):
            # names are unique server-wide, so say so as register_model does.
            raise Conflict(f"Registered model {name!r} already exists.", {"model_name": name})
        permissions.require_model(s, m, permissions.EDIT)
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
    permissions.require_model(s, m, permissions.EDIT)
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
    permissions.require_model(s, m, permissions.MANAGE)
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
    ``labels``: has all of them. Ordered by name (A→Z), last update (newest first) or stage
    (models with a Production version first, then Staging, None, Archived, then none).
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
    after = decode_token(page_token, 1 if order == "name" else 2)
    if after is not None:
        # A token is opaque but client-held: check its shape so a forged one is a 400, not a
        # type error in the database.
        try:
            if order == "updated":
                after = [datetime.fromisoformat(str(after[0])), int(after[1])]
            elif order == "stage":
                if not isinstance(after[0], int) or not isinstance(after[1], str):
                    raise ValueError(after)
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
    if order == "updated":
        key: list[Any] = [last.updated_at.isoformat(), last.id]
    elif order == "stage":
        key = [pages.stage_rank(s, last.id), last.name]
    else:
        key = [last.name]
    return rows, encode_token(key)


# ---------------------------------------------------------------- versions


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
    audit.record(s, actor, "version.create", "model_version", version_ref(m, mv), None, doc)
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
    by_path = sorted(files)
    for hook in hooks.VERSION_CREATED_HOOKS:
        hook(s, m, mv, by_path)
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
    permissions.require_model(s, m, permissions.EDIT)
    before = {"description": mv.description}
    if description is not None:
        mv.description = description
    mv.updated_at = utcnow()
    audit.record(
        s,
        actor,
        "version.update",
        "model_version",
        version_ref(m, mv),
        before,
        {"description": mv.description},
    )
    return m, mv


def delete_version(s: Session, actor: str, name: str, version: Any) -> None:
    # Model row first, then the version: the same lock order as transitions, so a delete
    # racing a promotion waits instead of deadlocking.
    parse_version(version)
    permissions.require_model(s, get_model(s, name, for_update=True), permissions.EDIT)
    m, mv = get_version(s, name, version, for_update=True)
    if mv.stage == "Production":
        raise Conflict(
            f"Version {mv.version} of {name!r} is in Production and cannot be deleted. "
            "Transition it to Archived first.",
            {"model_name": name, "version": mv.version, "stage": mv.stage},
        )
    for guard in hooks.DELETE_GUARDS:
        guard(s, m, [mv])
    pointing = repo.aliases_pointing_at(s, [mv.id])
    # Deleting the version takes it out of its stage and drops its aliases: protected ones
    # need the same right as moving them.
    permissions.require_version_removal(s, m, mv.stage, [a.alias for a in pointing])
    for a in pointing:
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
    permissions.require_model(s, m, permissions.EDIT)
    old = repo.tags_of(s, [mv.id])[mv.id].get(key)
    repo.upsert_tags(s, mv.id, {key: value})
    mv.updated_at = utcnow()
    audit.record(
        s,
        actor,
        "version.set_tag",
        "model_version",
        version_ref(m, mv),
        None if old is None else {key: old},
        {key: value},
    )


def delete_version_tag(s: Session, actor: str, name: str, version: Any, key: str) -> None:
    m, mv = get_version(s, name, version)
    permissions.require_model(s, m, permissions.EDIT)
    old = repo.tags_of(s, [mv.id])[mv.id].get(key)
    if old is None or not repo.delete_tag(s, mv.id, key):
        raise NotFound(
            f"Version {mv.version} of {name!r} has no tag {key!r}.",
            {"model_name": name, "version": mv.version, "key": key},
        )
    mv.updated_at = utcnow()
    audit.record(
        s, actor, "version.delete_tag", "model_version", version_ref(m, mv), {key: old}, None
    )


def log_version_metrics(
    s: Session, actor: str, name: str, version: Any, metrics: dict[str, float]
) -> None:
    """Validation metrics of the version itself; logging a key again replaces its value."""
    m, mv = get_version(s, name, version)
    permissions.require_model(s, m, permissions.EDIT)
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
        version_ref(m, mv),
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

"""Finding a model or a version: by name, by number, by stage (now or at a past date), by
alias (stored, or the reserved ``latest`` / ``v<N>``), or by a ``models:/`` URI.

Read-only and the lowest layer of the registry: ``service`` (models and versions), ``stages``
and ``aliases`` (the changes) all build on it, so it imports none of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import NotFound, ValidationFailed
from podstack.server.db.base import as_utc
from podstack.server.registry import repository as repo
from podstack.server.registry.models import (
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    VersionFile,
    VersionMetric,
)
from podstack.server.registry.rules import (
    ALIAS_RE,
    LATEST,
    RESERVED_VERSION_RE,
    is_reserved_alias,
    normalize_stage,
    parse_model_uri,
    parse_version,
    validate_alias,
)


def get_model(s: Session, name: str, *, for_update: bool = False) -> RegisteredModel:
    m = repo.get_model(s, name, for_update=for_update)
    if m is None:
        raise NotFound(
            f"Registered model {name!r} does not exist.",
            {"model_name": name},
        )
    return m


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


def version_by_number(s: Session, model_id: int, version: int) -> ModelVersion | None:
    """The version, or None when it has been deleted (callers that hold ids say what that means
    for them: a rollback target that is gone, for instance)."""
    return repo.get_version(s, model_id, version)


def files_of_version(s: Session, version_id: int) -> list[VersionFile]:
    """The version's manifest rows (path, size, sha256), by path."""
    return repo.files_of(s, version_id)


def files_using_digests(s: Session, digests: Iterable[str]) -> list[tuple[str, int, str, str]]:
    """(model name, version, path, sha256) of every version file whose content is one of
    ``digests``: what a damaged blob breaks."""
    wanted = set(digests)
    if not wanted:
        return []
    rows = repo.files_with_digests(s, wanted)
    return sorted((m.name, mv.version, f.path, f.sha256) for f, mv, m in rows)


def versions_of_runs(s: Session, run_ids: Iterable[str]) -> list[tuple[str, int, str]]:
    """(model name, version, source run id) of the versions registered from these runs."""
    versions = repo.versions_of_runs(s, list(run_ids), limit=200)
    models = models_by_ids(s, {mv.model_id for mv in versions})
    return sorted((models[mv.model_id].name, mv.version, mv.source_run_id) for mv in versions)


def aliases_of_versions(s: Session, version_ids: Iterable[int]) -> list[ModelAlias]:
    return repo.aliases_pointing_at(s, list(version_ids))


def models_by_ids(s: Session, ids: Iterable[int]) -> dict[int, RegisteredModel]:
    """Models by id (ids that do not exist are left out), for capabilities that hold ids."""
    return repo.models_by_ids(s, ids)


def versions_in_stage(s: Session, model_id: int, stage: str) -> list[ModelVersion]:
    """The model's versions in ``stage``, most recently moved there first."""
    return repo.versions_in_stage(s, model_id, stage)


def version_metric_rows(s: Session, mv: ModelVersion) -> list[VersionMetric]:
    """The version's validation metrics with who logged each and when, by key."""
    return repo.version_metric_rows(s, mv.id)


def version_ref(m: RegisteredModel, mv: ModelVersion) -> str:
    return f"{m.name}/{mv.version}"


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

"""Deployment rules: naming, what can be served where, replicas and GPUs, following aliases,
rollback, and what a deployment protects in the registry. Process and cluster work happens in
``manager`` (after the transaction that asked for it has committed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, ValidationFailed
from podstack.schemas import deployments as sch
from podstack.schemas import registry as reg_sch
from podstack.server.artifacts.store import BlobStore
from podstack.server.audit import service as audit
from podstack.server.config import Settings
from podstack.server.db.base import new_id, utcnow
from podstack.server.deployments import repository as repo
from podstack.server.deployments import targets as tg
from podstack.server.deployments.models import Deployment, DeploymentTarget
from podstack.server.events import service as events
from podstack.server.pagination import clamp_limit, decode_token, page_of
from podstack.server.registry import hooks
from podstack.server.registry import repository as reg_repo
from podstack.server.registry import service as registry
from podstack.server.registry.models import ModelVersion, RegisteredModel
from podstack.serving import formats as fmt

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 45  # KServe derives longer names (<name>-predictor-...) that must fit 63 chars
HEALTH_KEEP = 20
STATUSES = ("pending", "starting", "ready", "failed", "stopped")


# ---------------------------------------------------------------- targets


def _builtin_local() -> DeploymentTarget:
    return DeploymentTarget(name=tg.LOCAL, kind=tg.LOCAL, config={}, is_default=False)


def _target_rows(s: Session) -> list[DeploymentTarget]:
    rows = list(repo.list_targets(s))
    if not any(r.name == tg.LOCAL for r in rows):
        rows.insert(0, _builtin_local())
    return rows


def default_target_name(s: Session) -> str:
    for r in _target_rows(s):
        if r.is_default:
            return r.name
    return tg.LOCAL


def get_target(s: Session, name: str | None, settings: Settings, store: BlobStore) -> tg.Target:
    name = name or default_target_name(s)
    row = repo.get_target(s, name) or (_builtin_local() if name == tg.LOCAL else None)
    if row is None:
        names = [r.name for r in _target_rows(s)]
        raise ValidationFailed(
            f"Unknown deployment target {name!r}. Configured targets: {', '.join(names)}.",
            {"target": name, "available": names},
        )
    return tg.build(row.name, row.kind, row.config or {}, settings, store)


def target_view(row: DeploymentTarget, settings: Settings, store: BlobStore) -> sch.Target:
    t = tg.build(row.name, row.kind, row.config or {}, settings, store)
    return sch.Target(
        name=row.name,
        kind=row.kind,
        config=row.config or {},
        is_default=bool(row.is_default),
        builtin=row.name == tg.LOCAL,
        gpu_types=t.gpu_types(),
        trusted_formats=t.trusted,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


def list_targets(s: Session, settings: Settings, store: BlobStore) -> list[sch.Target]:
    return [target_view(r, settings, store) for r in _target_rows(s)]


def put_target(
    s: Session, actor: str, name: str, body: sch.TargetIn, settings: Settings, store: BlobStore
) -> sch.Target:
    if not re.match(r"^[a-z0-9][-a-z0-9_]{0,63}$", name):
        raise ValidationFailed(
            f"Invalid target name {name!r}: use 1-64 lowercase letters, digits, '-' or '_'.",
            {"name": name},
        )
    if name == tg.LOCAL and body.kind != tg.LOCAL:
        raise ValidationFailed("The built-in 'local' target must keep kind 'local'.")
    tg.build(name, body.kind, body.config, settings, store)  # unknown kind -> 422
    if body.is_default:
        for other in repo.list_targets(s):
            if other.name != name:
                other.is_default = False
    row = repo.get_target(s, name)
    before = None
    if row is None:
        row = DeploymentTarget(name=name, created_at=utcnow())
        s.add(row)
    else:
        before = {"kind": row.kind, "config": row.config, "is_default": row.is_default}
    row.kind = body.kind
    row.config = dict(body.config)
    row.is_default = body.is_default
    row.updated_by = actor
    row.updated_at = utcnow()
    s.flush()
    audit.record(
        s,
        actor,
        "deployment_target.put",
        "deployment_target",
        name,
        before,
        {"kind": row.kind, "config": row.config, "is_default": row.is_default},
    )
    return target_view(row, settings, store)


def delete_target(s: Session, actor: str, name: str) -> None:
    row = repo.get_target(s, name)
    if row is None:
        raise NotFound(f"No deployment target {name!r}.", {"target": name})
    users = [d.name for d in _all(s) if d.target == name]
    if users:
        raise Conflict(
            f"Target {name!r} is used by deployment(s) {', '.join(users)}; delete them first.",
            {"target": name, "deployments": users},
        )
    s.delete(row)
    s.flush()
    audit.record(
        s, actor, "deployment_target.delete", "deployment_target", name, {"kind": row.kind}
    )


def _all(s: Session) -> Sequence[Deployment]:
    return repo.list_deployments(s, limit=10_000)


# ---------------------------------------------------------------- resolving what to serve


def validate_name(name: str) -> None:
    if not isinstance(name, str) or len(name) > NAME_MAX or not NAME_RE.match(name):
        raise ValidationFailed(
            f"Invalid endpoint name {name!r}: use 1-{NAME_MAX} lowercase letters, digits and "
            "'-', starting with a letter and ending with a letter or digit (it becomes a URL "
            "path segment and a Kubernetes resource name), e.g. 'sentiment-api'.",
            {"endpoint_name": name},
        )


def resolve(
    s: Session, model_name: str, version: int | None, alias: str | None
) -> tuple[RegisteredModel, ModelVersion]:
    if version is not None and alias is not None:
        raise ValidationFailed(
            "Give either version (pin a version) or alias (follow an alias), not both.",
            {"version": version, "alias": alias},
        )
    if alias is not None:
        return registry.version_by_alias(s, model_name, alias)
    if version is None:
        return registry.version_by_alias(s, model_name, "latest")
    return registry.get_version(s, model_name, version)


def servable_of(s: Session, store: BlobStore, m: RegisteredModel, mv: ModelVersion) -> fmt.Servable:
    files = reg_repo.files_of(s, mv.id)
    by_path = {f.path: f.sha256 for f in files}
    try:
        return fmt.detect(list(by_path), lambda p: open(store.path_for(by_path[p]), "rb"))
    except fmt.NotServable as exc:
        raise ValidationFailed(
            f"Version {mv.version} of {m.name!r} cannot be served: {exc.reason}",
            {"model_name": m.name, "version": mv.version, "reason": exc.reason, **exc.details},
        ) from None
    except FileNotFoundError:
        raise ValidationFailed(
            f"Version {mv.version} of {m.name!r} cannot be served: its files are missing from "
            "the artifact store.",
            {"model_name": m.name, "version": mv.version},
        ) from None


def _check_trust(
    target: tg.Target, servable: fmt.Servable, m: RegisteredModel, mv: ModelVersion
) -> None:
    if servable.unsafe and not target.trusted:
        raise ValidationFailed(
            f"Version {mv.version} of {m.name!r} is a scikit-learn pickle ({servable.data_path!r})"
            ". Loading a pickle executes code from the file, so target "
            f"{target.name!r} refuses it: trusted formats are off. An admin can enable them "
            f"(PUT /api/v1/deployment-targets/{target.name} with config "
            '{"trusted_formats": true}), or log the model as ONNX '
            "(run.log_model(model, 'model', input_example=X) converts scikit-learn with skl2onnx).",
            {
                "model_name": m.name,
                "version": mv.version,
                "format": servable.format,
                "reason": "untrusted_pickle",
                "target": target.name,
            },
        )


def run_spec(s: Session, dep: Deployment, target: tg.Target) -> tg.RunSpec:
    mv = s.get(ModelVersion, dep.version_id)
    m = s.get(RegisteredModel, dep.model_id)
    assert mv is not None and m is not None  # FKs with RESTRICT
    files = reg_repo.files_of(s, mv.id)
    servable = servable_of(s, target.store, m, mv)
    return tg.RunSpec(
        deployment_id=dep.id,
        endpoint=dep.name,
        model_name=m.name,
        version=mv.version,
        version_id=mv.id,
        format=servable.format,
        files=[(f.path, f.sha256) for f in files],
        min_replicas=dep.min_replicas,
        max_replicas=dep.max_replicas,
        gpu_type=dep.gpu_type,
        trusted=target.trusted,
        signature=servable.signature.to_json() if servable.signature else None,
    )


# ---------------------------------------------------------------- lifecycle requests


def _doc(d: Deployment) -> dict[str, Any]:
    return {
        "version": d.version,
        "alias": d.alias,
        "target": d.target,
        "gpu_type": d.gpu_type,
        "min_replicas": d.min_replicas,
        "max_replicas": d.max_replicas,
        "desired_state": d.desired_state,
    }


def get(s: Session, name: str, *, for_update: bool = False) -> Deployment:
    d = repo.get_by_name(s, name, for_update=for_update)
    if d is None:
        names = [x.name for x in repo.list_deployments(s, limit=10)]
        hint = f" Existing: {', '.join(names)}." if names else " There are no deployments yet."
        raise NotFound(f"No deployment named {name!r}.{hint}", {"endpoint_name": name})
    return d


def create_deployment(
    s: Session, actor: str, body: sch.DeploymentCreate, settings: Settings, store: BlobStore
) -> Deployment:
    validate_name(body.endpoint_name)
    target = get_target(s, body.target, settings, store)
    gpu = target.validate(body.gpu_type, body.min_replicas, body.max_replicas)
    m, mv = resolve(s, body.model_name, body.version, body.alias)
    if repo.get_by_name(s, body.endpoint_name) is not None:
        raise Conflict(
            f"A deployment named {body.endpoint_name!r} already exists; choose another endpoint "
            "name, or update that deployment (update_deployment) to change what it serves.",
            {"endpoint_name": body.endpoint_name},
        )
    servable = servable_of(s, store, m, mv)
    _check_trust(target, servable, m, mv)
    now = utcnow()
    d = Deployment(
        id=new_id("dep"),
        name=body.endpoint_name,
        model_id=m.id,
        alias=body.alias,
        version_id=mv.id,
        version=mv.version,
        target=target.name,
        gpu_type=gpu,
        min_replicas=body.min_replicas,
        max_replicas=body.max_replicas,
        format=servable.format,
        signature=servable.signature.to_json() if servable.signature else None,
        desired_state="running",
        status="pending",
        health=[],
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    s.add(d)
    s.flush()
    audit.record(
        s,
        actor,
        "deployment.create",
        "deployment",
        d.name,
        None,
        {**_doc(d), "model_name": m.name},
    )
    return d


def update_deployment(
    s: Session,
    actor: str,
    name: str,
    body: sch.DeploymentUpdate,
    settings: Settings,
    store: BlobStore,
) -> Deployment:
    d = get(s, name, for_update=True)
    before = _doc(d)
    fields = body.model_fields_set
    m = s.get(RegisteredModel, d.model_id)
    assert m is not None
    target = get_target(s, d.target, settings, store)
    min_r = body.min_replicas if body.min_replicas is not None else d.min_replicas
    max_r = body.max_replicas if body.max_replicas is not None else d.max_replicas
    gpu = body.gpu_type if "gpu_type" in fields else d.gpu_type
    gpu = target.validate(gpu, min_r, max_r)
    if "version" in fields or "alias" in fields:
        if body.version is None and body.alias is None:
            raise ValidationFailed("Give a version or an alias to change what is served.")
        _, mv = resolve(s, m.name, body.version, body.alias)
        if mv.id != d.version_id:
            # format and signature describe what serves; they change when the rollout succeeds.
            _check_trust(target, servable_of(s, store, m, mv), m, mv)
        d.version_id, d.version = mv.id, mv.version
        d.alias = body.alias
    d.min_replicas, d.max_replicas, d.gpu_type = min_r, max_r, gpu
    d.desired_state = "running"
    d.updated_at = utcnow()
    s.flush()
    after = _doc(d)
    audit.record(s, actor, "deployment.update", "deployment", d.name, before, after)
    if before != after:
        events.emit(
            s,
            "deployment.updated",
            {"endpoint_name": d.name, "model_name": m.name, "before": before, "after": after},
            actor,
        )
    return d


def rollback_deployment(s: Session, actor: str, name: str) -> Deployment:
    """Back to the version served before the current one. A deployment that followed an alias
    is pinned to that version (the alias itself is the registry's to move)."""
    d = get(s, name, for_update=True)
    if d.previous_version is None:
        raise Conflict(
            f"Deployment {name!r} has no previous version to roll back to (it has only served "
            f"version {d.serving_version or d.version}).",
            {"endpoint_name": name},
        )
    m = s.get(RegisteredModel, d.model_id)
    assert m is not None
    mv = reg_repo.get_version(s, m.id, d.previous_version)
    if mv is None:
        raise Conflict(
            f"Cannot roll back {name!r}: its previous version {d.previous_version} of "
            f"{m.name!r} has been deleted.",
            {"endpoint_name": name, "version": d.previous_version},
        )
    before = _doc(d)
    d.version_id, d.version, d.alias = mv.id, mv.version, None
    d.desired_state = "running"
    d.updated_at = utcnow()
    s.flush()
    audit.record(s, actor, "deployment.rollback", "deployment", d.name, before, _doc(d))
    events.emit(
        s,
        "deployment.updated",
        {
            "endpoint_name": d.name,
            "model_name": m.name,
            "before": before,
            "after": _doc(d),
            "rollback": True,
        },
        actor,
    )
    return d


def set_desired_state(s: Session, actor: str, name: str, state: str) -> Deployment:
    d = get(s, name, for_update=True)
    before = _doc(d)
    d.desired_state = state
    d.updated_at = utcnow()
    if state == "running" and d.status in ("failed", "stopped"):
        d.status, d.status_reason, d.rollout = "pending", None, None
    s.flush()
    audit.record(
        s,
        actor,
        f"deployment.{'stop' if state == 'stopped' else 'start'}",
        "deployment",
        d.name,
        before,
        _doc(d),
    )
    return d


def delete_deployment(s: Session, actor: str, name: str) -> tuple[str, dict[str, Any] | None]:
    """Removes the deployment; returns (target name, runtime) for the caller to stop."""
    d = get(s, name, for_update=True)
    m = s.get(RegisteredModel, d.model_id)
    before = {**_doc(d), "model_name": m.name if m else None}
    target, runtime = d.target, d.runtime
    s.delete(d)
    s.flush()
    audit.record(s, actor, "deployment.delete", "deployment", name, before, None)
    events.emit(
        s,
        "deployment.deleted",
        {"endpoint_name": name, "model_name": before["model_name"], "version": d.serving_version},
        actor,
    )
    return target, runtime


def list_deployments(
    s: Session,
    *,
    model_name: str | None = None,
    version: int | None = None,
    status: str | None = None,
    limit: int | None = None,
    page_token: str | None = None,
) -> tuple[list[Deployment], str | None]:
    lim = clamp_limit(limit)
    token = decode_token(page_token, 1)
    model_id = registry.get_model(s, model_name).id if model_name else None
    if status is not None and status not in STATUSES:
        raise ValidationFailed(
            f"Unknown status {status!r}; use one of {', '.join(STATUSES)}.", {"status": status}
        )
    rows = repo.list_deployments(
        s,
        model_id=model_id,
        version=version,
        status=status,
        after=str(token[0]) if token else None,
        limit=lim,
    )
    return page_of(rows, lim, lambda d: [d.name])


# ---------------------------------------------------------------- views


def view(
    s: Session,
    d: Deployment,
    settings: Settings,
    store: BlobStore,
    base: str | None,
    model_names: dict[int, str] | None = None,
) -> sch.Deployment:
    names = model_names if model_names is not None else repo.model_names(s, [d.model_id])
    row = repo.get_target(s, d.target)
    kind = row.kind if row is not None else tg.LOCAL
    if kind == tg.KUBERNETES and row is not None:
        url = tg.build(row.name, row.kind, row.config or {}, settings, store).public_url(
            d.name, d.runtime
        )
    elif settings.embedded or not base:
        port = (d.runtime or {}).get("port")
        url = f"http://127.0.0.1:{port}" if port else None
    else:
        url = f"{base.rstrip('/')}/api/v1/endpoints/{d.name}"
    history = [sch.HealthCheck.model_validate(h) for h in (d.health or [])]
    return sch.Deployment(
        id=d.id,
        endpoint_name=d.name,
        model_name=names.get(d.model_id, "?"),
        version=d.serving_version,
        target_version=d.version,
        previous_version=d.previous_version,
        alias=d.alias,
        target=d.target,
        target_kind=kind,
        gpu_type=d.gpu_type,
        min_replicas=d.min_replicas,
        max_replicas=d.max_replicas,
        format=d.format,
        status=d.status,
        desired_state=d.desired_state,
        status_reason=d.status_reason,
        endpoint_url=url,
        inference_url=f"{url}/v2/models/{d.name}/infer" if url else None,
        signature=d.signature,
        health=history[-1] if history else None,
        health_history=history,
        rollout=sch.Rollout.model_validate(d.rollout) if d.rollout else None,
        created_by=d.created_by,
        created_at=d.created_at,
        updated_at=d.updated_at,
    )


def views(
    s: Session, rows: Sequence[Deployment], settings: Settings, store: BlobStore, base: str | None
) -> list[sch.Deployment]:
    names = repo.model_names(s, [d.model_id for d in rows])
    return [view(s, d, settings, store, base, names) for d in rows]


def record_health(d: Deployment, ok: bool, latency_ms: float | None, message: str) -> None:
    entry = {"at": utcnow().isoformat(), "ok": ok, "latency_ms": latency_ms, "message": message}
    d.health = [*(d.health or [])[-(HEALTH_KEEP - 1) :], entry]


def lease_window(seconds: float) -> tuple[Any, Any]:
    now = utcnow()
    return now, now + timedelta(seconds=seconds)


# ---------------------------------------------------------------- registry hooks


def _guard_delete(s: Session, m: RegisteredModel, versions: list[ModelVersion]) -> None:
    """Refuses deleting a version (or a model with versions) that a deployment serves or is
    rolling out to; a deployment is removed or moved first."""
    deps = repo.using_versions(s, [v.id for v in versions])
    if not deps:
        return
    used = sorted({n for d in deps for n in (d.version, d.serving_version) if n is not None})
    names = sorted(d.name for d in deps)
    listed = ", ".join(f"v{n}" for n in used)
    raise Conflict(
        f"Cannot delete: {m.name!r} {listed} is served by deployment(s) {', '.join(names)}. "
        "Delete those deployments or update them to another version first.",
        {"model_name": m.name, "versions": used, "deployments": names},
    )


def _guard_alias_delete(s: Session, m: RegisteredModel, alias: str) -> None:
    deps = repo.following(s, m.id, alias)
    if deps:
        names = ", ".join(sorted(d.name for d in deps))
        raise Conflict(
            f"Cannot delete alias {alias!r} of {m.name!r}: deployment(s) {names} follow it. "
            "Pin them to a version (update_deployment(..., version=N)) or delete them first.",
            {"model_name": m.name, "alias": alias, "deployments": sorted(d.name for d in deps)},
        )


def _lineage(
    s: Session, m: RegisteredModel, mv: ModelVersion
) -> tuple[list[reg_sch.LineageNode], list[reg_sch.LineageEdge]] | None:
    deps = repo.using_versions(s, [mv.id])
    if not deps:
        return None
    nodes, edges = [], []
    source = f"model_version:{m.name}/{mv.version}"
    for d in deps:
        node_id = f"deployment:{d.name}"
        nodes.append(
            reg_sch.LineageNode(
                id=node_id,
                type="deployment",
                label=d.name,
                data={
                    "endpoint_name": d.name,
                    "status": d.status,
                    "target": d.target,
                    "serving": d.serving_version_id == mv.id,
                    "alias": d.alias,
                },
            )
        )
        edges.append(reg_sch.LineageEdge(source=source, target=node_id, relation="deployed_as"))
    return nodes, edges


hooks.register_delete_guard(_guard_delete)
hooks.register_alias_delete_guard(_guard_alias_delete)
hooks.register_lineage_contributor(_lineage)


def follow_alias(s: Session, actor: str, model_name: str, alias: str) -> list[str]:
    """Points deployments that follow ``alias`` at its new version (same transaction as the
    move); returns their ids for the manager to roll after commit."""
    m = registry.get_model(s, model_name)
    deps = repo.following(s, m.id, alias)
    if not deps:
        return []
    _, mv = registry.version_by_alias(s, model_name, alias)
    moved = []
    for d in deps:
        if d.version_id == mv.id:
            continue
        before = _doc(d)
        d.version_id, d.version = mv.id, mv.version
        d.updated_at = utcnow()
        audit.record(s, actor, "deployment.follow_alias", "deployment", d.name, before, _doc(d))
        moved.append(d.id)
    s.flush()
    return moved

"""Deployment rules, the capability's entry point: creating, updating, rolling back, stopping,
starting and deleting deployments. Process and cluster work happens in ``manager``, after the
transaction that asked for it has committed (``effects``, registered on the session scope).

The rules live by concern and are re-exported here, so callers import this module only:

- ``checks``: endpoint names, what can be served where, and governance (every path — REST,
  SDK, CLI, UI, alias moves, rollbacks — comes through it): a *production* endpoint serves
  only versions in Production or approved for it (``require_servable``): anything else opens
  a ``deployment`` approval request and raises ``errors.ApprovalPending`` (409 with
  ``request_id``); approving it carries the change out (``carry_out`` below). Editors may
  mark an endpoint production; only admins may unmark it. On a target with
  ``trusted_formats``, only an admin (or a version approved for the endpoint) may deploy a
  pickle: loading one runs code on the host (``check_pickle``).
- ``governance``: what a deployment protects in the registry, and alias moves that roll the
  deployments following the alias.
- ``target_config``: the configured deployment targets.
- ``rollouts``: failed-rollout records, health history, leases.
- ``views``: rows to wire objects (``scrub_paths`` keeps the server's paths out of messages).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    PodstackError,
    ValidationFailed,
)
from podstack.schemas import deployments as sch
from podstack.server.artifacts.store import BlobStore
from podstack.server.audit import service as audit
from podstack.server.auth.principal import Principal
from podstack.server.config import Settings
from podstack.server.db.base import new_id, utcnow
from podstack.server.deployments import effects
from podstack.server.deployments import repository as repo
from podstack.server.deployments import targets as tg
from podstack.server.deployments.checks import (
    check_pickle,
    check_trust,
    is_admin,
    require_servable,
    resolve,
    validate_name,
)

# Importing governance registers its registry hooks (delete guards, lineage).
from podstack.server.deployments.governance import follow_alias
from podstack.server.deployments.models import Deployment
from podstack.server.deployments.rollouts import (
    clear_failed_rollout,
    lease_window,
    record_health,
)
from podstack.server.deployments.target_config import (
    default_target_name,
    delete_target,
    get_target,
    list_targets,
    put_target,
)
from podstack.server.deployments.views import audit_doc, view, views
from podstack.server.events import service as events
from podstack.server.pagination import clamp_limit, decode_token, page_of
from podstack.server.permissions import service as permissions
from podstack.server.provenance import service as provenance
from podstack.server.registry import service as registry
from podstack.server.registry.models import ModelVersion, RegisteredModel
from podstack.serving import formats as fmt

# What callers use (endpoints, UI, manager, sinks, approvals); the rules live by concern.
__all__ = [
    "STATUSES",
    "carry_out",
    "create_deployment",
    "default_target_name",
    "delete_deployment",
    "delete_target",
    "follow_alias",
    "get",
    "get_target",
    "lease_window",
    "list_deployments",
    "list_targets",
    "put_target",
    "record_health",
    "rollback_deployment",
    "run_spec",
    "servable_of",
    "set_desired_state",
    "update_deployment",
    "view",
    "views",
]

STATUSES = ("pending", "starting", "ready", "failed", "stopped")


# ---------------------------------------------------------------- resolving what to serve


def servable_of(s: Session, store: BlobStore, m: RegisteredModel, mv: ModelVersion) -> fmt.Servable:
    # Before anything is loaded: the version's signature must still match its files.
    provenance.check_deployable(s, m, mv)
    files = registry.files_of_version(s, mv.id)
    by_path = {f.path: f.sha256 for f in files}
    try:
        return fmt.detect(list(by_path), lambda p: store.open_blob(by_path[p]))
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


def run_spec(s: Session, dep: Deployment, target: tg.Target) -> tg.RunSpec:
    mv = s.get(ModelVersion, dep.version_id)
    m = s.get(RegisteredModel, dep.model_id)
    assert mv is not None and m is not None  # FKs with RESTRICT
    files = registry.files_of_version(s, mv.id)
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


def _model_to_change(s: Session, d: Deployment) -> RegisteredModel:
    """The deployment's model, once the caller is known to hold EDIT on it: updating,
    rolling back, stopping, starting or deleting a deployment changes what serves the model,
    as creating one does. (A caller who cannot read the model never gets here: the read
    filter hides its deployments, so ``get`` answers 404.)"""
    m = s.get(RegisteredModel, d.model_id)
    assert m is not None
    permissions.require_model(s, m, permissions.EDIT)
    return m


def get(s: Session, name: str, *, for_update: bool = False) -> Deployment:
    d = repo.get_by_name(s, name, for_update=for_update)
    if d is None:
        names = [x.name for x in repo.list_deployments(s, limit=10)]
        hint = f" Existing: {', '.join(names)}." if names else " There are no deployments yet."
        raise NotFound(f"No deployment named {name!r}.{hint}", {"endpoint_name": name})
    return d


def create_deployment(
    s: Session,
    actor: str,
    body: sch.DeploymentCreate,
    settings: Settings,
    store: BlobStore,
    *,
    principal: Principal | None = None,
    approved_request: str | None = None,
) -> Deployment:
    """``approved_request``: the approval request this carries out (its checks are done)."""
    # Every problem of the request is reported at once (one 422), not the first found: a
    # user fixing the GPU type should not then learn the version cannot be served at all.
    problems: list[ValidationFailed] = []
    other: list[PodstackError] = []  # a 404 or 409: raised as such when it is the only one
    target: tg.Target | None = None
    gpu: str | None = None
    m: RegisteredModel | None = None
    mv: ModelVersion | None = None
    servable: fmt.Servable | None = None
    try:
        validate_name(body.endpoint_name)
    except ValidationFailed as exc:
        problems.append(exc)
    try:
        target = get_target(s, body.target, settings, store)
        gpu, found = target.check(body.gpu_type, body.min_replicas, body.max_replicas)
        problems.extend(found)
    except ValidationFailed as exc:
        problems.append(exc)
    try:
        m, mv = resolve(s, body.model_name, body.version, body.alias)
        # Serving a version is a change to the model (it is what answers under an endpoint),
        # so it needs EDIT like moving an alias; READ only lets one look. Refused at once,
        # before the other problems: a reader should not learn what else is wrong.
        permissions.require_model(s, m, permissions.EDIT)
    except ValidationFailed as exc:
        problems.append(exc)
    except NotFound as exc:
        other.append(exc)
    if repo.get_by_name(s, body.endpoint_name) is not None:
        other.append(
            Conflict(
                f"A deployment named {body.endpoint_name!r} already exists; choose another "
                "endpoint name, or update that deployment (update_deployment) to change what "
                "it serves.",
                {"endpoint_name": body.endpoint_name},
            )
        )
    if m is not None and mv is not None:
        try:
            servable = servable_of(s, store, m, mv)
            if target is not None:
                check_trust(target, servable, m, mv)
        except ValidationFailed as exc:
            problems.append(exc)
    if problems:
        problems.extend(ValidationFailed(e.message, e.details) for e in other)
        raise tg.combine(problems)
    if other:
        raise other[0]
    assert target is not None and m is not None and mv is not None and servable is not None
    if body.production:
        action = {"operation": "create", "body": body.model_dump(exclude_unset=True)}
        require_servable(s, actor, body.endpoint_name, m, mv, action, approved_request)
    check_pickle(s, actor, principal, target, servable, body.endpoint_name, m, mv, approved_request)
    now = utcnow()
    d = Deployment(
        id=new_id("dep"),
        name=body.endpoint_name,
        model_id=m.id,
        alias=body.alias,
        version_id=mv.id,
        version=mv.version,
        target=target.name,
        production=body.production,
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
        {**audit_doc(d), "model_name": m.name}
        | ({"approval_request": approved_request} if approved_request else {}),
    )
    effects.converge(s, d.id, settings, store)  # start it once the deployment is kept
    return d


def update_deployment(
    s: Session,
    actor: str,
    name: str,
    body: sch.DeploymentUpdate,
    settings: Settings,
    store: BlobStore,
    *,
    principal: Principal | None = None,
    approved_request: str | None = None,
) -> Deployment:
    d = get(s, name, for_update=True)
    before = audit_doc(d)
    fields = body.model_fields_set
    production = bool(d.production)
    if "production" in fields and body.production is not None:
        unmarking = production and not body.production and approved_request is None
        if unmarking and not is_admin(s, actor, principal):
            raise PermissionDenied(
                f"Only an admin can unmark production endpoint {name!r}: unmarking lifts "
                "the approval its versions need.",
                {"endpoint_name": name, "production": True},
            )
        production = body.production
    m = _model_to_change(s, d)
    target = get_target(s, d.target, settings, store)
    min_r = body.min_replicas if body.min_replicas is not None else d.min_replicas
    max_r = body.max_replicas if body.max_replicas is not None else d.max_replicas
    gpu = body.gpu_type if "gpu_type" in fields else d.gpu_type
    # As for create: every problem at once.
    gpu, problems = target.check(gpu, min_r, max_r)
    mv: ModelVersion | None = None
    if "version" in fields or "alias" in fields:
        if body.version is None and body.alias is None:
            problems.append(
                ValidationFailed("Give a version or an alias to change what is served.")
            )
        else:
            try:
                _, mv = resolve(s, m.name, body.version, body.alias)
            except ValidationFailed as exc:
                problems.append(exc)
            except NotFound as exc:
                if not problems:
                    raise
                problems.append(ValidationFailed(exc.message, exc.details))
    else:
        mv = s.get(ModelVersion, d.version_id)
        assert mv is not None
    servable: fmt.Servable | None = None
    if mv is not None and mv.id != d.version_id:
        # format and signature describe what serves; they change when the rollout succeeds.
        try:
            servable = servable_of(s, store, m, mv)
            check_trust(target, servable, m, mv)
        except ValidationFailed as exc:
            problems.append(exc)
    if problems:
        raise tg.combine(problems)
    assert mv is not None
    newly_production = production and not d.production
    if production and (mv.id != d.version_id or newly_production):
        action = {"operation": "update", "body": body.model_dump(exclude_unset=True)}
        require_servable(s, actor, d.name, m, mv, action, approved_request)
    if servable is not None:
        check_pickle(s, actor, principal, target, servable, d.name, m, mv, approved_request)
    if "version" in fields or "alias" in fields:
        d.version_id, d.version = mv.id, mv.version
        d.alias = body.alias
    d.production = production
    d.min_replicas, d.max_replicas, d.gpu_type = min_r, max_r, gpu
    d.desired_state = "running"
    clear_failed_rollout(d)
    d.updated_at = utcnow()
    s.flush()
    after = audit_doc(d)
    audit.record(
        s,
        actor,
        "deployment.update",
        "deployment",
        d.name,
        before,
        after | ({"approval_request": approved_request} if approved_request else {}),
    )
    if before != after:
        events.emit(
            s,
            "deployment.updated",
            {"endpoint_name": d.name, "model_name": m.name, "before": before, "after": after},
            actor,
        )
    effects.converge(s, d.id, settings, store)
    return d


def rollback_deployment(
    s: Session,
    actor: str,
    name: str,
    *,
    principal: Principal | None = None,
    approved_request: str | None = None,
    settings: Settings | None = None,
    store: BlobStore | None = None,
) -> Deployment:
    """Back to the version served before the current one. A deployment that followed an alias
    is pinned to that version (the alias itself is the registry's to move)."""
    d = get(s, name, for_update=True)
    m = _model_to_change(s, d)
    if d.previous_version is None:
        raise Conflict(
            f"Deployment {name!r} has no previous version to roll back to (it has only served "
            f"version {d.serving_version or d.version}).",
            {"endpoint_name": name},
        )
    mv = registry.version_by_number(s, m.id, d.previous_version)
    if mv is None:
        raise Conflict(
            f"Cannot roll back {name!r}: its previous version {d.previous_version} of "
            f"{m.name!r} has been deleted.",
            {"endpoint_name": name, "version": d.previous_version},
        )
    if d.production:
        action = {"operation": "rollback", "version": mv.version}
        require_servable(s, actor, d.name, m, mv, action, approved_request)
    if settings is not None and store is not None:
        target = get_target(s, d.target, settings, store)
        servable = servable_of(s, store, m, mv)
        check_trust(target, servable, m, mv)
        check_pickle(s, actor, principal, target, servable, d.name, m, mv, approved_request)
    before = audit_doc(d)
    d.version_id, d.version, d.alias = mv.id, mv.version, None
    d.desired_state = "running"
    clear_failed_rollout(d)
    d.updated_at = utcnow()
    s.flush()
    audit.record(
        s,
        actor,
        "deployment.rollback",
        "deployment",
        d.name,
        before,
        audit_doc(d) | ({"approval_request": approved_request} if approved_request else {}),
    )
    events.emit(
        s,
        "deployment.updated",
        {
            "endpoint_name": d.name,
            "model_name": m.name,
            "before": before,
            "after": audit_doc(d),
            "rollback": True,
        },
        actor,
    )
    effects.converge(s, d.id, settings, store)
    return d


def set_desired_state(
    s: Session,
    actor: str,
    name: str,
    state: str,
    *,
    settings: Settings | None = None,
    store: BlobStore | None = None,
) -> Deployment:
    d = get(s, name, for_update=True)
    _model_to_change(s, d)
    before = audit_doc(d)
    d.desired_state = state
    d.updated_at = utcnow()
    if state == "running" and d.status in ("failed", "stopped"):
        d.status, d.status_reason, d.rollout = "pending", None, None
    elif state == "running":
        clear_failed_rollout(d)
    s.flush()
    audit.record(
        s,
        actor,
        f"deployment.{'stop' if state == 'stopped' else 'start'}",
        "deployment",
        d.name,
        before,
        audit_doc(d),
    )
    # A stop waits for the model server to be gone, so the answer shows it stopped.
    wait = effects.STOP_WAIT_SECONDS if state == "stopped" else None
    effects.converge(s, d.id, settings, store, wait=wait)
    return d


def delete_deployment(
    s: Session,
    actor: str,
    name: str,
    *,
    principal: Principal | None = None,
    settings: Settings | None = None,
    store: BlobStore | None = None,
) -> None:
    """Removes the deployment; what served it is stopped once that is committed."""
    d = get(s, name, for_update=True)
    _model_to_change(s, d)
    if d.production and not is_admin(s, actor, principal):
        # Deleting and re-creating it unmarked would lift the review, like unmarking does.
        raise PermissionDenied(
            f"Only an admin can delete production endpoint {name!r}: re-creating it without "
            "the production mark would serve unreviewed versions under its name.",
            {"endpoint_name": name, "production": True},
        )
    m = s.get(RegisteredModel, d.model_id)
    before = {**audit_doc(d), "model_name": m.name if m else None}
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
    effects.stop_runtime(s, target, name, runtime, settings, store)


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


# ---------------------------------------------------------------- approved changes


def carry_out(
    s: Session, actor: str, action: dict[str, Any], request_id: str, state: Any
) -> Deployment:
    """Makes an approved deployment change (approvals calls this when the request is
    approved) as the requester's, and has the manager roll it once committed."""
    op = action.get("operation")
    name = str(action.get("endpoint_name"))
    settings, store = state.settings, state.store
    if op == "create":
        body = sch.DeploymentCreate(**action.get("body", {}))
        d = create_deployment(s, actor, body, settings, store, approved_request=request_id)
    elif op == "update":
        upd = sch.DeploymentUpdate(**action.get("body", {}))
        d = update_deployment(s, actor, name, upd, settings, store, approved_request=request_id)
    elif op == "rollback":
        d = get(s, name, for_update=True)
        if d.previous_version != action.get("version"):
            raise Conflict(
                f"Deployment {name!r} no longer rolls back to version {action.get('version')} "
                f"(its previous version is now {d.previous_version}); reject request "
                f"{request_id} and roll back again if still wanted.",
                {"endpoint_name": name, "request_id": request_id},
            )
        d = rollback_deployment(
            s, actor, name, approved_request=request_id, settings=settings, store=store
        )
    else:
        raise ValidationFailed(f"Unknown deployment operation {op!r} in request {request_id}.")
    effects.kick(s, [d.id])
    return d

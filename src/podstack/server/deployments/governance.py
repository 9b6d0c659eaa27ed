"""What a deployment protects in the registry (a served version or followed alias cannot be
deleted; lineage shows the deployments of a version) and how an alias move rolls the
deployments that follow it, under the same production and pickle rules as a direct change.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from podstack.errors import Conflict, PermissionDenied
from podstack.schemas import registry as reg_sch
from podstack.server.artifacts.store import BlobStore
from podstack.server.audit import service as audit
from podstack.server.config import Settings
from podstack.server.db.base import utcnow
from podstack.server.deployments import repository as repo
from podstack.server.deployments.checks import check_pickle, is_admin
from podstack.server.deployments.models import Deployment
from podstack.server.deployments.rollouts import clear_failed_rollout
from podstack.server.deployments.target_config import get_target
from podstack.server.deployments.views import audit_doc
from podstack.server.registry import hooks
from podstack.server.registry import service as registry
from podstack.server.registry.models import ModelVersion, RegisteredModel


def following_alias(s: Session, model_id: int, alias: str) -> list[Deployment]:
    """The deployments that follow ``alias`` of the model: an approval asked for that alias
    names the production endpoints among them."""
    return list(repo.following(s, model_id, alias))


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
    m, mv = registry.version_by_alias(s, model_name, alias)
    moved = []
    runtime = _runtime_of(s)
    for d in deps:
        if d.version_id == mv.id:
            # Moved (back) to what the deployment already wants: nothing to roll, but a
            # failed rollout's record ends here; the manager retries a deployment that
            # serves nothing.
            if clear_failed_rollout(d):
                moved.append(d.id)
            continue
        if d.production and mv.stage != "Production":
            # The registry's alias gate opens a request before such a move; this only
            # catches a path that skipped it, refusing the move rather than serving it.
            from podstack.server.approvals import service as approvals

            if approvals.approved_for(s, d.name, mv.id) is None:
                raise Conflict(
                    f"Moving alias {alias!r} of {model_name!r} to version {mv.version} would "
                    f"roll production endpoint {d.name!r} to a version that is neither in "
                    "Production nor approved for it.",
                    {"endpoint_name": d.name, "alias": alias, "version": mv.version},
                )
        _check_follow_pickle(s, actor, d, m, mv, runtime)
        before = audit_doc(d)
        d.version_id, d.version = mv.id, mv.version
        d.updated_at = utcnow()
        audit.record(
            s, actor, "deployment.follow_alias", "deployment", d.name, before, audit_doc(d)
        )
        moved.append(d.id)
    s.flush()
    return moved


def _runtime_of(s: Session) -> tuple[Settings, BlobStore] | None:
    """The settings and artifact store of this process's deployment manager on the session's
    database (paths that reach deployments through the event bus have no request context)."""
    from podstack.server.deployments import manager

    url = s.get_bind().engine.url.render_as_string(hide_password=False)
    for mgr in list(manager._MANAGERS):
        if manager._url_of(mgr.db) == url:
            return mgr.settings, mgr.store
    return None


def _check_follow_pickle(
    s: Session,
    actor: str,
    d: Deployment,
    m: RegisteredModel,
    mv: ModelVersion,
    runtime: tuple[Settings, BlobStore] | None,
) -> None:
    """The pickle rule for an alias move that rolls ``d``."""
    row = repo.get_target(s, d.target)
    trusted = bool((row.config or {}).get("trusted_formats")) if row is not None else False
    if not trusted or is_admin(s, actor, None):
        return
    if runtime is None:
        raise PermissionDenied(
            f"Moving this alias would roll {d.name!r} on trusted target {d.target!r} and its "
            "format cannot be checked here; ask an admin to move it.",
            {"endpoint_name": d.name, "target": d.target},
        )
    settings, store = runtime
    target = get_target(s, d.target, settings, store)
    # Imported here: the service (which keeps the registry-file lookups) imports this module.
    from podstack.server.deployments.service import servable_of

    servable = servable_of(s, store, m, mv)
    check_pickle(s, actor, None, target, servable, d.name, m, mv, None)

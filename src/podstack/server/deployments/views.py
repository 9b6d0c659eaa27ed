"""Deployment rows as the wire shows them (and as the audit log records them).

Status and rollout messages are shown to every viewer: ``scrub_paths`` removes the server's
absolute paths from them in ``view``, the one place they are turned into wire objects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from podstack.schemas import deployments as sch
from podstack.server.artifacts.store import BlobStore
from podstack.server.config import Settings
from podstack.server.deployments import repository as repo
from podstack.server.deployments import target_kinds
from podstack.server.deployments import targets as tg
from podstack.server.deployments.models import Deployment


def audit_doc(d: Deployment) -> dict[str, Any]:
    return {
        "version": d.version,
        "alias": d.alias,
        "target": d.target,
        "gpu_type": d.gpu_type,
        "min_replicas": d.min_replicas,
        "max_replicas": d.max_replicas,
        "desired_state": d.desired_state,
        "production": bool(d.production),
    }


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
        url = target_kinds.build(row.name, row.kind, row.config or {}, settings, store).public_url(
            d.name, d.runtime
        )
    elif settings.embedded or not base:
        port = (d.runtime or {}).get("port")
        url = f"http://127.0.0.1:{port}" if port else None
    else:
        url = f"{base.rstrip('/')}/api/v1/endpoints/{d.name}"
    history = [sch.HealthCheck.model_validate(h) for h in (d.health or [])]
    for h in history:
        h.message = scrub_paths(h.message, settings)
    rollout = sch.Rollout.model_validate(d.rollout) if d.rollout else None
    if rollout is not None:
        rollout.reason = scrub_paths(rollout.reason, settings)
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
        production=bool(d.production),
        gpu_type=d.gpu_type,
        min_replicas=d.min_replicas,
        max_replicas=d.max_replicas,
        format=d.format,
        status=d.status,
        desired_state=d.desired_state,
        status_reason=scrub_paths(d.status_reason, settings),
        endpoint_url=url,
        inference_url=f"{url}/v2/models/{d.name}/infer" if url else None,
        signature=d.signature,
        health=history[-1] if history else None,
        health_history=history,
        rollout=rollout,
        created_by=d.created_by,
        created_at=d.created_at,
        updated_at=d.updated_at,
    )


def views(
    s: Session, rows: Sequence[Deployment], settings: Settings, store: BlobStore, base: str | None
) -> list[sch.Deployment]:
    names = repo.model_names(s, [d.model_id for d in rows])
    return [view(s, d, settings, store, base, names) for d in rows]


_PATH_RE = re.compile(
    r"(?<![\w:/.])/(?:home|root|Users|tmp|var|opt|srv|usr|private|mnt|data|work|run)"
    r"(?:/[^\s'\"(),;:]+)+"
)


def _known_roots(settings: Settings) -> list[tuple[str, str]]:
    roots: list[tuple[str, str]] = []
    home = str(settings.home)
    roots.append((home, "$PODSTACK_HOME"))
    art = str(settings.artifacts_uri or "")
    if art.startswith("file://"):
        art = art[len("file://") :]
    if art.startswith("/"):
        roots.append((art, "<artifacts>"))
    user_home = os.path.expanduser("~")
    if user_home and user_home != "/":
        roots.append((user_home, "~"))
    # Longest first, so a path inside another is replaced by its most specific name.
    return sorted({r for r in roots if r[0] and r[0] != "/"}, key=lambda r: -len(r[0]))


def scrub_paths(text: str | None, settings: Settings) -> str | None:
    """Removes the server's absolute paths (its home, the artifact store, the user's home and
    any other absolute path under the usual roots) from a message shown to users."""
    if not text:
        return text
    for root, name in _known_roots(settings):
        text = text.replace(root.rstrip("/"), name)
    return _PATH_RE.sub("<path>", text)

"""What follows a committed deployment change: the manager converges the deployment (starts,
rolls or stops its model server) or stops the runtime of a deleted one.

The service registers these on the session scope (``db.session.on_commit``), so they happen
only once the change is kept: never for a change that was rolled back or only opened an
approval request. Entry points (REST, UI, approvals) call the service and know none of this.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from podstack.server.artifacts.store import BlobStore
from podstack.server.config import Settings
from podstack.server.db.session import database_of, on_commit

# How long a stop waits for the model server to be gone, so the answer (REST and UI alike)
# shows the stopped deployment and a start right after it never races the stop.
STOP_WAIT_SECONDS = 30.0


def converge(
    s: Session,
    dep_id: str,
    settings: Settings | None = None,
    store: BlobStore | None = None,
    *,
    wait: float | None = None,
) -> None:
    """After the commit, the manager of this database converges ``dep_id`` (and waits up to
    ``wait`` seconds for it to settle)."""
    mgr = _manager(s, settings, store)
    if mgr is None:
        return

    def run() -> None:
        mgr.submit(dep_id)
        if wait:
            mgr.wait_idle(timeout=wait)

    on_commit(s, run)


def stop_runtime(
    s: Session,
    target: str,
    endpoint: str,
    runtime: dict[str, Any] | None,
    settings: Settings | None = None,
    store: BlobStore | None = None,
) -> None:
    """After the commit of a delete, stops what served the endpoint."""
    mgr = _manager(s, settings, store)
    if mgr is not None:
        on_commit(s, lambda: mgr.stop_runtime(target, endpoint, runtime))


def kick(s: Session, dep_ids: list[str]) -> None:
    """After the commit, every manager of this process on this database converges ``dep_ids``
    (changes made for another capability: an alias move, an approved request)."""
    from podstack.server.deployments import manager

    url = s.get_bind().engine.url.render_as_string(hide_password=False)
    on_commit(s, lambda: manager.kick(url, dep_ids))


def _manager(s: Session, settings: Settings | None, store: BlobStore | None) -> Any:
    # Imported here: the manager drives rollouts through the service, which imports this.
    from podstack.server.deployments import manager

    db = database_of(s)
    return None if db is None else manager.for_database(db, settings, store)

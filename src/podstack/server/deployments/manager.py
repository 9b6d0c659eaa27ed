"""Converges each deployment's actual state (``runtime``: the process or InferenceService that
runs, ``serving_version``) onto its desired state (``version_id``, replicas, GPU, running or
stopped), and routes inference to whatever currently serves.

Rollouts are blue/green: the new server must be ready before traffic moves to it; in-flight
requests on the old one finish (the gateway counts them) before it is stopped. If the new one
fails, the old one keeps serving and the rollout is recorded as failed with the reason.

Work for one deployment is serialised in-process by a worker thread per deployment and across
processes (server replicas, embedded clients, CLI) by a lease in the deployment row.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from podstack.errors import PodstackError
from podstack.server.artifacts.store import BlobStore
from podstack.server.config import Settings
from podstack.server.db.base import new_id, utcnow
from podstack.server.db.session import Database
from podstack.server.deployments import outbound, service, target_kinds
from podstack.server.deployments import repository as repo
from podstack.server.deployments import targets as tg
from podstack.server.deployments.models import Deployment
from podstack.server.events import service as events

log = logging.getLogger("podstack.deployments")
ACTOR = "system:deployments"
LEASE_SECONDS = 300.0
ROUTE_TTL = 1.0
DRAIN_TIMEOUT = 30.0
DRAIN_GRACE = 0.3  # lets other server replicas' route caches (ROUTE_TTL) see the switch

_MANAGERS: weakref.WeakSet[DeploymentManager] = weakref.WeakSet()


@dataclass(frozen=True)
class Route:
    key: str  # identifies the serving runtime (instance id)
    base_url: str
    version: int | None
    expires: float


class DeploymentManager:
    def __init__(self, db: Database, settings: Settings, store: BlobStore) -> None:
        self.db = db
        self.settings = settings
        self.store = store
        self.owner = new_id("mgr", 6)
        self._mu = threading.Condition()
        self._dirty: set[str] = set()
        self._running: set[str] = set()
        self._routes: dict[str, Route] = {}
        self._inflight: Counter[str] = Counter()
        # The prediction proxy's pooled client, through the egress gate (outbound.py).
        self.http = outbound.new_client(settings, httpx.Timeout(60.0, connect=5.0))
        _MANAGERS.add(self)

    # ---------------------------------------------------------------- scheduling

    def submit(self, dep_id: str) -> None:
        with self._mu:
            self._dirty.add(dep_id)
            if dep_id in self._running:
                return
            self._running.add(dep_id)
        threading.Thread(
            target=self._worker, args=(dep_id,), name=f"deploy-{dep_id}", daemon=True
        ).start()

    def _worker(self, dep_id: str) -> None:
        while True:
            with self._mu:
                if dep_id not in self._dirty:
                    self._running.discard(dep_id)
                    self._mu.notify_all()
                    return
                self._dirty.discard(dep_id)
            try:
                self.converge(dep_id)
            except Exception:
                log.exception("converging deployment %s failed", dep_id)

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Blocks until no rollout is running in this manager (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._mu:
            while self._running or self._dirty:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._mu.wait(left)
        return True

    # ---------------------------------------------------------------- converging

    def _claim(self, dep_id: str) -> bool:
        deadline = time.monotonic() + LEASE_SECONDS
        while True:
            with self.db.session() as s:
                if repo.get(s, dep_id) is None:
                    return False
                now, until = service.lease_window(LEASE_SECONDS)
                if repo.claim_lease(s, dep_id, self.owner, now, until):
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)  # another process is rolling it out; it re-reads desired state

    def converge(self, dep_id: str) -> None:
        if not self._claim(dep_id):
            return
        try:
            for _ in range(10):
                if not self._step(dep_id):
                    break
        finally:
            with self.db.session() as s:
                repo.release_lease(s, dep_id, self.owner)

    def _target(self, s: Any, d: Deployment) -> tg.Target:
        return service.get_target(s, d.target, self.settings, self.store)

    def _update(self, dep_id: str, **values: Any) -> Deployment | None:
        with self.db.session() as s:
            d = repo.get(s, dep_id)
            if d is None:
                return None
            for k, v in values.items():
                setattr(d, k, v)
            d.updated_at = utcnow()
            return d

    def _step(self, dep_id: str) -> bool:
        """One move towards the desired state; True if another look is needed."""
        with self.db.session(readonly=True) as s:
            d = repo.get(s, dep_id)
            if d is None:
                return False
            try:
                target = self._target(s, d)
                spec = service.run_spec(s, d, target) if d.desired_state == "running" else None
            except PodstackError as exc:
                err = exc.message
                spec, target = None, None
            else:
                err = None
            runtime = dict(d.runtime) if d.runtime else None
            status, desired, rollout = d.status, d.desired_state, dict(d.rollout or {})
            serving = d.serving_version
            model_name = repo.model_names(s, [d.model_id]).get(d.model_id)
            name = d.name
        if err is not None:
            self._fail(dep_id, name, model_name, err, runtime, serving)
            return False
        assert target is not None
        if desired == "stopped":
            if runtime:
                self._forget_route(name)
                target.stop(runtime)
            if status != "stopped" or runtime:
                self._update(
                    dep_id,
                    runtime=None,
                    status="stopped",
                    status_reason="stopped",
                    serving_version=None,
                    serving_version_id=None,
                )
            return False
        assert spec is not None
        want = spec.key()
        live = runtime is not None and target.alive(runtime)
        if live and runtime is not None and runtime.get("key") == want:
            if status != "ready":
                self._update(dep_id, status="ready", status_reason=None)
            self._set_route(name, target, runtime)
            return False
        if rollout.get("status") == "failed" and rollout.get("failed_key") == want:
            # This exact spec already failed; an update or start retries it. The old server
            # keeps serving, unless it has gone too.
            if not live and (status != "failed" or runtime is not None):
                self._update(
                    dep_id,
                    status="failed",
                    runtime=None,
                    serving_version=None,
                    serving_version_id=None,
                    status_reason=f"The server is not running and the rollout to version "
                    f"{spec.version} failed: {rollout.get('reason')}",
                )
            return False
        if not live:
            runtime = None
        if runtime is None:
            self._update(
                dep_id,
                status="starting",
                status_reason=None,
                rollout={
                    "from_version": serving,
                    "to_version": spec.version,
                    "status": "in_progress",
                    "at": utcnow().isoformat(),
                },
            )
        else:
            self._update(
                dep_id,
                rollout={
                    "from_version": serving,
                    "to_version": spec.version,
                    "status": "in_progress",
                    "at": utcnow().isoformat(),
                },
            )
        try:
            new_rt = target.start(spec)
        except tg.StartFailed as exc:
            self._rollout_failed(dep_id, name, model_name, spec, want, exc.reason, runtime, serving)
            return False
        except Exception as exc:  # a bug or an unreachable cluster: report, don't crash
            log.exception("starting %s failed", name)
            self._rollout_failed(dep_id, name, model_name, spec, want, str(exc), runtime, serving)
            return False
        with self.db.session() as s:
            d = repo.get(s, dep_id)
            if d is None:  # deleted while starting
                target.stop(new_rt)
                return False
            prev = d.serving_version
            d.runtime = new_rt
            d.serving_version_id, d.serving_version = spec.version_id, spec.version
            d.format, d.signature = spec.format, spec.signature
            if prev is not None and prev != spec.version:
                d.previous_version = prev
            d.status, d.status_reason = "ready", None
            d.rollout = {
                "from_version": prev,
                "to_version": spec.version,
                "status": "succeeded",
                "at": utcnow().isoformat(),
            }
            service.record_health(d, True, None, "ready")
            d.updated_at = utcnow()
            events.emit(
                s,
                "deployment.ready",
                {
                    "endpoint_name": name,
                    "model_name": model_name,
                    "version": spec.version,
                    "previous_version": prev,
                    "target": d.target,
                },
                ACTOR,
            )
        old_key = (runtime or {}).get("instance")
        self._set_route(name, target, new_rt)
        if runtime is not None and runtime.get("instance") != new_rt.get("instance"):
            self._drain(old_key)
            target.stop(runtime)
        return True

    def _rollout_failed(
        self,
        dep_id: str,
        name: str,
        model_name: str | None,
        spec: tg.RunSpec,
        want: dict[str, Any],
        reason: str,
        old: dict[str, Any] | None,
        serving: int | None,
    ) -> None:
        rollout = {
            "from_version": serving,
            "to_version": spec.version,
            "status": "failed",
            "reason": reason,
            "at": utcnow().isoformat(),
            "failed_key": want,
        }
        with self.db.session() as s:
            d = repo.get(s, dep_id)
            if d is None:
                return
            d.rollout = rollout
            if old is not None:
                d.status = "ready"
                d.status_reason = (
                    f"Rollout to v{spec.version} failed: {reason.rstrip('. ')}. Still serving "
                    f"version {serving}."
                )
                # The rollout is over: what is wanted goes back to what serves, so the
                # deployment does not show (or retry) the failed version as its target; the
                # failure stays visible in ``rollout`` until the next action. Unless a newer
                # request changed what is wanted meanwhile: that one is rolled next.
                old_key = old.get("key") or {}
                if (
                    _desired_key(d) == want
                    and serving is not None
                    and old_key.get("version_id") is not None
                ):
                    d.version_id, d.version = old_key["version_id"], serving
                    d.min_replicas = old_key.get("min_replicas", d.min_replicas)
                    d.max_replicas = old_key.get("max_replicas", d.max_replicas)
                    d.gpu_type = old_key.get("gpu_type", d.gpu_type)
            else:
                # Nothing else to serve: the deployment is failed, on the version that failed.
                d.status, d.status_reason = "failed", f"Rollout to v{spec.version} failed: {reason}"
                d.runtime = None
                d.serving_version = d.serving_version_id = None
            d.updated_at = utcnow()
            events.emit(
                s,
                "deployment.failed",
                {
                    "endpoint_name": name,
                    "model_name": model_name,
                    "version": spec.version,
                    "reason": reason,
                    "still_serving": serving if old is not None else None,
                },
                ACTOR,
            )

    def _fail(
        self,
        dep_id: str,
        name: str,
        model_name: str | None,
        reason: str,
        runtime: dict[str, Any] | None,
        serving: int | None,
    ) -> None:
        with self.db.session() as s:
            d = repo.get(s, dep_id)
            if d is None or (d.status == "failed" and d.status_reason == reason):
                return
            if runtime is None:
                d.status = "failed"
            d.status_reason = reason
            d.updated_at = utcnow()
            events.emit(
                s,
                "deployment.failed",
                {
                    "endpoint_name": name,
                    "model_name": model_name,
                    "reason": reason,
                    "still_serving": serving if runtime else None,
                },
                ACTOR,
            )

    # ---------------------------------------------------------------- teardown

    def stop_runtime(self, target_name: str, endpoint: str, runtime: dict[str, Any] | None) -> None:
        """After a deployment was deleted: stop what ran it."""
        self._forget_route(endpoint)
        if not runtime:
            return
        with self.db.session(readonly=True) as s:
            try:
                target = service.get_target(s, target_name, self.settings, self.store)
            except PodstackError:
                target = target_kinds.build(
                    target_name, runtime.get("kind", tg.LOCAL), {}, self.settings, self.store
                )
        self._drain(runtime.get("instance"))
        target.stop(runtime)

    def recover(self) -> None:
        """At server start: re-attach to servers that still run, restart the others."""
        with self.db.session(readonly=True) as s:
            ids = repo.all_ids(s)
        for dep_id in ids:
            self.submit(dep_id)

    # ---------------------------------------------------------------- health

    def check_health(self) -> None:
        with self.db.session(readonly=True) as s:
            rows = [
                (
                    d.id,
                    d.name,
                    d.target,
                    dict(d.runtime) if d.runtime else None,
                    d.desired_state,
                    _desired_key(d),
                )
                for d in repo.list_deployments(s, limit=10_000)
            ]
        for dep_id, name, target_name, runtime, desired, key in rows:
            if desired != "running":
                continue
            if runtime is None or runtime.get("key") != key:
                # Not started, or desired state changed elsewhere (e.g. an alias moved by
                # another process): converge. A spec that already failed is not retried.
                self.submit(dep_id)
                continue
            with self.db.session(readonly=True) as s:
                try:
                    target = service.get_target(s, target_name, self.settings, self.store)
                except PodstackError:
                    continue
            probe = target.probe(runtime)
            with self.db.session() as s:
                d = repo.get(s, dep_id)
                if d is None or (d.runtime or {}).get("started_at") != runtime.get("started_at"):
                    continue  # rolled or deleted meanwhile
                service.record_health(d, probe.ok, probe.latency_ms, probe.message)
                if probe.updates:
                    d.runtime = {
                        **runtime,
                        **{k: v for k, v in probe.updates.items() if k != "failed"},
                    }
            if not target.alive(runtime):
                self._forget_route(name)
                self.submit(dep_id)  # the process died: start a new one

    # ---------------------------------------------------------------- routing (gateway)

    def _set_route(self, name: str, target: tg.Target, runtime: dict[str, Any]) -> None:
        url = target.base_url(runtime)
        if url and target.kind == tg.LOCAL:
            # Confirms the process is this server's child (and lets the egress gate call its
            # port): a runtime started by another server process on this machine, or before
            # a restart, is recognised by the instance id on its command line.
            target.alive(runtime)
        if url:
            key = str(runtime.get("instance") or runtime.get("name") or name)
            with self._mu:
                self._routes[name] = Route(
                    key, url, runtime.get("version"), time.monotonic() + ROUTE_TTL
                )

    def _forget_route(self, name: str) -> None:
        with self._mu:
            self._routes.pop(name, None)

    def route(self, name: str, *, fresh: bool = False) -> Route | None:
        with self._mu:
            r = self._routes.get(name)
            if r is not None and not fresh and r.expires > time.monotonic():
                return r
        with self.db.session(readonly=True) as s:
            d = repo.get_by_name(s, name)
            if d is None or not d.runtime:
                self._forget_route(name)
                return None
            try:
                target = service.get_target(s, d.target, self.settings, self.store)
            except PodstackError:
                return None
            runtime = dict(d.runtime)
        self._set_route(name, target, runtime)
        with self._mu:
            return self._routes.get(name)

    @contextmanager
    def track(self, key: str) -> Iterator[None]:
        with self._mu:
            self._inflight[key] += 1
        try:
            yield
        finally:
            with self._mu:
                self._inflight[key] -= 1
                if self._inflight[key] <= 0:
                    del self._inflight[key]
                    self._mu.notify_all()

    def _drain(self, key: str | None) -> None:
        time.sleep(DRAIN_GRACE)
        if not key:
            return
        deadline = time.monotonic() + DRAIN_TIMEOUT
        with self._mu:
            while self._inflight.get(key, 0) > 0 and time.monotonic() < deadline:
                self._mu.wait(0.1)

    def close(self) -> None:
        self.http.close()


_CREATE = threading.Lock()


def _desired_key(d: Deployment) -> dict[str, Any]:
    return {
        "version_id": d.version_id,
        "min_replicas": d.min_replicas,
        "max_replicas": d.max_replicas,
        "gpu_type": d.gpu_type,
    }


# One manager per Database (an app owns one Database); held as long as that Database lives.
_BY_DB: weakref.WeakKeyDictionary[Database, DeploymentManager] = weakref.WeakKeyDictionary()


def get_manager(state: Any) -> DeploymentManager:
    """The app's manager (created on first use; the app state holds db, settings, store)."""
    mgr = for_database(state.db, state.settings, state.store)
    assert mgr is not None  # created when missing: settings and store are given
    state.deployment_manager = mgr
    return mgr


def for_database(
    db: Database, settings: Settings | None = None, store: BlobStore | None = None
) -> DeploymentManager | None:
    """The manager of ``db``: created on first use when ``settings`` and ``store`` are given,
    else None if none exists yet."""
    with _CREATE:
        mgr = _BY_DB.get(db)
        if mgr is None and settings is not None and store is not None:
            mgr = _BY_DB[db] = DeploymentManager(db, settings, store)
        return mgr


def _url_of(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=False)


def kick(db_url: str, dep_ids: list[str]) -> None:
    """Asks every manager of this process on that database to converge ``dep_ids``."""
    for mgr in list(_MANAGERS):
        if _url_of(mgr.db) == db_url:
            for dep_id in dep_ids:
                mgr.submit(dep_id)

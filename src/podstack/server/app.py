"""Application factory: ``create_app(settings)``.

Capabilities plug in by convention, so adding one touches no central list:
- ``podstack.server.<cap>.endpoints.router`` is mounted under ``/api/v1``;
- ``podstack.server.<cap>.background.run(state, stop)`` (async) runs while the server lives,
  when ``settings.background_workers`` is on;
- ``podstack.server.<cap>.sinks`` is imported so it can ``events.service.subscribe``;
- ``podstack.server.web.routes.mount(app)`` serves the UI at ``/``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import configure_mappers
from starlette.middleware.sessions import SessionMiddleware

import podstack
import podstack.server as server_pkg
from podstack.schemas.common import ERROR_RESPONSES
from podstack.server import apidocs, file_modes, health
from podstack.server.artifacts.store_factory import open_store
from podstack.server.auth.token_cache import TokenCache
from podstack.server.config import Settings
from podstack.server.db import migrate
from podstack.server.db.session import Database
from podstack.server.errors import install_error_handlers
from podstack.server.home_lock import HomeLock
from podstack.server.idempotency.middleware import IdempotencyMiddleware
from podstack.server.middleware import (
    BodyLimitMiddleware,
    BodyReadTimeoutMiddleware,
    CatchAllMiddleware,
    HeaderLimitMiddleware,
    MetricsMiddleware,
    SecurityHeadersMiddleware,
)

log = logging.getLogger("podstack.server")
API_PREFIX = "/api/v1"


def _capability_modules(name: str) -> list[ModuleType]:
    found = []
    for mod in sorted(pkgutil.iter_modules(server_pkg.__path__), key=lambda m: m.name):
        if not mod.ispkg:
            continue
        full = f"podstack.server.{mod.name}.{name}"
        try:
            found.append(importlib.import_module(full))
        except ModuleNotFoundError as exc:
            if exc.name != full:
                raise
    return found


_HOT_ROUTERS = ("registry", "tracking", "artifacts")


def _hot_first(mod: ModuleType) -> tuple[int, str]:
    capability = mod.__name__.split(".")[-2]
    rank = _HOT_ROUTERS.index(capability) if capability in _HOT_ROUTERS else len(_HOT_ROUTERS)
    return rank, capability


def _session_secret(settings: Settings) -> str:
    """A configured secret (required for several replicas), else one kept in PODSTACK_HOME."""
    if settings.session_secret:
        return settings.session_secret
    path = Path(settings.home) / "session_secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        path.write_text(value)
        path.chmod(0o600)
        return value


def init_state(app: FastAPI, settings: Settings) -> None:
    """Opens the database, migrates, prepares the artifact store. Idempotent per app."""
    state = app.state
    if getattr(state, "db", None) is not None:
        return
    if settings.embedded:
        # `podstack server` checks once in its main process (and shows it in its banner).
        file_modes.warn_wide_modes(settings)
    db = Database(settings.database_url)
    if settings.migrate_on_start:
        migrate.upgrade(db.engine)
    state.db = db
    # Read by the permission checks and the read filter of every session (permissions/).
    from podstack.server.permissions import read_filter

    db.info[read_filter.DEFAULT_PERMISSION_INFO] = settings.default_permission
    # The local disk or an S3 bucket (PODSTACK_ARTIFACTS_URI); an unusable bucket stops here.
    state.store = open_store(settings)
    # Signing secrets still stored in clear (older databases, restored backups) get encrypted.
    from podstack.server import secretbox

    secretbox.seal_at_start(db, settings, log)
    # New versions are signed in their creating transaction with this key (provenance/).
    from podstack.server.provenance import keys as signing_keys
    from podstack.server.provenance import service as provenance

    state.signing_key = signing_keys.load(settings)
    db.info[provenance.SERVER_KEY_INFO] = state.signing_key
    if settings.migrate_on_start or migrate.is_at_head(db.engine):
        with db.session() as s:
            provenance.register_server_key(s, state.signing_key)
    state.bootstrap_token = None
    if not settings.embedded:
        from podstack.server.auth import service as auth_service

        with db.session() as s:
            state.bootstrap_token = auth_service.bootstrap_admin(s, settings.admin_token)


async def _warm_up(app: FastAPI) -> None:
    """Does at start-up the one-time work that first requests would otherwise pay: SQLAlchemy
    configures every mapper on first use (~20 ms), and FastAPI (0.16x) builds each included
    router's routes -- their pydantic fields and dependency graphs -- on the first request that
    reaches that router (40-110 ms per capability, measured). Both are done here, then one
    unauthenticated request goes through the whole stack (answered 401, or 200 without auth).
    Nothing here may stop the server from starting. ``podstack server`` asks for it
    (``app.state.warm_up``); in-process apps (the embedded SDK, tests) skip its ~0.25 s."""
    configure_mappers()
    for route in app.router.routes:
        build = getattr(route, "effective_route_contexts", None)  # FastAPI's _IncludedRouter
        if build is not None:
            try:
                for _ in build():
                    pass
            except Exception:
                log.debug("warm-up of %r failed", route, exc_info=True)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"{API_PREFIX}/me",
        "raw_path": f"{API_PREFIX}/me".encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_msg: dict[str, Any]) -> None:
        return None

    try:
        await app(scope, receive, send)
    except Exception:
        log.debug("warm-up request failed", exc_info=True)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    init_state(app, settings)
    if getattr(app.state, "warm_up", False):
        await _warm_up(app)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    lock = HomeLock(settings.home) if settings.background_once_per_home else None
    if settings.background_workers:
        tasks.append(asyncio.create_task(_background(app, stop, lock), name="background"))
    try:
        yield
    finally:
        stop.set()
        for t in tasks:
            try:
                await asyncio.wait_for(t, timeout=15)
            except (TimeoutError, asyncio.CancelledError):
                t.cancel()
            except Exception:
                log.exception("background task %s failed during shutdown", t.get_name())
        if lock is not None:
            lock.release()
        app.state.db.dispose()
        app.state.db = None


async def _background(app: FastAPI, stop: asyncio.Event, lock: HomeLock | None) -> None:
    """Runs every capability's loop until ``stop``; with ``lock``, only once this process holds
    the home's background lock (one process per home runs them; see home_lock.py)."""
    if lock is not None and not await lock.wait(stop):
        return
    loops = [
        asyncio.create_task(mod.run(app.state, stop), name=mod.__name__)
        for mod in _capability_modules("background")
    ]
    try:
        for t in loops:
            try:
                await t
            except Exception:
                log.exception("background task %s failed", t.get_name())
    finally:
        # Cancelled at shutdown after the grace period: no loop outlives the app.
        for t in loops:
            t.cancel()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # The home holds the database, keys and artifacts: owner-only from its creation (0700).
    file_modes.prepare_home(settings)
    app = FastAPI(
        title="Podstack MLOps",
        version=podstack.__version__,
        description="Model registry, experiment tracking, approvals, schedules and deployments.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served by apidocs from vendored files (offline, CSP-safe)
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.db = None
    app.state.token_cache = TokenCache()
    app.state.metrics_registry = CollectorRegistry()
    install_error_handlers(app)

    # Event sinks (webhook outbox, notifications) subscribe on import.
    _capability_modules("sinks")
    app.include_router(health.router)
    apidocs.install(app, API_PREFIX)
    # Routes are matched in order, one router after another: the routers SDK clients call in
    # loops go first (matching was ~20% of a registry lookup's server time behind the others).
    for mod in sorted(_capability_modules("endpoints"), key=_hot_first):
        app.include_router(mod.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    # The MLflow-compatible API (issue 17) at MLflow's own paths, before the UI's catch-all.
    from podstack.server.mlflow_compat import routes as mlflow_routes

    mlflow_routes.mount(app)
    try:
        web = importlib.import_module("podstack.server.web.routes")
        web.mount(app)
    except ModuleNotFoundError as exc:
        if exc.name != "podstack.server.web.routes":
            raise

    upload_prefix = f"{API_PREFIX}/runs/"

    def limit_for(scope: dict[str, Any]) -> int:
        # Artifact uploads stream to disk; everything else is parsed in memory.
        path: str = scope.get("path", "")
        if (
            scope.get("method") == "PUT"
            and path.startswith(upload_prefix)
            and "/artifacts/" in path
        ):
            return settings.max_artifact_bytes
        if scope.get("method") == "PUT" and path.startswith(mlflow_routes.ARTIFACT_UPLOADS):
            return settings.max_artifact_bytes  # MLflow's proxied artifact uploads
        return settings.max_body_bytes

    # Outermost last: metrics see every response, including 413s from the limit.
    # Innermost: unexpected errors become a 500 JSON that still passes through the others.
    app.add_middleware(CatchAllMiddleware)
    # Retried SDK calls (Idempotency-Key) answered with their first result: sees the 500s
    # CatchAll makes, runs before anything reads the body.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(
        SessionMiddleware,
        secret_key=_session_secret(settings),
        session_cookie="podstack_session",
        max_age=settings.session_max_age_seconds,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    app.add_middleware(BodyReadTimeoutMiddleware, timeout=settings.body_read_timeout_seconds)
    app.add_middleware(HeaderLimitMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(
        MetricsMiddleware, registry=app.state.metrics_registry, api_prefix=API_PREFIX
    )
    return app

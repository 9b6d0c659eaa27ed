"""``podstack server``: run the REST API and the UI with uvicorn.

Start-up order matters:
1. refuse ``--no-auth`` on anything but loopback, before touching the database or a socket;
2. migrate and create the first admin *once*, in this process, so several ``--workers`` never
   race each other to bootstrap (and so we know what to tell the person at the console);
3. serve; once the socket accepts connections, print how to sign in. The first admin's random
   token goes to the console exactly once and never through ``logging``.

SIGTERM/SIGINT shut down gracefully (in-flight requests finish, background loops stop, the
database pool closes) and the process exits 0.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from socket import socket
from typing import Any

import httpx
import typer
import uvicorn
from fastapi import FastAPI
from rich.markup import escape

from podstack.cli.common import console, err_console, fail, open_database, safe_url
from podstack.server import file_modes
from podstack.server.auth import service as auth_service
from podstack.server.config import Settings
from podstack.server.db import migrate

GRACEFUL_SHUTDOWN_SECONDS = 30
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost`` only: the hosts nobody else can connect to."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def public_url(settings: Settings) -> str:
    """The address to tell people: PODSTACK_PUBLIC_URL, else derived from host and port."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = "localhost" if settings.host in _WILDCARD_HOSTS else settings.host
    return f"http://{_url_host(host)}:{settings.port}"


def _probe_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://{_url_host(host)}:{settings.port}/healthz"


# ---------------------------------------------------------------- first start


@dataclass(frozen=True)
class FirstStart:
    created_admin: bool
    # The random token of the new admin, to print once; None when PODSTACK_ADMIN_TOKEN was used.
    token: str | None


def prepare_database(settings: Settings) -> FirstStart:
    """Migrates (unless told not to) and creates ``admin`` on a database without users."""
    with open_database(settings) as db:
        if settings.migrate_on_start:
            migrate.upgrade(db.engine)
        else:
            current = migrate.current_revisions(db.engine)
            if not current:
                fail(
                    f"The database at {safe_url(settings.database_url)} has no schema; run "
                    "`podstack db upgrade` or start without --no-migrate."
                )
            if current != migrate.head_revisions():
                err_console.print(
                    "[yellow]Warning:[/yellow] the database schema is not at the latest "
                    "migration (--no-migrate); /readyz will report not ready until "
                    "`podstack db upgrade` runs."
                )
        with db.session() as s:
            had_users = auth_service.count_users(s) > 0
            token = auth_service.bootstrap_admin(s, settings.admin_token)
    return FirstStart(created_admin=not had_users, token=token)


def banner_lines(
    settings: Settings, first: FirstStart, mode_warnings: Sequence[str] = ()
) -> list[str]:
    """What the person at the console needs: where the server is and how to get in."""
    url = public_url(settings)
    e = escape
    lines = [
        "",
        f"[bold green]Podstack MLOps is running at {e(url)}[/bold green]",
        f"  UI: {e(url)}/    API: {e(url)}/api/v1    API docs: {e(url)}/api/v1/docs",
    ]
    if mode_warnings:
        lines.append(
            f"  [bold yellow]Other local users can read files under {e(str(settings.home))}"
            f"[/bold yellow] ({len(mode_warnings)} path(s), listed in the log above). "
            f"Fix: chmod -R go-rwx {e(str(settings.home))}"
        )
    if settings.host in _WILDCARD_HOSTS and not settings.public_url:
        lines.append("  (listening on all interfaces: from other machines use this host's address)")
    if settings.no_auth:
        lines.append(
            "  [bold yellow]Authentication is OFF (--no-auth):[/bold yellow] every request from "
            "this machine acts as admin."
        )
    if not first.created_admin:
        lines.append("")
        return lines

    if first.token is not None:
        shown = first.token
        lines += [
            "",
            '[bold]First start:[/bold] created the user "admin" (role admin).',
            "Its API token is shown [bold]only this once[/bold] - store it now:",
            "",
            f"    [bold cyan]{e(shown)}[/bold cyan]",
        ]
        export_token = shown
    else:
        lines += [
            "",
            '[bold]First start:[/bold] created the user "admin" (role admin) with the token '
            "from PODSTACK_ADMIN_TOKEN.",
        ]
        shown = "the value of PODSTACK_ADMIN_TOKEN"
        export_token = '"$PODSTACK_ADMIN_TOKEN"'
    lines += [
        "",
        "[bold]Sign in to the web UI[/bold]",
        f"  1. Open {e(url)}/login",
        "  2. Username: admin",
        f"  3. Password: paste {'the token above' if first.token else e(shown)} "
        "(the sign-in page accepts an API token in place of a password)",
        "",
        "[bold]Point the SDK at this server[/bold]",
        f"  export PODSTACK_URL={e(url)}",
        f"  export PODSTACK_API_TOKEN={e(export_token)}",
        "",
        "  from podstack import MLOpsClient",
        "  client = MLOpsClient()  # reads PODSTACK_URL and PODSTACK_API_TOKEN",
        "  print(client.whoami())",
    ]
    if first.token is not None:
        lines += [
            "  # or explicitly:",
            f'  client = MLOpsClient(api_token="{e(first.token)}", url="{e(url)}")',
        ]
    lines += [
        "",
        "Then give each person their own account instead of sharing this token:",
        "  podstack users create alice --role editor --with-token",
        "",
    ]
    return lines


def print_banner(settings: Settings, first: FirstStart, mode_warnings: Sequence[str] = ()) -> None:
    # One write, soft-wrapped: the token and commands must stay on one line to be
    # copy-pasteable, and the banner must not interleave with log lines.
    text = "\n".join(banner_lines(settings, first, mode_warnings))
    console.print(text, soft_wrap=True, highlight=False)
    console.file.flush()


# ---------------------------------------------------------------- serving


class _AnnouncingServer(uvicorn.Server):
    """uvicorn.Server that calls back once it is really listening."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            # Everything built at startup (app, routes, ORM mappers, templates) lives for the
            # whole process: moving it out of the GC's generations cut full-collection pauses
            # from ~130 ms to ~3 ms in the metric-logging benchmark (benchmarks/PROFILE.md).
            gc.collect()
            gc.freeze()
            self._on_started()


def default_workers() -> int:
    """One worker per core, at most 4 (each worker holds its own database pool and caches, so
    a large host should not start dozens unasked; --workers or PODSTACK_WORKERS raise it)."""
    return max(1, min(os.cpu_count() or 1, 4))


def worker_app() -> FastAPI:
    """App factory for ``--workers N``: each worker process builds its app from the env."""
    from podstack.server.app import create_app

    app = create_app(Settings())
    app.state.warm_up = True
    return app


def _announce_when_ready(url: str, announce: Callable[[], None], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                announce()
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def _exit_quietly_after_signal() -> None:
    # uvicorn re-raises the signal that stopped it once shutdown is complete. Under Python's
    # default SIGTERM disposition that would kill us (exit -15) right after a clean shutdown,
    # so give it a handler that does nothing and let the command return (exit 0).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)


def serve(
    host: str | None = typer.Option(
        None, "--host", help="Interface to listen on [default: 127.0.0.1, or PODSTACK_HOST]."
    ),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="TCP port [default: 8000, or PODSTACK_PORT]."
    ),
    no_auth: bool = typer.Option(
        False,
        "--no-auth",
        help="Treat every request as admin. Only allowed on a loopback host (127.0.0.1, ::1).",
    ),
    no_migrate: bool = typer.Option(
        False, "--no-migrate", help="Do not apply database migrations at start."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        max=64,
        help="Worker processes behind the one port [default: PODSTACK_WORKERS, else one per "
        "core, at most 4].",
    ),
    log_level: str | None = typer.Option(
        None, "--log-level", help="critical|error|warning|info|debug [default: info]."
    ),
) -> None:
    """Run the Podstack server (REST API at /api/v1, UI at /)."""
    # Everything this process (and its workers, model servers and jobs) creates is owner-only:
    # the home holds the database, keys, artifacts and logs.
    file_modes.restrict_umask()
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if no_auth:
        overrides["no_auth"] = True
    if no_migrate:
        overrides["migrate_on_start"] = False
    if log_level is not None:
        overrides["log_level"] = log_level
    if workers is not None:
        overrides["workers"] = workers
    settings = Settings(**overrides)
    workers = settings.workers or default_workers()

    if settings.no_auth and not is_loopback(settings.host):
        fail(
            f"--no-auth is only allowed on a loopback host (127.0.0.1, ::1 or localhost), not "
            f"{settings.host!r}: anyone who can reach the server would act as admin. Bind to "
            "127.0.0.1, or drop --no-auth and use API tokens."
        )

    if settings.log_level.lower() not in uvicorn.config.LOG_LEVELS:
        fail(
            f"Unknown log level {settings.log_level!r}; use one of "
            f"{', '.join(uvicorn.config.LOG_LEVELS)}."
        )

    uv_options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "lifespan": "on",
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        # Idle keep-alive connections are closed after this; a stalled request body is timed
        # out by the app (BodyReadTimeoutMiddleware, PODSTACK_BODY_READ_TIMEOUT_SECONDS).
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
    }
    # The database is migrated once, below, in this process: workers must not repeat it
    # concurrently.
    # The background loops run in one process of this home, whichever holds its lock.
    app_settings = settings.model_copy(
        update={"migrate_on_start": False, "background_once_per_home": True}
    )
    if workers == 1:
        from podstack.server.app import create_app

        app = create_app(app_settings)
        app.state.warm_up = True
        config = uvicorn.Config(app, **uv_options)
    else:
        # Several processes: this one binds and supervises; each worker rebuilds the same
        # settings from the environment.
        os.environ.update(
            {
                "PODSTACK_HOST": settings.host,
                "PODSTACK_PORT": str(settings.port),
                "PODSTACK_NO_AUTH": "true" if settings.no_auth else "false",
                "PODSTACK_MIGRATE_ON_START": "false",
                "PODSTACK_BACKGROUND_ONCE_PER_HOME": "true",
                "PODSTACK_LOG_LEVEL": settings.log_level,
            }
        )
        config = uvicorn.Config(
            "podstack.cli.server:worker_app", factory=True, workers=workers, **uv_options
        )
    # Bind before the first admin is created: if the port is taken we stop here, not after a
    # one-time token was generated that could then never be shown.
    try:
        sock = config.bind_socket()
    except SystemExit:
        fail(
            f"Cannot listen on {settings.host}:{settings.port} (see the message above; is "
            "another server using that port?)."
        )

    _check_artifact_store(settings)
    mode_warnings = file_modes.warn_wide_modes(settings)
    first = prepare_database(settings)

    def announce() -> None:
        print_banner(app_settings, first, mode_warnings)

    if workers == 1:
        server = _AnnouncingServer(config, announce)
        _exit_quietly_after_signal()
        try:
            server.run(sockets=[sock])
        except SystemExit as exc:
            if exc.code not in (None, 0):
                _startup_failed(settings, first)
            raise
        if not server.started:
            _startup_failed(settings, first)
        return

    from uvicorn.supervisors import Multiprocess

    threading.Thread(
        target=_announce_when_ready, args=(_probe_url(settings), announce), daemon=True
    ).start()
    Multiprocess(config, sockets=[sock]).run()


def _startup_failed(settings: Settings, first: FirstStart) -> None:
    hint = ""
    if first.token is not None:
        hint = (
            " The admin user was created; once the server runs, get a token for it with "
            "`podstack tokens create admin`."
        )
    fail(f"The server did not start on {settings.host}:{settings.port}; see the log above.{hint}")


def _check_artifact_store(settings: Settings) -> None:
    """An object store that cannot be used (no such bucket, wrong credentials, unreachable
    endpoint) stops the server before it serves anything, with the store's own message."""
    from podstack.server.artifacts.store_factory import StoreMisconfigured, open_store

    try:
        open_store(settings)
    except StoreMisconfigured as exc:
        fail(f"Artifact store {settings.artifacts_uri}: {exc.message}")

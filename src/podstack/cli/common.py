"""Shared CLI plumbing: consoles, the error boundary, opening the local database, the
``--url``/``--token`` options with the client they select (and other options several groups
declare alike), and printing tables and one-time secrets.

Expected failures (any ``PodstackError``, an unreachable database) become one red line on
stderr and exit code 1; tracebacks are for bugs only.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from typer.core import TyperGroup

from podstack.client.client import MLOpsClient
from podstack.errors import PodstackError
from podstack.server.auth.principal import Principal
from podstack.server.config import Settings
from podstack.server.db import migrate
from podstack.server.db.session import Database

# Rich resolves sys.stdout/sys.stderr at write time, so test runners can capture them.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Every command that goes through MLOpsClient takes these two: the local store (embedded) by
# default, or a server.
Url = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="PODSTACK_URL", help="Server URL (default: the local store, embedded)."
    ),
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="PODSTACK_API_TOKEN", help="API token for --url."),
]

# Declared the same way by several command groups.
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Description = Annotated[str | None, typer.Option("--description", "-d")]


@contextmanager
def open_client(url: str | None, token: str | None) -> Iterator[MLOpsClient]:
    """The client for ``--url``/``--token``: that server, else the embedded local store
    (which needs no token), closed when the command is done."""
    client = MLOpsClient(api_token=token, url=url) if url else MLOpsClient()
    try:
        yield client
    finally:
        client.close()


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]Error:[/bold red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def safe_url(url: str) -> str:
    """A database URL fit for printing (password hidden)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database>"


class PodstackGroup(TyperGroup):
    """Root command group: turns expected errors from any subcommand into a clear message."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except PodstackError as exc:
            fail(exc.message)
        except ValidationError as exc:
            # Settings from PODSTACK_* variables that do not parse (e.g. PODSTACK_PORT=abc).
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in exc.errors()
            )
            fail(f"Invalid configuration: {problems}")
        except (OperationalError, ProgrammingError) as exc:
            # Raised outside a session (engine connect, migrations): bad URL, server down,
            # or a database that was never migrated.
            first = str(exc.orig or exc).strip().splitlines()[0][:300]
            fail(f"Database error: {first}")


def cli_actor() -> str:
    """Audit actor for commands run on the box: who ran them, marked as coming from the CLI."""
    try:
        name = getpass.getuser()
    except Exception:
        name = "operator"
    return f"cli:{name}"[:64]


def cli_principal() -> Principal:
    # Whoever can run commands against the database files/URL is effectively an admin.
    return Principal(username=cli_actor(), role="admin", via="local")


@contextmanager
def open_database(settings: Settings) -> Iterator[Database]:
    """The configured database as it is (not migrated): one connection, closed when done."""
    db = Database(settings.database_url, pool_size=1)
    try:
        yield db
    finally:
        db.dispose()


@contextmanager
def local_database(settings: Settings | None = None) -> Iterator[Database]:
    """The database from PODSTACK_DATABASE_URL / PODSTACK_HOME, migrated like the server
    would (unless PODSTACK_MIGRATE_ON_START=false, then it must already be current)."""
    settings = settings or Settings()
    with open_database(settings) as db:
        if settings.migrate_on_start:
            migrate.upgrade(db.engine)
        elif not migrate.is_at_head(db.engine):
            fail(
                f"The database at {safe_url(settings.database_url)} is not at the latest "
                "migration; run `podstack db upgrade` first."
            )
        yield db


def print_secret(label: str, value: str) -> None:
    """A secret the user sees only now (tokens, signing secrets): whole and verbatim (no
    wrapping, no markup), so it can be copied."""
    console.print(f"{label} (shown only this once; store it now):")
    console.print(value, soft_wrap=True, markup=False)


def print_table(table: Table) -> None:
    # Off a terminal (pipes, files, CI logs) Rich assumes 80 columns and folds cells; give
    # tables room so each row stays on one line and stays greppable.
    if console.is_terminal:
        console.print(table)
    else:
        Console(width=250, highlight=False).print(table)


def list_table(title: str, columns: Iterable[str]) -> Table:
    """A titled table for a listing (print it with ``print_table``). A cell too long for its
    column folds onto more lines rather than being cut, so ids and names stay whole."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    return table


def fmt_time(value: datetime | None, empty: str = "-") -> str:
    if value is None:
        return empty
    return value.astimezone().strftime("%Y-%m-%d %H:%M")

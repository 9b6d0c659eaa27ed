"""``podstack db``: schema migrations of the configured database."""

from __future__ import annotations

import typer

from podstack.cli.common import console, open_database, safe_url
from podstack.server.config import Settings
from podstack.server.db import migrate

app = typer.Typer(
    no_args_is_help=True,
    help="Database schema (uses PODSTACK_DATABASE_URL, default $PODSTACK_HOME/podstack.db).",
)


@app.command("upgrade")
def upgrade() -> None:
    """Apply all pending migrations (safe to run repeatedly, and while servers run)."""
    settings = Settings()
    with open_database(settings) as db:
        before = migrate.current_revisions(db.engine)
        migrate.upgrade(db.engine)
        after = migrate.current_revisions(db.engine)
    where = safe_url(settings.database_url)
    revs = ", ".join(sorted(after)) or "none"
    if before == after:
        console.print(f"{where} is already up to date (revision {revs}).", soft_wrap=True)
    else:
        old = ", ".join(sorted(before)) or "empty"
        console.print(f"Upgraded {where}: {old} -> {revs}.", soft_wrap=True)


@app.command("current")
def current() -> None:
    """Show the database's migration revision and whether it is the latest."""
    settings = Settings()
    with open_database(settings) as db:
        revs = migrate.current_revisions(db.engine)
    heads = migrate.head_revisions()
    where = safe_url(settings.database_url)
    console.print(f"Database: {where}", soft_wrap=True)
    console.print(f"Current:  {', '.join(sorted(revs)) or 'none (empty database)'}")
    console.print(f"Latest:   {', '.join(sorted(heads))}")
    if revs == heads:
        console.print("[green]Up to date.[/green]")
    else:
        console.print("[yellow]Behind: run `podstack db upgrade`.[/yellow]")

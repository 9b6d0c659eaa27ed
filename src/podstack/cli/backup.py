"""``podstack backup`` / ``podstack restore``: consistent snapshots of database + artifacts."""

from __future__ import annotations

from pathlib import Path

import typer

from podstack.cli.common import console, fail, open_database, safe_url
from podstack.server.artifacts.store_factory import open_store
from podstack.server.backup import service
from podstack.server.config import Settings


def _say(line: str) -> None:
    console.print(f"  {line}", soft_wrap=True)


def backup(
    path: Path = typer.Argument(..., help="New or empty directory to write the backup into."),
) -> None:
    """Write a consistent snapshot of the database and every referenced artifact to PATH.

    Safe while the server runs: rows come from one snapshot transaction, artifacts are
    immutable and verified by digest as they are copied."""
    settings = Settings()
    with open_database(settings) as db:
        console.print(f"Backing up {safe_url(settings.database_url)} -> {path}", soft_wrap=True)
        summary = service.backup(db.engine, open_store(settings), path, _say)
    rows = sum(summary.tables.values())
    console.print(
        f"[green]Backup complete:[/green] {rows} rows in {len(summary.tables)} "
        f"tables, {summary.blobs} artifact blobs ({summary.blob_bytes} bytes), "
        f"schema {', '.join(summary.revisions)}.",
        soft_wrap=True,
    )


def restore(
    path: Path = typer.Argument(..., help="A directory written by `podstack backup`."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Restore a backup into the configured database, which must be empty, and its artifact
    store. Every file is verified against the backup's manifest first."""
    settings = Settings()
    manifest = service.verify(path)
    where = safe_url(settings.database_url)
    if not yes and not typer.confirm(
        f"Restore the backup of {manifest['created_at']} into {where} and {settings.artifacts_uri}?"
    ):
        fail("Restore cancelled.")
    with open_database(settings) as db:
        service.restore(db.engine, open_store(settings), path, _say)
    console.print(
        f"[green]Restored[/green] {sum(manifest['tables'].values())} rows and "
        f"{manifest['blobs']} artifact blobs into {where}.",
        soft_wrap=True,
    )


def verify_backup(path: Path = typer.Argument(..., help="Backup directory to check.")) -> None:
    """Check a backup's files against its manifest (no database needed)."""
    manifest = service.verify(path)
    console.print(
        f"[green]OK[/green]: backup of {manifest['created_at']}, "
        f"{sum(manifest['tables'].values())} rows, {manifest['blobs']} blobs, all "
        "digests match.",
        soft_wrap=True,
    )

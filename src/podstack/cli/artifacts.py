"""``podstack artifacts migrate``: move the artifact store to object storage, online."""

from __future__ import annotations

from typing import Annotated

import typer

from podstack.cli.common import console, fail, local_database

app = typer.Typer(no_args_is_help=True, help="The artifact store (local disk or S3).")


@app.command("migrate")
def migrate(
    to: Annotated[str, typer.Option("--to", help="Target store, e.g. s3://my-bucket/podstack.")],
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Source store (default: PODSTACK_ARTIFACTS_URI, i.e. the current one). After "
            "switching, a last run with --from <old path> copies what arrived meanwhile.",
        ),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, max=64, help="Parallel copies.")] = 4,
) -> None:
    """Copy every artifact blob into another store, verified; safe to run while the server
    serves, and to re-run (blobs already there are skipped).

    Then point PODSTACK_ARTIFACTS_URI at the target and restart the server(s)."""
    from podstack.server.artifacts.migration import migrate_blobs
    from podstack.server.artifacts.store_factory import StoreMisconfigured, open_uri
    from podstack.server.config import Settings
    from podstack.server.registry import gc as gc_mod

    settings = Settings()
    from_uri = source or settings.artifacts_uri
    try:
        src, dest = open_uri(from_uri), open_uri(to)
    except (StoreMisconfigured, ValueError) as exc:
        fail(getattr(exc, "message", None) or str(exc))
    with local_database(settings) as db, db.session(readonly=True) as s:
        referenced = gc_mod.referenced_digests(s)
    console.print(f"Copying artifact blobs {src.uri} -> {dest.uri}", soft_wrap=True)
    try:
        report = migrate_blobs(
            src, dest, referenced=referenced, jobs=jobs, progress=lambda m: console.print(f"  {m}")
        )
    except Exception as exc:  # an unreachable store mid-way: say so, re-running resumes
        fail(f"Migration stopped: {exc}. Run the same command again to resume.")
    mib = report.copied_bytes / 1024**2
    console.print(
        f"{report.blobs} blob(s) in the source: {report.copied} copied ({mib:.1f} MiB), "
        f"{report.skipped} already in the target.",
        soft_wrap=True,
    )
    if report.failed:
        for digest, reason in sorted(report.failed.items()):
            console.print(f"  [red]failed[/red] {digest}: {reason}", soft_wrap=True)
    if report.missing:
        console.print(
            f"[red]{len(report.missing)} referenced blob(s) are in neither store[/red] "
            "(`podstack verify-store` lists what they belong to).",
            soft_wrap=True,
        )
    if not report.complete:
        fail("The target is not complete yet; fix the above and run the command again.")
    console.print(
        f"[green]Complete.[/green] Every referenced blob is in {dest.uri}. Now set "
        f"PODSTACK_ARTIFACTS_URI={dest.uri} and restart the server(s); then run this once "
        f"more with --from {src.uri} to copy uploads that arrived before the restart.",
        soft_wrap=True,
    )

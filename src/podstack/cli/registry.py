"""``podstack models|versions|aliases|download|gc``: the model registry from a terminal.

Everything but ``gc`` goes through ``MLOpsClient``: the local store (embedded) by default, or
a server with ``--url``/``--token`` (``PODSTACK_URL``/``PODSTACK_API_TOKEN``). ``gc`` works on
the local database and artifact store directly, like the server's own maintenance would.

Wherever a VERSION is taken, a ``models:/`` reference works too (``models:/name/Production``,
``models:/name@alias``, ``models:/name/latest``); ``versions show`` and ``download`` also take
the reference in place of NAME.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from podstack.cli.common import (
    Description,
    Token,
    Url,
    Yes,
    console,
    fail,
    fmt_time,
    list_table,
    local_database,
    open_client,
    print_table,
)
from podstack.schemas import registry as sch

models_app = typer.Typer(no_args_is_help=True, help="Registered models: list, show, register.")
versions_app = typer.Typer(
    no_args_is_help=True, help="Model versions: create, list, show, transition, tag, delete."
)
aliases_app = typer.Typer(no_args_is_help=True, help="Model aliases: set, delete, list, rollback.")

# `versions show`, `download` and the signature commands (provenance.py) take a models:/
# reference in place of NAME and VERSION.
ModelRef = Annotated[str, typer.Argument(help="Model name, or a models:/ reference.")]
VersionRef = Annotated[str | None, typer.Argument(help="Version number or models:/ URI.")]

_STAGE_COLOURS = {"Production": "green", "Staging": "yellow", "Archived": "dim", "None": ""}


def _version_arg(value: str | None) -> Any:
    """CLI arguments are text; version numbers travel as ints, references as they are."""
    if value is not None and value.isascii() and value.isdigit():
        return int(value)
    return value


def _stage(stage: str) -> str:
    colour = _STAGE_COLOURS.get(stage, "")
    return f"[{colour}]{stage}[/]" if colour else stage


def _summary(v: sch.VersionSummary | None) -> str:
    return "-" if v is None else f"v{v.version} ({_stage(v.stage)})"


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return escape(text if len(text) <= width else text[: width - 1] + "…")


# What each column of a version listing shows; `models show` and `versions list` pick
# different columns, but a column looks the same wherever it appears.
_VERSION_CELLS: dict[str, Callable[[sch.ModelVersion], str]] = {
    "version": lambda v: str(v.version),
    "stage": lambda v: _stage(v.stage),
    "created": lambda v: fmt_time(v.created_at),
    "by": lambda v: escape(v.created_by or "-"),
    "run": lambda v: escape(v.source_run_id),
    "artifact": lambda v: escape(v.artifact_path or "/"),
    "aliases": lambda v: escape(", ".join(v.aliases)),
    "description": lambda v: _short(v.description, 50),
}


def _print_versions(title: str, versions: list[sch.ModelVersion], columns: tuple[str, ...]) -> None:
    table = list_table(title, columns)
    for v in versions:
        table.add_row(*(_VERSION_CELLS[col](v) for col in columns))
    print_table(table)


# ---------------------------------------------------------------- models


@models_app.command("list")
def models_list(
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Text in name or description.")
    ] = None,
    stage: Annotated[
        str | None, typer.Option("--stage", "-s", help="Only models with a version in it.")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="Only models with this label (repeat)."),
    ] = None,
    order_by: Annotated[str, typer.Option("--order-by", help="name | updated | stage")] = "name",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 50,
    page_token: Annotated[
        str | None, typer.Option("--page-token", help="From a previous page.")
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """List registered models with their latest and Production versions."""
    with open_client(url, token) as c:
        page = c.search_registered_models(
            query=query,
            stage=stage,
            labels=label or [],
            order_by=order_by,
            max_results=limit,
            page_token=page_token,
        )
    table = list_table(
        f"{len(page)} model(s)",
        ("name", "latest", "production", "labels", "updated", "description"),
    )
    for m in page:
        table.add_row(
            escape(m.name),
            _summary(m.latest_version),
            _summary(m.production_version),
            escape(", ".join(m.tags)),
            fmt_time(m.updated_at),
            _short(m.description),
        )
    print_table(table)
    if page.next_page_token:
        console.print(f"More: --page-token {page.next_page_token}", markup=False)


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Show a model: description, labels, aliases and every version with its stage."""
    with open_client(url, token) as c:
        m = c.get_registered_model(name)
        versions = c.list_model_versions(name)
    console.print(f"[bold]{escape(m.name)}[/bold]")
    if m.description:
        console.print(escape(m.description))
    console.print(f"Labels: {escape(', '.join(m.tags)) or '-'}")
    console.print(f"Created {fmt_time(m.created_at)} by {escape(m.created_by or '-')}")
    console.print(f"Production: {_summary(m.production_version)}")
    if m.aliases:
        shown = ", ".join(f"{escape(a)} → v{n}" for a, n in sorted(m.aliases.items()))
        console.print(f"Aliases: {shown}")
    if m.key_value_tags:
        shown = ", ".join(f"{escape(k)}={escape(v)}" for k, v in sorted(m.key_value_tags.items()))
        console.print(f"Key-value tags: {shown}")
    _print_versions(
        f"{len(versions)} version(s)",
        versions,
        ("version", "stage", "created", "by", "run", "aliases", "description"),
    )


@models_app.command("register")
def models_register(
    name: Annotated[str, typer.Argument(help="e.g. sentiment-classifier")],
    description: Description = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="A label (repeat for more).")
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Register a new model."""
    with open_client(url, token) as c:
        m = c.register_model(name, description=description, tags=label or [])
    console.print(f"Registered model {escape(m.name)}.")


@models_app.command("update")
def models_update(
    name: str,
    description: Description = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="Replace the labels with these (repeat)."),
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Change a model's description and/or labels."""
    with open_client(url, token) as c:
        m = c.update_registered_model(name, description=description, tags=label)
    console.print(f"Updated model {escape(m.name)}.")


@models_app.command("delete")
def models_delete(name: str, yes: Yes = False, url: Url = None, token: Token = None) -> None:
    """Delete a model with all its versions, aliases and tags (refused while a version is in
    Production). Permanent: archive instead if you may need it later."""
    if not yes:
        typer.confirm(f"Delete model {name!r} and all its versions? This is permanent", abort=True)
    with open_client(url, token) as c:
        c.delete_registered_model(name)
    console.print(f"Deleted model {escape(name)}.")


# ---------------------------------------------------------------- versions


@versions_app.command("create")
def versions_create(
    name: Annotated[str, typer.Argument(help="Model name (registered if new).")],
    run_id: Annotated[str, typer.Option("--run", "-r", help="Source run id.")],
    artifact_path: Annotated[
        str, typer.Option("--path", "-p", help="Artifact file or directory in the run.")
    ],
    description: Description = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="key=value (repeat).")
    ] = None,
    parent: Annotated[
        str | None, typer.Option("--parent", help="Fine-tuned from, e.g. models:/base/2.")
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Register a run's artifact as the next version of a model."""
    tags: dict[str, str] = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--tag needs key=value, got {item!r}.")
        tags[key] = value
    with open_client(url, token) as c:
        v = c.create_model_version(
            name,
            run_id,
            artifact_path,
            description=description,
            tags=tags,
            parent=parent,
            detail=True,  # the message counts the files
        )
    console.print(
        f"Created {escape(v.model_name)} version {v.version} ({len(v.files or [])} files)."
    )


@versions_app.command("list")
def versions_list(
    name: str,
    stage: Annotated[str | None, typer.Option("--stage", "-s")] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """List a model's versions, newest first."""
    with open_client(url, token) as c:
        versions = c.list_model_versions(name, stage=stage)
    _print_versions(
        f"{len(versions)} version(s) of {escape(name)}",
        versions,
        ("version", "stage", "created", "run", "artifact", "aliases", "description"),
    )


@versions_app.command("show")
def versions_show(
    name: ModelRef,
    version: VersionRef = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Show a version: stage, source run (params, metrics), validation metrics, tags, files."""
    with open_client(url, token) as c:
        v = c.get_model_version(name, _version_arg(version))
        history = c.get_model_version_stage_history(v.model_name, v.version)
    console.print(f"[bold]{escape(v.model_name)} v{v.version}[/bold]  {_stage(v.stage)}")
    if v.description:
        console.print(escape(v.description))
    run = v.source_run
    console.print(f"Created {fmt_time(v.created_at)} by {escape(v.created_by or '-')}")
    if run is not None:
        exp = run.experiment_name or run.experiment_id
        console.print(f"Source: run {escape(run.id)} in experiment {escape(exp)}")
    console.print(f"Artifact path: {escape(v.artifact_path or '/')}")
    if v.parent:
        console.print(f"Fine-tuned from: {escape(v.parent.model_name)} v{v.parent.version}")
    if v.aliases:
        console.print(f"Aliases: {escape(', '.join(v.aliases))}")
    table = Table(title="Details", show_header=True)
    table.add_column("kind")
    table.add_column("key", overflow="fold")
    table.add_column("value", overflow="fold")
    for k, val in sorted((run.params if run else {}).items()):
        table.add_row("param", escape(k), escape(val))
    for k, num in sorted((run.metrics if run else {}).items()):
        table.add_row("training metric", escape(k), f"{num:g}")
    for k, num in sorted(v.validation_metrics.items()):
        table.add_row("validation metric", escape(k), f"{num:g}")
    for k, val in sorted(v.tags.items()):
        table.add_row("tag", escape(k), escape(val))
    for f in v.files or []:
        table.add_row("file", escape(f.path), f"{f.size} bytes  sha256:{f.sha256[:12]}…")
    print_table(table)
    for t in history:
        note = f" — {escape(t.note)}" if t.note else ""
        console.print(
            f"{fmt_time(t.at)}  {t.from_stage} → {_stage(t.to_stage)} by {escape(t.actor)}{note}"
        )


@versions_app.command("transition")
def versions_transition(
    name: str,
    version: str,
    stage: Annotated[str, typer.Argument(help="None | Staging | Production | Archived")],
    note: Annotated[str | None, typer.Option("--note", "-m", help="Why (recorded).")] = None,
    archive_existing: Annotated[
        bool,
        typer.Option("--archive-existing", help="Archive the versions already in that stage."),
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Move a version to another stage."""
    with open_client(url, token) as c:
        v = c.transition_model_version_stage(
            name, _version_arg(version), stage, note=note, archive_existing=archive_existing
        )
    if v.pending_request is not None:
        console.print(
            f"Not applied yet: {escape(v.pending_request.message)} "
            f"(request {escape(v.pending_request.id)})."
        )
        return
    console.print(f"{escape(v.model_name)} v{v.version} is now {_stage(v.stage)}.")


@versions_app.command("tag")
def versions_tag(
    name: str,
    version: str,
    key: str,
    value: Annotated[str | None, typer.Argument(help="Omit with --delete.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the tag.")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Set (or --delete) a key/value tag on a version."""
    if delete == (value is not None):
        fail("Give either VALUE to set the tag, or --delete to remove it.")
    with open_client(url, token) as c:
        if delete:
            c.delete_model_version_tag(name, _version_arg(version), key)
            console.print(f"Removed tag {escape(key)}.")
        else:
            c.set_model_version_tag(name, _version_arg(version), key, value)
            console.print(f"Set {escape(key)}={escape(str(value))}.")


@versions_app.command("delete")
def versions_delete(
    name: str,
    version: str,
    yes: Yes = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Delete a version (refused while it is in Production: archive it first)."""
    if not yes:
        typer.confirm(f"Delete version {version} of {name!r}? This is permanent", abort=True)
    with open_client(url, token) as c:
        c.delete_model_version(name, _version_arg(version))
    console.print(f"Deleted version {escape(version)} of {escape(name)}.")


# ---------------------------------------------------------------- aliases


def _alias_line(model: str, a: sch.ModelAlias) -> str:
    return f"{escape(model)}@{escape(a.alias)} → v{a.version}"


@aliases_app.command("set")
def aliases_set(
    name: str,
    alias: Annotated[str, typer.Argument(help="e.g. latest-prod")],
    version: Annotated[str, typer.Argument(help="Version number or models:/ URI.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Point an alias at a version (creating or moving it)."""
    with open_client(url, token) as c:
        a = c.set_model_alias(name, alias, _version_arg(version))
    console.print(_alias_line(name, a))


@aliases_app.command("delete")
def aliases_delete(name: str, alias: str, url: Url = None, token: Token = None) -> None:
    """Remove an alias (the version stays)."""
    with open_client(url, token) as c:
        c.delete_model_alias(name, alias)
    console.print(f"Deleted alias {escape(alias)} of {escape(name)}.")


@aliases_app.command("list")
def aliases_list(name: str, url: Url = None, token: Token = None) -> None:
    """List a model's aliases."""
    with open_client(url, token) as c:
        rows = c.list_model_aliases(name)
    table = Table(title=f"{len(rows)} alias(es) of {escape(name)}")
    for col in ("alias", "version", "moved", "by"):
        table.add_column(col)
    for a in rows:
        table.add_row(
            escape(a.alias), str(a.version), fmt_time(a.updated_at), escape(a.updated_by or "-")
        )
    print_table(table)


@aliases_app.command("rollback")
def aliases_rollback(name: str, alias: str, url: Url = None, token: Token = None) -> None:
    """Move an alias back to the version it pointed at before."""
    with open_client(url, token) as c:
        a = c.rollback_model_alias(name, alias)
    console.print(_alias_line(name, a))


# ---------------------------------------------------------------- download and gc


def download(
    name: ModelRef,
    version: VersionRef = None,
    dest: Annotated[Path, typer.Option("--dest", "-d", help="Destination directory.")] = Path("."),
    path: Annotated[
        list[str] | None,
        typer.Option("--path", "-p", help="Only this file or directory of the version (repeat)."),
    ] = None,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify", help="Skip the signature check (the files are still sha256-checked)."
        ),
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Download a model version's files: the version's signature is checked first (see
    `podstack models verify`), then every file's sha256; files already there are skipped."""
    with open_client(url, token) as c:
        v = c.get_model_version(name, _version_arg(version))
        out = c.download_model_version(
            v.model_name, v.version, dest, paths=path, verify=not no_verify
        )
    n = len(v.files or []) if path is None else len(path)
    what = f"{n} file(s)" if path is None else ", ".join(path)
    console.print(
        f"Downloaded {escape(what)} of {escape(v.model_name)} v{v.version} to {escape(out)}."
    )


def gc(
    delete: Annotated[
        bool, typer.Option("--delete", help="Really delete (default: only report).")
    ] = False,
    grace_hours: Annotated[
        float,
        typer.Option(
            "--grace-hours",
            min=0,
            help="Keep unreferenced blobs younger than this (protects in-flight uploads).",
        ),
    ] = 24.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List the digests.")] = False,
) -> None:
    """Reclaim artifact storage no run artifact and no model version references.

    Works on the local database and store (PODSTACK_DATABASE_URL, PODSTACK_ARTIFACTS_URI).
    Dry run unless --delete."""
    from podstack.server.artifacts.store_factory import open_store
    from podstack.server.config import Settings
    from podstack.server.registry import gc as gc_mod

    settings = Settings()
    store = open_store(settings)  # the local disk or the S3 bucket
    with local_database(settings) as db:
        report = gc_mod.collect(db, store, delete=delete, grace_seconds=int(grace_hours * 3600))
    mib = report.reclaimable_bytes / 1024**2
    verb = "Deleted" if delete else "Would delete"
    console.print(
        f"{report.blobs_total} blob(s) in the store, {report.referenced} referenced, "
        f"{report.skipped_recent} unreferenced but younger than {grace_hours:g} h (kept)."
    )
    console.print(f"{verb} {report.reclaimable} blob(s), {mib:.1f} MiB.")
    if report.stale_uploads:
        tmp_mib = report.stale_upload_bytes / 1024**2
        console.print(
            f"{verb} {report.stale_uploads} abandoned upload(s) (temp files, multipart uploads), "
            f"{tmp_mib:.1f} MiB."
        )
    if report.orphan_version_copies:
        copy_mib = report.orphan_version_copy_bytes / 1024**2
        console.print(
            f"{verb} {report.orphan_version_copies} copy(ies) of deleted versions published for "
            f"KServe (models/<model>/<version>/ in the bucket), {copy_mib:.1f} MiB."
        )
    if verbose:
        for d in report.digests:
            console.print(d, markup=False)
    if not delete and (report.reclaimable or report.stale_uploads or report.orphan_version_copies):
        console.print("Dry run: nothing was deleted. Re-run with --delete to reclaim it.")

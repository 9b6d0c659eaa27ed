"""``podstack import mlflow``: copy experiments, runs, artifacts and registered models from a
running MLflow server into Podstack (see ``podstack.importers.mlflow_import``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from podstack.cli.common import Token, Url, console, err_console, fail, open_client
from podstack.errors import PodstackError
from podstack.importers.mlflow_import import NOT_MODELLED, MlflowImporter, Summary
from podstack.importers.mlflow_source import MlflowSource, MlflowSourceError

app = typer.Typer(
    no_args_is_help=True, help="Import data from other systems (e.g. an MLflow server)."
)


def _names(values: list[str] | None) -> list[str] | None:
    """``--models a,b --models c`` -> ["a", "b", "c"]; None when the option was not given."""
    if values is None:
        return None
    out = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return out or None


def _print_summary(summary: Summary, dry_run: bool) -> None:
    # soft_wrap: one line per fact, never folded at 80 columns off a terminal (greppable logs).
    if dry_run:
        console.print(
            f"[bold]Dry run:[/bold] nothing was written. Would copy {len(summary.planned)} item(s):"
        )
        for line in summary.planned:
            console.print(f"  {escape(line)}", soft_wrap=True)
    copied = ", ".join(f"{n} {k}" for k, n in summary.copied.items() if n) or "nothing"
    already = ", ".join(f"{n} {k}" for k, n in summary.already.items() if n) or "nothing"
    if not dry_run:
        console.print(f"[bold green]Copied:[/bold green] {escape(copied)}", soft_wrap=True)
    console.print(f"[bold]Already imported (left as is):[/bold] {escape(already)}", soft_wrap=True)
    if summary.skipped:
        total = sum(len(v) for v in summary.skipped.values())
        console.print(f"[bold yellow]Skipped ({total}):[/bold yellow]")
        for reason, items in summary.skipped.items():
            shown = ", ".join(items[:5]) + (
                f", … ({len(items) - 5} more)" if len(items) > 5 else ""
            )
            console.print(f"  {escape(reason)}: {escape(shown)}", soft_wrap=True)
    console.print(f"[dim]{escape(NOT_MODELLED)}[/dim]", soft_wrap=True)


@app.command("mlflow")
def import_mlflow(
    source_url: Annotated[
        str,
        typer.Option(
            "--from",
            help="The MLflow tracking server's URL, e.g. http://mlflow:5000. Credentials from "
            "MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME/_PASSWORD).",
        ),
    ],
    experiments: Annotated[
        list[str] | None,
        typer.Option(
            "--experiments",
            "--experiment",
            help="Only these experiments (names or ids; repeat or comma-separate). Without "
            "--models, no registered models are copied.",
        ),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            "--model",
            help="Only these registered models (repeat or comma-separate), with the runs "
            "their versions come from. Without --experiments, no other runs are copied.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be copied; write nothing.")
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Copy experiments, runs (params, metric histories, tags, artifacts), registered models,
    versions, tags and aliases from a running MLflow server. Running it again copies only
    what is new; an interrupted import resumes."""
    exp_names, model_names = _names(experiments), _names(models)
    summary: Summary | None = None
    try:
        with (
            MlflowSource.from_env(source_url) as source,
            open_client(url, token) as client,
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[item]}"),
                console=err_console,
                transient=False,
            ) as bar,
        ):
            task = bar.add_task("Checking" if dry_run else "Importing", total=None, item="")
            importer = MlflowImporter(
                source,
                client,
                experiments=exp_names,
                models=model_names,
                dry_run=dry_run,
                progress=lambda item: bar.update(task, advance=1, item=item[:60]),
                on_total=lambda n: bar.update(task, total=n),
            )
            summary = importer.summary
            importer.run()
    except MlflowSourceError as exc:
        if summary is not None and (summary.copied or summary.already):
            _print_summary(summary, dry_run)
            err_console.print(
                "The import stopped; run the same command again to resume where it stopped."
            )
        fail(exc.message)
    except PodstackError as exc:
        # Podstack refused a write (a viewer token, a rule): show what was done, then why.
        if summary is not None:
            _print_summary(summary, dry_run)
        fail(exc.message)
    assert summary is not None
    _print_summary(summary, dry_run)

"""``podstack schedules``: scheduled training through ``MLOpsClient`` (a server with
``--url``/``PODSTACK_URL``, else the local store; jobs fire only where a server runs)."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from podstack.cli.common import Description, Token, Url, Yes, console, fail, fmt_time, open_client
from podstack.schemas.schedules import Execution, Schedule

app = typer.Typer(
    no_args_is_help=True,
    help="Scheduled training: cron schedules, Run now, execution history.",
)

_STATUS_COLOUR = {
    "queued": "cyan",
    "running": "blue",
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "skipped_overlap": "dim",
    "skipped_misfire": "dim",
}

CommandArg = typer.Argument(
    None,
    help="The job for the local executor, after `--`: e.g. -- python train.py --epochs 3",
    show_default=False,
)
ParamOpt = typer.Option(
    None, "--param", "-p", help="Training parameter KEY=VALUE (repeatable); logged as run params."
)


def _params(pairs: list[str] | None) -> dict[str, Any] | None:
    if not pairs:
        return None
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            fail(f"--param {pair!r} is not KEY=VALUE (e.g. --param lr=0.001).")
        try:
            value = json.loads(raw)  # numbers and true/false keep their type
            if isinstance(value, (dict, list)):
                value = raw
        except ValueError:
            value = raw
        out[key] = value
    return out


def _executor(
    command: list[str] | None,
    webhook_url: str | None,
    webhook_secret: str | None,
    image: str | None,
    gpu_type: str | None,
    gpu_count: int | None,
    namespace: str | None,
) -> dict[str, Any] | None:
    kinds = [
        k
        for k, v in (("command", command), ("--webhook-url", webhook_url), ("--k8s-image", image))
        if v
    ]
    if len(kinds) > 1:
        fail(f"Choose one job: {' or '.join(kinds)}.")
    if webhook_url or webhook_secret:
        return {"type": "webhook", "url": webhook_url, "secret": webhook_secret}
    if image or gpu_type:
        k8s: dict[str, Any] = {"type": "kubernetes", "image": image}
        for key, value in (
            ("gpu_type", gpu_type),
            ("gpu_count", gpu_count),
            ("namespace", namespace),
        ):
            if value is not None:
                k8s[key] = value
        return k8s
    if command:
        return {"type": "local", "command": command}
    return None


def _job(s: Schedule) -> str:
    ex = s.executor
    if ex.type == "local":
        return " ".join(ex.command)
    if ex.type == "webhook":
        return f"webhook {ex.url}"
    gpu = f" on {ex.gpu_count}× {ex.gpu_type}" if ex.gpu_type else ""
    return f"kubernetes {ex.image}{gpu}"


def _state(s: Schedule) -> str:
    if s.deleted:
        return "[red]deleted[/]"
    return "[yellow]paused[/]" if s.paused else "[green]active[/]"


def _status(status: str) -> str:
    return f"[{_STATUS_COLOUR.get(status, 'white')}]{status}[/]"


def _duration(ex: Execution) -> str:
    if ex.duration_seconds is None:
        return "-"
    secs = int(ex.duration_seconds)
    return f"{secs // 60}m{secs % 60:02d}s" if secs >= 60 else f"{ex.duration_seconds:.1f}s"


def _show(s: Schedule) -> None:
    console.print(f"[bold]{escape(s.name)}[/] ({s.id}) {_state(s)}")
    rows = [
        ("experiment", s.experiment_name or s.experiment_id or "(deleted)"),
        ("when", f"{s.cron}  ({s.cron_description}, {s.timezone})"),
        ("job", _job(s)),
        ("config", json.dumps(s.config, sort_keys=True) if s.config else "-"),
        ("overlap", s.overlap_policy.value),
        (
            "misfire",
            s.misfire_policy.value
            + (f", grace {s.misfire_grace_seconds} s" if s.misfire_grace_seconds else ""),
        ),
        ("timeout", f"{s.timeout_seconds} s" if s.timeout_seconds else "none"),
        ("version", str(s.version)),
        ("next fires", ", ".join(fmt_time(t) for t in s.next_fire_times) or "-"),
    ]
    if s.last_execution is not None:
        ex = s.last_execution
        rows.append(("last", f"{fmt_time(ex.scheduled_time)} {ex.status.value} ({ex.id})"))
    for key, value in rows:
        console.print(f"  {key:<11} {escape(value)}", soft_wrap=True)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Schedule name (letters, digits, . _ -)."),
    experiment: str = typer.Option(..., "--experiment", "-e", help="Experiment id or name."),
    cron: str = typer.Option(..., "--cron", "-c", help="'0 2 * * *' (02:00 daily) or @daily."),
    timezone: str = typer.Option("UTC", "--tz", help="IANA timezone, e.g. Europe/Berlin."),
    params: list[str] | None = ParamOpt,
    timeout: int | None = typer.Option(None, "--timeout", help="Kill the job after N seconds."),
    overlap: str = typer.Option("skip", "--overlap", help="skip | allow"),
    misfire: str = typer.Option("run_latest", "--misfire", help="run_latest | skip"),
    grace: int | None = typer.Option(None, "--misfire-grace", help="Catch-up window (s)."),
    description: Description = None,
    paused: bool = typer.Option(False, "--paused", help="Create it paused."),
    webhook_url: str | None = typer.Option(None, "--webhook-url", help="Webhook executor URL."),
    webhook_secret: str | None = typer.Option(None, "--webhook-secret", help="Signing secret."),
    image: str | None = typer.Option(None, "--k8s-image", help="Kubernetes executor image."),
    gpu_type: str | None = typer.Option(None, "--gpu-type", help="Kubernetes GPU type."),
    gpu_count: int | None = typer.Option(None, "--gpu-count", min=1),
    namespace: str | None = typer.Option(None, "--namespace", help="Kubernetes namespace."),
    command: list[str] | None = CommandArg,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a schedule. The job is a command (after --), a webhook or a Kubernetes Job."""
    executor = _executor(
        command, webhook_url, webhook_secret, image, gpu_type, gpu_count, namespace
    )
    if executor is None:
        fail(
            "Say what to run: a command after `--` (e.g. -- python train.py), "
            "--webhook-url/--webhook-secret, or --k8s-image."
        )
    with open_client(url, token) as client:
        s = client.create_schedule(
            name,
            experiment,
            cron,
            _params(params),
            executor=executor,
            timezone=timezone,
            description=description,
            overlap_policy=overlap,
            misfire_policy=misfire,
            misfire_grace_seconds=grace,
            timeout_seconds=timeout,
            paused=paused,
        )
    console.print(f"Created schedule {s.name} ({s.id}).")
    _show(s)


@app.command("list")
def list_(
    all_: bool = typer.Option(False, "--all", help="Include deleted schedules."),
    paused: bool | None = typer.Option(None, "--paused/--active", help="Only paused/active."),
    experiment: str | None = typer.Option(None, "--experiment", "-e"),
    url: Url = None,
    token: Token = None,
) -> None:
    """List schedules with their next fire and last execution."""
    with open_client(url, token) as client:
        items = client.list_schedules(experiment_id=experiment, paused=paused, include_deleted=all_)
    table = Table(title=f"{len(items)} schedule(s)")
    table.add_column("name", no_wrap=True)  # names are what people copy: never split
    for col in ("state", "when", "timezone", "experiment", "next fire", "last"):
        table.add_column(col, overflow="fold")
    for s in items:
        last = s.last_execution
        table.add_row(
            escape(s.name),
            _state(s),
            escape(s.cron_description),
            s.timezone,
            escape(s.experiment_name or "-"),
            fmt_time(s.next_fire_at),
            _status(last.status.value) if last else "-",
        )
    console.print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Schedule name or id."),
    url: Url = None,
    token: Token = None,
) -> None:
    """Show a schedule: cron in words, next fire times, job, policies."""
    with open_client(url, token) as client:
        _show(client.get_schedule(name))


@app.command("pause")
def pause(name: str, url: Url = None, token: Token = None) -> None:
    """Stop firing until resumed."""
    with open_client(url, token) as client:
        s = client.pause_schedule(name)
    console.print(f"Paused {s.name}.")


@app.command("resume")
def resume(name: str, url: Url = None, token: Token = None) -> None:
    """Fire again from now on (missed ticks are not run)."""
    with open_client(url, token) as client:
        s = client.resume_schedule(name)
    console.print(f"Resumed {s.name}; next fire {fmt_time(s.next_fire_at)}.")


@app.command("edit")
def edit(
    name: str = typer.Argument(..., help="Schedule name or id."),
    cron: str | None = typer.Option(None, "--cron", "-c"),
    timezone: str | None = typer.Option(None, "--tz"),
    experiment: str | None = typer.Option(None, "--experiment", "-e"),
    params: list[str] | None = ParamOpt,
    timeout: int | None = typer.Option(None, "--timeout", min=1),
    no_timeout: bool = typer.Option(False, "--no-timeout", help="Remove the timeout."),
    overlap: str | None = typer.Option(None, "--overlap"),
    misfire: str | None = typer.Option(None, "--misfire"),
    description: Description = None,
    webhook_url: str | None = typer.Option(None, "--webhook-url"),
    webhook_secret: str | None = typer.Option(None, "--webhook-secret"),
    image: str | None = typer.Option(None, "--k8s-image"),
    gpu_type: str | None = typer.Option(None, "--gpu-type"),
    gpu_count: int | None = typer.Option(None, "--gpu-count", min=1),
    namespace: str | None = typer.Option(None, "--namespace"),
    command: list[str] | None = CommandArg,
    url: Url = None,
    token: Token = None,
) -> None:
    """Change a schedule (--param replaces the whole configuration)."""
    if timeout is not None and no_timeout:
        fail("Give --timeout or --no-timeout, not both.")
    executor = _executor(
        command, webhook_url, webhook_secret, image, gpu_type, gpu_count, namespace
    )
    if executor is not None and executor.get("type") == "webhook" and not webhook_secret:
        executor["secret"] = "********"  # keep the stored secret
    kw: dict[str, Any] = {}
    if timeout is not None or no_timeout:
        kw["timeout_seconds"] = None if no_timeout else timeout
    with open_client(url, token) as client:
        s = client.update_schedule(
            name,
            cron=cron,
            timezone=timezone,
            experiment_id=experiment,
            config=_params(params),
            executor=executor,
            overlap_policy=overlap,
            misfire_policy=misfire,
            description=description,
            **kw,
        )
    console.print(f"Updated {s.name} (version {s.version}).")
    _show(s)


@app.command("delete")
def delete(name: str, yes: Yes = False, url: Url = None, token: Token = None) -> None:
    """Delete a schedule (its execution history and runs are kept)."""
    if not yes:
        typer.confirm(f"Delete schedule {name}? Its history and runs are kept.", abort=True)
    with open_client(url, token) as client:
        client.delete_schedule(name)
    console.print(f"Deleted schedule {name}.")


@app.command("trigger")
def trigger(name: str, url: Url = None, token: Token = None) -> None:
    """Run now (queued; a running server starts it within a tick)."""
    with open_client(url, token) as client:
        ex = client.trigger_schedule(name)
    console.print(f"Queued execution {ex.id} of {name}.")


@app.command("history")
def history(
    name: str = typer.Argument(..., help="Schedule name or id."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000),
    status: str | None = typer.Option(None, "--status", help="Only this status."),
    logs: bool = typer.Option(False, "--logs", help="Print each execution's log tail."),
    output: str = typer.Option(
        "table",
        "--output",
        "-o",
        help="table, or json (every field of every execution, for scripts).",
    ),
    url: Url = None,
    token: Token = None,
) -> None:
    """Execution history, newest first."""
    if output not in ("table", "json"):
        fail(f"Unknown --output {output!r}: use table or json.")
    with open_client(url, token) as client:
        items = client.list_schedule_executions(name, status=status, max_results=limit)
    if output == "json":
        # Plain stdout, not Rich: no markup, no wrapping, valid JSON whatever the width.
        typer.echo(json.dumps([ex.model_dump(mode="json") for ex in items], indent=2))
        return
    table = Table(title=f"{len(items)} execution(s) of {escape(name)}")
    for col in ("scheduled", "trigger", "status", "started", "duration", "exit"):
        table.add_column(col, no_wrap=True)
    table.add_column("run", overflow="fold")
    table.add_column("execution", no_wrap=True)  # the id `cancel` takes
    table.add_column("note", overflow="fold")
    for ex in items:
        table.add_row(
            fmt_time(ex.scheduled_time),
            ex.trigger.value,
            _status(ex.status.value),
            fmt_time(ex.started_at),
            _duration(ex),
            "-" if ex.exit_code is None else str(ex.exit_code),
            ex.run_id or "-",
            ex.id,
            escape(ex.message or ""),
        )
    if console.is_terminal:
        console.print(table)
    else:
        # Off a terminal (pipes, files, CI logs) Rich assumes 80 columns and would cut ids
        # and fold notes: print every value in full, one row per line.
        Console(width=100_000, highlight=False, soft_wrap=True).print(table)
    if logs:
        for ex in items:
            if ex.log_tail:
                console.rule(f"{ex.id} ({ex.status.value})")
                console.print(ex.log_tail, markup=False, highlight=False)


@app.command("cancel")
def cancel(
    execution_id: str = typer.Argument(..., help="Execution id (see history)."),
    url: Url = None,
    token: Token = None,
) -> None:
    """Cancel a queued or running execution."""
    with open_client(url, token) as client:
        ex = client.cancel_execution(execution_id)
    if ex.status.value == "cancelled":
        console.print(f"Cancelled {ex.id}.")
    else:
        console.print(f"Cancelling {ex.id}: the scheduler stops it within a tick.")

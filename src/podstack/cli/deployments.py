"""``podstack deployments``: deploy model versions, follow aliases, roll back, predict.

Goes through ``MLOpsClient``: the local store (embedded) by default, or a server with
``--url``/``--token`` (``PODSTACK_URL``/``PODSTACK_API_TOKEN``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from podstack.cli.common import Token, Url, console, fail, fmt_time, open_client, print_table
from podstack.schemas import deployments as sch

app = typer.Typer(
    no_args_is_help=True,
    help="Deployments: serve model versions over the Open Inference Protocol.",
)
targets_app = typer.Typer(no_args_is_help=True, help="Deployment targets (admins configure).")
app.add_typer(targets_app, name="targets")

NoWait = Annotated[bool, typer.Option("--no-wait", help="Return without waiting for ready.")]

_STATUS = {"ready": "green", "failed": "red", "stopped": "dim", "starting": "yellow"}


def _status(d: sch.Deployment) -> str:
    colour = _STATUS.get(d.status, "")
    return f"[{colour}]{d.status}[/]" if colour else d.status


def _served(d: sch.Deployment) -> str:
    text = f"v{d.version}" if d.version is not None else "-"
    if d.version != d.target_version:
        text += f" → v{d.target_version}"
    if d.alias:
        text += f" (@{d.alias})"
    return text


def _health(d: sch.Deployment) -> str:
    h = d.health
    if h is None:
        return "-"
    return f"{'ok' if h.ok else 'FAILING'} ({h.message}) at {fmt_time(h.at)}"


def _show(d: sch.Deployment) -> None:
    console.print(f"[bold]{escape(d.endpoint_name)}[/bold]  {_status(d)}")
    rows: list[tuple[str, Any]] = [
        ("model", f"{d.model_name} {_served(d)}"),
        ("format", d.format),
        ("target", f"{d.target} ({d.target_kind})"),
        ("production", "yes (Production or approved versions only)" if d.production else "no"),
        ("gpu", d.gpu_type or "cpu"),
        ("replicas", f"{d.min_replicas}-{d.max_replicas}"),
        ("endpoint", d.endpoint_url or "-"),
        ("infer", d.inference_url or "-"),
        ("reason", d.status_reason or "-"),
        ("health", _health(d)),
    ]
    if d.rollout is not None:
        rows.append(
            (
                "rollout",
                f"v{d.rollout.from_version} → v{d.rollout.to_version}: "
                f"{d.rollout.status}" + (f" ({d.rollout.reason})" if d.rollout.reason else ""),
            )
        )
    for k, v in rows:
        console.print(f"  {k:<9} {escape(str(v))}")


@app.command("list")
def list_cmd(
    model: Annotated[str | None, typer.Option("--model", help="Only this model's.")] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """List deployments with status, served version and endpoint URL."""
    with open_client(url, token) as c:
        deps = c.list_deployments(model_name=model)
    if not deps:
        console.print("No deployments.")
        return
    table = Table("endpoint", "status", "model", "version", "target", "replicas", "url")
    for d in deps:
        table.add_row(
            escape(d.endpoint_name),
            _status(d),
            escape(d.model_name),
            _served(d),
            d.target,
            f"{d.min_replicas}-{d.max_replicas}",
            d.endpoint_url or "-",
        )
    print_table(table)


@app.command("show")
def show(name: str, url: Url = None, token: Token = None) -> None:
    """Details of one deployment (health, last rollout, URLs)."""
    with open_client(url, token) as c:
        _show(c.get_deployment(name))


@app.command("create")
def create(
    model: str,
    endpoint: Annotated[str | None, typer.Option("--endpoint", "-e", help="Endpoint name.")] = None,
    version: Annotated[int | None, typer.Option("--version", "-v")] = None,
    alias: Annotated[str | None, typer.Option("--alias", help="Follow this alias.")] = None,
    gpu_type: Annotated[str | None, typer.Option("--gpu-type")] = None,
    min_replicas: Annotated[int, typer.Option("--min-replicas")] = 1,
    max_replicas: Annotated[int, typer.Option("--max-replicas")] = 1,
    target: Annotated[str | None, typer.Option("--target")] = None,
    production: Annotated[
        bool,
        typer.Option(
            "--production",
            help="Production endpoint: serves only Production (or approved) versions; other "
            "versions open an approval request.",
        ),
    ] = False,
    no_wait: NoWait = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Deploy a model version (or follow an alias) behind an endpoint."""
    with open_client(url, token) as c:
        d = c.deploy_model(
            model,
            version=version,
            endpoint_name=endpoint,
            gpu_type=gpu_type,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            alias=alias,
            target=target,
            production=production,
            wait=not no_wait,
        )
    _show(d)


@app.command("update")
def update(
    name: str,
    version: Annotated[int | None, typer.Option("--version", "-v")] = None,
    alias: Annotated[str | None, typer.Option("--alias")] = None,
    gpu_type: Annotated[str | None, typer.Option("--gpu-type")] = None,
    min_replicas: Annotated[int | None, typer.Option("--min-replicas")] = None,
    max_replicas: Annotated[int | None, typer.Option("--max-replicas")] = None,
    production: Annotated[
        bool | None,
        typer.Option(
            "--production/--no-production",
            help="Mark as a production endpoint (unmarking: admins only).",
        ),
    ] = None,
    no_wait: NoWait = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Serve another version/alias or rescale; the old server keeps serving until then."""
    with open_client(url, token) as c:
        d = c.update_deployment(
            name,
            version=version,
            alias=alias,
            gpu_type=gpu_type,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            production=production,
            wait=not no_wait,
        )
    _show(d)


@app.command("rollback")
def rollback(name: str, no_wait: NoWait = False, url: Url = None, token: Token = None) -> None:
    """Go back to the previously served version."""
    with open_client(url, token) as c:
        _show(c.rollback_deployment(name, wait=not no_wait))


@app.command("stop")
def stop(name: str, url: Url = None, token: Token = None) -> None:
    """Stop serving (the deployment is kept; `start` resumes it)."""
    with open_client(url, token) as c:
        _show(c.stop_deployment(name))


@app.command("start")
def start(name: str, no_wait: NoWait = False, url: Url = None, token: Token = None) -> None:
    """Start a stopped (or failed) deployment again."""
    with open_client(url, token) as c:
        _show(c.start_deployment(name, wait=not no_wait))


@app.command("delete")
def delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Stop and remove a deployment."""
    if not yes and not typer.confirm(f"Delete deployment {name}?"):
        raise typer.Exit(1)
    with open_client(url, token) as c:
        c.delete_deployment(name)
    console.print(f"Deleted deployment {escape(name)}.")


@app.command("predict")
def predict(
    name: str,
    inputs: Annotated[
        str, typer.Argument(help="JSON: an array, {name: array}, a V2 request, or @file.json")
    ],
    url: Url = None,
    token: Token = None,
) -> None:
    """Run inference and print the outputs as JSON."""
    text = Path(inputs[1:]).read_text() if inputs.startswith("@") else inputs
    try:
        value = json.loads(text)
    except ValueError as exc:
        fail(f"inputs must be JSON: {exc}")
    with open_client(url, token) as c:
        res = c.predict(name, value)
    console.print_json(res.model_dump_json())


@targets_app.command("list")
def targets_list(url: Url = None, token: Token = None) -> None:
    """Targets with their kind, GPU types and whether pickles are trusted."""
    with open_client(url, token) as c:
        targets = c.list_deployment_targets()
    table = Table("name", "kind", "default", "gpu types", "trusted formats")
    for t in targets:
        table.add_row(
            t.name,
            t.kind,
            "yes" if t.is_default else "",
            ", ".join(t.gpu_types),
            "yes" if t.trusted_formats else "no",
        )
    print_table(table)


@targets_app.command("set")
def targets_set(
    name: str,
    kind: Annotated[str, typer.Option("--kind", help="local | kubernetes")] = "local",
    config: Annotated[str, typer.Option("--config", help="JSON object")] = "{}",
    default: Annotated[bool, typer.Option("--default", help="Make it the default.")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create or replace a target (admins)."""
    try:
        conf = json.loads(config)
    except ValueError as exc:
        fail(f"--config must be a JSON object: {exc}")
    if not isinstance(conf, dict):
        fail("--config must be a JSON object.")
    with open_client(url, token) as c:
        t = c.set_deployment_target(name, kind, conf, is_default=default)
    console.print(f"Target {t.name} ({t.kind}) saved; GPU types: {', '.join(t.gpu_types)}.")

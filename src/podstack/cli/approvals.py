"""``podstack approvals|policies|groups|webhooks``: approval workflows from a terminal.

Everything goes through ``MLOpsClient``: the local store (embedded) by default, or a server
with ``--url``/``--token`` (``PODSTACK_URL``/``PODSTACK_API_TOKEN``). Approving and rejecting
act as the token's user, so reviewers use their own token.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from podstack.cli.common import (
    Token,
    Url,
    console,
    fmt_time,
    list_table,
    open_client,
    print_secret,
    print_table,
)
from podstack.schemas import approvals as sch

app = typer.Typer(
    no_args_is_help=True,
    help="Approval requests: list, show, request, approve, reject, cancel, comment.",
)
policies_app = typer.Typer(
    no_args_is_help=True, help="Approval policies (default and per model): get, set, list."
)
groups_app = typer.Typer(no_args_is_help=True, help="Reviewer groups: list, create, members.")
webhooks_app = typer.Typer(
    no_args_is_help=True, help="Webhooks: list, create, delete, test, deliveries."
)

Comment = Annotated[str | None, typer.Option("--comment", "-m", help="A comment for the thread.")]

_STATUS_COLOURS = {
    "pending": "yellow",
    "approved": "green",
    "rejected": "red",
    "cancelled": "dim",
    "stale": "magenta",
}


def _status(status: str) -> str:
    colour = _STATUS_COLOURS.get(status, "")
    return f"[{colour}]{status}[/]" if colour else status


def _version_arg(value: str) -> int | str:
    return int(value) if value.strip().isdigit() else value


# ---------------------------------------------------------------- requests


@app.command("list")
def list_requests(
    status: Annotated[
        str | None,
        typer.Option("--status", "-s", help="pending | approved | rejected | cancelled | stale"),
    ] = "pending",
    all_: Annotated[bool, typer.Option("--all", "-a", help="Every status.")] = False,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """List approval requests (pending ones unless --status or --all)."""
    with open_client(url, token) as c:
        rows = c.list_approval_requests(status=None if all_ else status, model_name=model)
    table = list_table(
        f"{len(rows)} request(s)",
        ("id", "model", "version", "transition", "requester", "status", "approvals", "created"),
    )
    for r in rows:
        table.add_row(
            r.id,
            escape(r.model_name),
            f"v{r.version}",
            f"{r.from_stage} → {r.to_stage}",
            escape(r.requester),
            _status(r.status),
            f"{r.approvals}/{r.required_approvals}",
            fmt_time(r.created_at),
        )
    print_table(table)


def _show(r: sch.ApprovalRequestDetail) -> None:
    console.print(
        f"[bold]{escape(r.id)}[/bold]  {escape(r.model_name)} v{r.version}  "
        f"{r.from_stage} → {r.to_stage}  {_status(r.status)}"
    )
    console.print(
        f"Requested by {escape(r.requester)} on {fmt_time(r.created_at)}"
        + (" (archive existing)" if r.archive_existing else "")
    )
    if r.status_reason:
        console.print(f"Status: {escape(r.status_reason)}")
    console.print(
        f"Approvals: {r.approvals}/{r.required_approvals}"
        + (f" by {', '.join(r.approved_by)}" if r.approved_by else "")
        + f"; reviewers: {escape(', '.join(r.reviewers) or 'none')}"
    )
    results = r.current_gate_results or r.gate_results
    if results:
        console.print("Gates:")
        for g in results:
            mark = "[green]pass[/]" if g.passed else "[red]FAIL[/]"
            console.print(f"  {mark}  {escape(g.expression)}: {escape(g.message)}")
    if r.kind != "stage" and r.action:
        console.print(f"Change ({r.kind}): {escape(str(r.subject))} {escape(str(r.action))}")
    if r.blocked_reason:
        console.print(f"[red]Cannot be approved:[/] {escape(r.blocked_reason)}")
    if r.metrics and (r.metrics.metrics or r.metrics.production_metrics):
        prod = r.metrics.production_version
        table = Table(title="Metrics")
        table.add_column("metric")
        table.add_column(f"v{r.version}")
        table.add_column(f"Production (v{prod})" if prod else "Production (none)")
        for key in sorted(set(r.metrics.metrics) | set(r.metrics.production_metrics)):
            mine = r.metrics.metrics.get(key)
            theirs = r.metrics.production_metrics.get(key)
            table.add_row(
                escape(key),
                "-" if mine is None else f"{mine:.6g}",
                "-" if theirs is None else f"{theirs:.6g}",
            )
        print_table(table)
    if r.metrics and (r.metrics.provenance or r.metrics.production_provenance):
        prov = Table(title="Metric provenance (what gates read)")
        for col in ("version", "metric", "value", "source", "logged by", "when", "used"):
            prov.add_column(col)
        pv = r.metrics.production_version
        for label, items in (
            (f"v{r.version}", r.metrics.provenance),
            (f"v{pv}", r.metrics.production_provenance),
        ):
            for p in items:
                prov.add_row(
                    label,
                    escape(p.key),
                    str(p.value),
                    "run" if p.source == "run" else "validation",
                    escape(p.logged_by or "unknown"),
                    fmt_time(p.logged_at) if p.logged_at else "-",
                    "yes" if p.counted else f"no ({escape(p.reason or '')})",
                )
        print_table(prov)
    for c in r.comments:
        body = f": {escape(c.body)}" if c.body else ""
        console.print(f"  {fmt_time(c.at)}  {escape(c.author)} [{c.kind}]{body}", markup=True)


@app.command("show")
def show(request_id: str, url: Url = None, token: Token = None) -> None:
    """Show a request: gates, metrics beside the Production version's, the comment thread."""
    with open_client(url, token) as c:
        _show(c.get_approval_request(request_id))


@app.command("request")
def request(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version number or models:/ reference.")],
    stage: Annotated[str, typer.Argument(help="None | Staging | Production | Archived")],
    note: Annotated[str | None, typer.Option("--note", "-m", help="Why.")] = None,
    archive_existing: Annotated[
        bool, typer.Option("--archive-existing", help="Archive what is in that stage now.")
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Open an approval request for a stage transition."""
    with open_client(url, token) as c:
        r = c.request_stage_transition(
            model, _version_arg(version), stage, note=note, archive_existing=archive_existing
        )
    console.print(
        f"Opened request [bold]{r.id}[/bold]: {escape(r.model_name)} v{r.version} "
        f"{r.from_stage} → {r.to_stage}; needs {r.required_approvals} approval(s) from "
        f"{escape(', '.join(r.reviewers))}."
    )


@app.command("approve")
def approve(request_id: str, comment: Comment = None, url: Url = None, token: Token = None) -> None:
    """Approve as the token's user (applies the transition when the quorum is reached)."""
    with open_client(url, token) as c:
        r = c.approve_request(request_id, comment)
    if r.status == "approved" and r.kind != "stage":
        console.print(f"Approved and carried out: {escape(str(r.subject))} (v{r.version}).")
    elif r.status == "approved":
        console.print(f"Approved: {escape(r.model_name)} v{r.version} is now in {r.to_stage}.")
    else:
        console.print(f"Approval recorded ({r.approvals}/{r.required_approvals}); still pending.")


@app.command("reject")
def reject(
    request_id: str,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why (required).")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Reject (a comment is required)."""
    with open_client(url, token) as c:
        c.reject_request(request_id, comment)
    console.print(f"Rejected {escape(request_id)}.")


@app.command("cancel")
def cancel(request_id: str, comment: Comment = None, url: Url = None, token: Token = None) -> None:
    """Withdraw your pending request."""
    with open_client(url, token) as c:
        c.cancel_request(request_id, comment)
    console.print(f"Cancelled {escape(request_id)}.")


@app.command("comment")
def comment(request_id: str, text: str, url: Url = None, token: Token = None) -> None:
    """Add a comment to a request's thread."""
    with open_client(url, token) as c:
        c.comment_on_request(request_id, text)
    console.print("Comment added.")


# ---------------------------------------------------------------- policies


def _print_policy(p: sch.ApprovalPolicy) -> None:
    where = f"model {p.model_name}" if p.model_name else "default"
    own = "" if p.model_name is None else f" ({p.source} policy)"
    console.print(f"[bold]Approval policy: {escape(where)}[/bold]{own}")
    console.print(f"  gated stages:       {', '.join(p.gated_stages) or 'none'}")
    console.print(f"  reviewers:          {escape(', '.join(p.reviewers) or '-')}")
    console.print(f"  reviewer groups:    {escape(', '.join(p.reviewer_groups) or '-')}")
    console.print(f"  required approvals: {p.required_approvals}")
    console.print(f"  gates:              {escape('; '.join(p.gates) or '-')}")
    console.print(f"  gated aliases:      {escape(', '.join(p.gated_aliases) or 'none')}")
    if not p.reviewers and not p.reviewer_groups:
        console.print("  (no reviewers designated: admins review)")


@policies_app.command("get")
def policies_get(
    model: Annotated[str | None, typer.Argument(help="Model (omit for the default).")] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Show the policy that applies to MODEL, or the default policy."""
    with open_client(url, token) as c:
        _print_policy(c.get_approval_policy(model))


@policies_app.command("set")
def policies_set(
    model: Annotated[str | None, typer.Argument(help="Model (omit for the default).")] = None,
    stage: Annotated[
        list[str] | None, typer.Option("--stage", help="Gated target stage (repeatable).")
    ] = None,
    reviewer: Annotated[
        list[str] | None, typer.Option("--reviewer", "-r", help="Reviewer username (repeatable).")
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Reviewer group (repeatable).")
    ] = None,
    required: Annotated[int, typer.Option("--required", "-n", help="Approvals needed.")] = 1,
    gate: Annotated[
        list[str] | None,
        typer.Option("--gate", help="Metric gate, e.g. 'accuracy >= 0.9' (repeatable)."),
    ] = None,
    gated_alias: Annotated[
        list[str] | None,
        typer.Option(
            "--gated-alias",
            help="Alias whose set/move/delete needs approval, e.g. champion (repeatable).",
        ),
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Replace MODEL's policy (or the default). No --stage means nothing is gated."""
    with open_client(url, token) as c:
        p = c.set_approval_policy(
            model,
            gated_stages=stage or [],
            reviewers=reviewer or [],
            reviewer_groups=group or [],
            required_approvals=required,
            gates=gate or [],
            gated_aliases=gated_alias or [],
        )
    _print_policy(p)


@policies_app.command("delete")
def policies_delete(model: str, url: Url = None, token: Token = None) -> None:
    """Drop MODEL's own policy (the default applies again)."""
    with open_client(url, token) as c:
        c.delete_approval_policy(model)
    console.print(f"{escape(model)} follows the default policy again.")


@policies_app.command("list")
def policies_list(url: Url = None, token: Token = None) -> None:
    """The default policy and every model's own policy."""
    with open_client(url, token) as c:
        rows = c.list_approval_policies()
    table = list_table(
        f"{len(rows)} polic{'y' if len(rows) == 1 else 'ies'}",
        ("model", "gated stages", "reviewers", "groups", "required", "gates"),
    )
    for p in rows:
        table.add_row(
            escape(p.model_name or "(default)"),
            ", ".join(p.gated_stages) or "-",
            escape(", ".join(p.reviewers) or "-"),
            escape(", ".join(p.reviewer_groups) or "-"),
            str(p.required_approvals),
            escape("; ".join(p.gates) or "-"),
        )
    print_table(table)


# ---------------------------------------------------------------- groups


@groups_app.command("list")
def groups_list(url: Url = None, token: Token = None) -> None:
    with open_client(url, token) as c:
        rows = c.list_groups()
    table = list_table(f"{len(rows)} group(s)", ("name", "members", "description"))
    for g in rows:
        table.add_row(
            escape(g.name), escape(", ".join(g.members) or "-"), escape(g.description or "")
        )
    print_table(table)


@groups_app.command("create")
def groups_create(
    name: str,
    member: Annotated[
        list[str] | None, typer.Option("--member", "-u", help="Username (repeatable).")
    ] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    with open_client(url, token) as c:
        g = c.create_group(name, member or [], description)
    console.print(f"Created group {escape(g.name)} ({len(g.members)} member(s)).")


@groups_app.command("delete")
def groups_delete(name: str, url: Url = None, token: Token = None) -> None:
    with open_client(url, token) as c:
        c.delete_group(name)
    console.print(f"Deleted group {escape(name)}.")


@groups_app.command("add-member")
def groups_add(group: str, username: str, url: Url = None, token: Token = None) -> None:
    with open_client(url, token) as c:
        g = c.add_group_member(group, username)
    console.print(f"{escape(g.name)}: {escape(', '.join(g.members))}")


@groups_app.command("remove-member")
def groups_remove(group: str, username: str, url: Url = None, token: Token = None) -> None:
    with open_client(url, token) as c:
        g = c.remove_group_member(group, username)
    console.print(f"{escape(g.name)}: {escape(', '.join(g.members) or '(no members)')}")


# ---------------------------------------------------------------- webhooks


@webhooks_app.command("list")
def webhooks_list(url: Url = None, token: Token = None) -> None:
    with open_client(url, token) as c:
        rows = c.list_webhooks()
    table = list_table(
        f"{len(rows)} webhook(s)", ("id", "url", "events", "models", "enabled", "description")
    )
    for w in rows:
        table.add_row(
            w.id,
            escape(w.url),
            ", ".join(w.events),
            escape(", ".join(w.model_names) or "*"),
            "yes" if w.enabled else "no",
            escape(w.description or ""),
        )
    print_table(table)


@webhooks_app.command("create")
def webhooks_create(
    target: Annotated[str, typer.Argument(metavar="URL", help="http(s) URL to POST to.")],
    event: Annotated[
        list[str] | None,
        typer.Option("--event", "-e", help="Event type or family like 'stage.*' (repeatable)."),
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Only events of this model (repeatable).")
    ] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Register an endpoint; prints the signing secret once."""
    with open_client(url, token) as c:
        w = c.create_webhook(
            target, event or ["*"], model_names=model or [], description=description
        )
    console.print(f"Created webhook [bold]{w.id}[/bold] for {', '.join(w.events)}.")
    print_secret("Signing secret", w.secret)


@webhooks_app.command("delete")
def webhooks_delete(webhook_id: str, url: Url = None, token: Token = None) -> None:
    with open_client(url, token) as c:
        c.delete_webhook(webhook_id)
    console.print(f"Deleted webhook {escape(webhook_id)}.")


@webhooks_app.command("test")
def webhooks_test(webhook_id: str, url: Url = None, token: Token = None) -> None:
    """Send a signed webhook.test delivery now and show what the receiver answered."""
    with open_client(url, token) as c:
        d = c.test_webhook(webhook_id)
    attempt = d.attempt_log[-1] if d.attempt_log else None
    if d.status == "delivered":
        code = attempt.status_code if attempt else "?"
        console.print(f"[green]Delivered[/] (HTTP {code}) as {d.id}.")
    else:
        why = d.last_error or "no answer"
        console.print(f"[red]Not delivered[/]: {escape(why)} ({d.id}).")
        raise typer.Exit(1)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    webhook_id: str,
    status: Annotated[
        str | None, typer.Option("--status", help="pending | delivered | failed")
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Recent deliveries with their attempts."""
    with open_client(url, token) as c:
        rows = c.list_webhook_deliveries(webhook_id, status=status)
    table = list_table(
        f"{len(rows)} deliveries", ("id", "event", "status", "attempts", "last answer", "created")
    )
    for d in rows:
        answer = (
            f"HTTP {d.last_status_code}" if d.last_status_code is not None else d.last_error or "-"
        )
        table.add_row(
            d.id,
            d.event_type,
            d.status,
            f"{d.attempts}/{d.max_attempts}",
            escape(answer),
            fmt_time(d.created_at),
        )
    print_table(table)

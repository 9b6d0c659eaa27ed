"""``podstack tokens``: API tokens, directly in the configured database."""

from __future__ import annotations

import typer
from rich.markup import escape

from podstack.cli.accounts import ExpiresInDays, Quiet, TokenLabel, print_issued_token
from podstack.cli.common import (
    cli_principal,
    console,
    fmt_time,
    list_table,
    local_database,
    print_table,
)
from podstack.schemas.auth import TokenOut
from podstack.server.auth import service

app = typer.Typer(
    no_args_is_help=True,
    help="Manage API tokens directly in the database (no server or token needed).",
)


@app.command("create")
def create(
    username: str = typer.Argument(..., help="The user the token acts as."),
    name: TokenLabel = "cli",
    expires_in_days: ExpiresInDays = None,
    quiet: Quiet = False,
) -> None:
    """Create an API token. The value is printed once and cannot be shown again."""
    with local_database() as db, db.session() as s:
        issued = service.issue_token(
            s, cli_principal(), name, username=username, expires_in_days=expires_in_days
        )
        tok = TokenOut.model_validate(issued.token)
    print_issued_token(
        issued.value,
        f"Created token {tok.id} ({tok.name!r}) for {tok.username}; "
        f"expires: {fmt_time(tok.expires_at, 'never')}.",
        quiet=quiet,
    )


@app.command("list")
def list_(
    user: str | None = typer.Option(None, "--user", "-u", help="Only this user's tokens."),
) -> None:
    """List tokens (metadata only: values are never stored, only their hashes)."""
    with local_database() as db, db.session(readonly=True) as s:
        rows = service.visible_tokens(s, cli_principal(), username=user, all_users=user is None)
        tokens = [TokenOut.model_validate(t) for t in rows]
    if not tokens:
        console.print("No tokens. Create one with `podstack tokens create USERNAME`.")
        return
    table = list_table(
        f"{len(tokens)} token(s)",
        ("id", "user", "name", "prefix", "status", "created", "expires", "last used"),
    )
    colour = {"active": "green", "revoked": "red", "expired": "yellow"}
    for t in tokens:
        table.add_row(
            str(t.id),
            t.username,
            escape(t.name),
            escape(t.prefix) + "…" if t.prefix else "(chosen value)",
            f"[{colour[t.status]}]{t.status}[/]",
            fmt_time(t.created_at),
            fmt_time(t.expires_at, "never"),
            fmt_time(t.last_used_at, "never"),
        )
    print_table(table)


@app.command("revoke")
def revoke(
    token_id: int = typer.Argument(..., help="The id shown by `podstack tokens list`."),
) -> None:
    """Revoke a token: it stops working immediately."""
    with local_database() as db, db.session() as s:
        tok = service.revoke_token(s, cli_principal(), token_id)
        owner = tok.username
    console.print(f"Revoked token {token_id} of {owner}.")

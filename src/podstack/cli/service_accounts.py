"""``podstack service-accounts``: non-human accounts for automation, directly in the database.

Like ``podstack users`` these need no running server or token: whoever can reach the database
(the operator on the box) manages them. The SDK (``MLOpsClient.create_service_account``) and
the REST API (``/api/v1/service-accounts``) do the same for admins over the network.
"""

from __future__ import annotations

import typer
from rich.markup import escape

from podstack.cli.accounts import (
    AccountName,
    ExpiresInDays,
    Quiet,
    RoleArgument,
    RoleOption,
    TokenLabel,
    print_issued_token,
)
from podstack.cli.common import (
    Description,
    cli_actor,
    cli_principal,
    console,
    fmt_time,
    list_table,
    local_database,
    print_secret,
    print_table,
)
from podstack.schemas.auth import TokenOut
from podstack.server.auth import service_accounts

app = typer.Typer(
    no_args_is_help=True,
    help="Service accounts: non-human users with API tokens (e.g. for CI pipelines).",
)


@app.command("create")
def create(
    name: AccountName,
    role: RoleOption = "viewer",
    description: Description = None,
    with_token: bool = typer.Option(
        False, "--with-token", help="Also issue an API token and print it (once)."
    ),
) -> None:
    """Create a service account. It authenticates with API tokens only."""
    with local_database() as db, db.session() as s:
        account = service_accounts.create(s, cli_actor(), name, role, description)
        issued = (
            service_accounts.issue_token(s, cli_principal(), name, "cli") if with_token else None
        )
    console.print(f"Created service account [bold]{account.username}[/bold] ({account.role}).")
    if issued is not None:
        print_secret("API token", issued.value)


@app.command("list")
def list_() -> None:
    """List service accounts."""
    with local_database() as db, db.session(readonly=True) as s:
        accounts = [service_accounts.to_out(a) for a in service_accounts.list_all(s)]
    if not accounts:
        console.print("No service accounts. Create one with `podstack service-accounts create`.")
        return
    table = list_table(
        f"{len(accounts)} service account(s)", ("name", "role", "status", "description", "created")
    )
    for a in accounts:
        table.add_row(
            a.name,
            a.role,
            "[red]disabled[/red]" if a.disabled else "active",
            escape(a.description or "-"),
            fmt_time(a.created_at),
        )
    print_table(table)


@app.command("token")
def token(
    name: str = typer.Argument(..., help="The service account."),
    token_name: TokenLabel = "cli",
    expires_in_days: ExpiresInDays = None,
    quiet: Quiet = False,
) -> None:
    """Issue an API token to a service account. The value is printed once."""
    with local_database() as db, db.session() as s:
        issued = service_accounts.issue_token(
            s, cli_principal(), name, token_name, expires_in_days=expires_in_days
        )
        tok = TokenOut.model_validate(issued.token)
    print_issued_token(
        issued.value,
        f"Issued token {tok.id} ({tok.name!r}) to {tok.username}; "
        f"expires: {fmt_time(tok.expires_at, 'never')}. Revoke it with "
        f"`podstack tokens revoke {tok.id}`.",
        quiet=quiet,
    )


@app.command("set-role")
def set_role(name: str, role: RoleArgument) -> None:
    """Change a service account's role."""
    with local_database() as db, db.session() as s:
        account = service_accounts.update(s, cli_actor(), name, {"role": role})
    console.print(f"{account.username} is now {account.role}.")


@app.command("disable")
def disable(name: str) -> None:
    """Disable a service account: its tokens stop working until it is enabled again."""
    with local_database() as db, db.session() as s:
        service_accounts.update(s, cli_actor(), name, {"disabled": True})
    console.print(f"Disabled {name}.")


@app.command("enable")
def enable(name: str) -> None:
    """Enable a disabled service account again."""
    with local_database() as db, db.session() as s:
        service_accounts.update(s, cli_actor(), name, {"disabled": False})
    console.print(f"Enabled {name}.")

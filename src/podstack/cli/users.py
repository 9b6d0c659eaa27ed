"""``podstack users``: manage accounts directly in the configured database.

These commands do not need a running server or a token: whoever can reach the database
(the operator on the box) can create the first users.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from podstack.cli.accounts import AccountName, RoleArgument, RoleOption
from podstack.cli.common import (
    cli_actor,
    cli_principal,
    console,
    fmt_time,
    list_table,
    local_database,
    print_secret,
    print_table,
)
from podstack.server.auth import service

app = typer.Typer(
    no_args_is_help=True,
    help="Manage users directly in the database (no server or token needed).",
)


def _read_password(stdin: bool) -> str:
    if stdin:
        # First line only, so `echo secret | podstack users ...` works.
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@app.command("create")
def create(
    username: AccountName,
    role: RoleOption = "viewer",
    email: str | None = typer.Option(None, "--email"),
    display_name: str | None = typer.Option(None, "--display-name"),
    password: bool = typer.Option(
        False, "--password", "-p", help="Prompt for a password (for signing in to the UI)."
    ),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin."
    ),
    with_token: bool = typer.Option(
        False, "--with-token", help="Also create an API token and print it (once)."
    ),
) -> None:
    """Create a user. Without a password the user signs in with API tokens only."""
    secret = _read_password(password_stdin) if (password or password_stdin) else None
    with local_database() as db, db.session() as s:
        user = service.create_user(
            s,
            cli_actor(),
            username,
            role=role,
            password=secret,
            email=email,
            display_name=display_name,
        )
        issued = (
            service.issue_token(s, cli_principal(), "cli", username=username)
            if with_token
            else None
        )
    console.print(f"Created user [bold]{user.username}[/bold] with role {user.role}.")
    if issued is not None:
        print_secret("API token", issued.value)


@app.command("list")
def list_() -> None:
    """List all users."""
    with local_database() as db, db.session(readonly=True) as s:
        users = service.list_users(s)
        if not users:
            console.print(
                "No users yet. `podstack server` creates admin at first start, or run "
                "`podstack users create NAME --role admin --with-token`."
            )
            return
        table = list_table(
            f"{len(users)} user(s)",
            ("username", "role", "status", "email", "display name", "password", "created"),
        )
        for u in users:
            table.add_row(
                u.username,
                u.role,
                "[red]disabled[/red]" if u.disabled else "active",
                escape(u.email or "-"),
                escape(u.display_name or "-"),
                "yes" if u.has_password else "no",
                fmt_time(u.created_at),
            )
    print_table(table)


@app.command("set-role")
def set_role(username: str, role: RoleArgument) -> None:
    """Change a user's role."""
    with local_database() as db, db.session() as s:
        user = service.set_role(s, cli_actor(), username, role)
    console.print(f"{user.username} is now {user.role}.")


@app.command("disable")
def disable(username: str) -> None:
    """Disable a user: their tokens and sessions stop working until re-enabled."""
    with local_database() as db, db.session() as s:
        service.set_disabled(s, cli_actor(), username, True)
    console.print(f"Disabled {username}.")


@app.command("enable")
def enable(username: str) -> None:
    """Re-enable a disabled user."""
    with local_database() as db, db.session() as s:
        service.set_disabled(s, cli_actor(), username, False)
    console.print(f"Enabled {username}.")


@app.command("set-password")
def set_password(
    username: str,
    stdin: bool = typer.Option(
        False, "--stdin", help="Read the password from the first line of stdin."
    ),
) -> None:
    """Set (or reset) a user's password for signing in to the UI."""
    secret = _read_password(stdin)
    with local_database() as db, db.session() as s:
        service.set_password(s, cli_actor(), username, secret)
    console.print(f"Password set for {username}.")

"""What the account commands (``podstack users``, ``service-accounts``, ``tokens``) share: the
role and name arguments, the options for issuing an API token, and how an issued token is
shown."""

from __future__ import annotations

from typing import Annotated

import typer

from podstack.cli.common import console, print_secret
from podstack.server.auth.principal import ROLES

_ROLE_HELP = f"One of: {', '.join(ROLES)}."

AccountName = Annotated[str, typer.Argument(help="1-64 letters, digits, '.', '_' or '-'.")]
RoleOption = Annotated[str, typer.Option("--role", "-r", help=_ROLE_HELP)]
RoleArgument = Annotated[str, typer.Argument(help=_ROLE_HELP)]

TokenLabel = Annotated[str, typer.Option("--name", "-n", help="A label to tell tokens apart.")]
ExpiresInDays = Annotated[
    int | None,
    typer.Option(
        "--expires-in-days", "-e", min=1, help="Expire after this many days (default never)."
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the token (for scripts).")]


def print_issued_token(value: str, summary: str, *, quiet: bool) -> None:
    """``--quiet`` prints the token alone, for scripts to capture; otherwise ``summary`` (what
    was issued, printed without markup), then the token itself, once."""
    if quiet:
        console.print(value, soft_wrap=True, markup=False)
        return
    console.print(summary, markup=False)
    print_secret("Token", value)

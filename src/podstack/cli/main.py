"""The ``podstack`` command. Each group lives in its own module; register yours with one line."""

from __future__ import annotations

import typer

from podstack.cli import backup, db, server, tokens, users
from podstack.cli.common import PodstackGroup

app = typer.Typer(
    name="podstack",
    cls=PodstackGroup,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Podstack MLOps: model registry, experiment tracking and deployment.",
)

app.command("server")(server.serve)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(tokens.app, name="tokens")
app.command("backup")(backup.backup)
app.command("restore")(backup.restore)
app.command("verify-backup")(backup.verify_backup)

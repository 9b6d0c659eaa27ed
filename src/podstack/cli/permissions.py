"""``podstack models permissions`` and ``podstack experiments permissions``: who may read,
change and manage a registered model or an experiment (show, grant, revoke).

Both go through ``MLOpsClient`` (the local store by default, or ``--url``/``--token``); the
server decides who may manage grants (MANAGE on the resource) and answers an unknown user,
group, model or experiment with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape

from podstack.cli.common import (
    Token,
    Url,
    Yes,
    console,
    fail,
    fmt_time,
    list_table,
    open_client,
    print_table,
)
from podstack.schemas.permissions import Grant, ResourcePermissions


class Level(StrEnum):
    # An Enum so Typer lists the choices and refuses anything else before any request.
    READ = "READ"
    EDIT = "EDIT"
    MANAGE = "MANAGE"


User = Annotated[str | None, typer.Option("--user", "-u", help="A user (or service account) name.")]
Group = Annotated[
    str | None,
    typer.Option("--group", "-g", help="A reviewer group or a directory (SSO) group."),
]
Permission = Annotated[
    Level,
    typer.Option(
        "--permission",
        "-p",
        case_sensitive=False,
        help="READ: see it; EDIT: also change it; MANAGE: also delete it and manage grants.",
    ),
]

experiments_app = typer.Typer(no_args_is_help=True, help="Experiments: permissions.")
model_permissions_app = typer.Typer(
    no_args_is_help=True, help="Who may read, change and manage a model: show, grant, revoke."
)
experiment_permissions_app = typer.Typer(
    no_args_is_help=True,
    help="Who may read, change and manage an experiment: show, grant, revoke.",
)
experiments_app.add_typer(experiment_permissions_app, name="permissions")


def _grantee(user: str | None, group: str | None) -> tuple[str, str]:
    """Exactly one of --user/--group, checked before anything is sent (exit 2: a usage
    error, like Typer's own)."""
    if (user is None) == (group is None):
        fail("Give exactly one grantee: --user NAME or --group NAME.", code=2)
    if user is not None:
        return "user", user
    assert group is not None
    return "group", group


def _show(what: str, perms: ResourcePermissions) -> None:
    console.print(f"[bold]{escape(what)}[/bold]")
    console.print(f"Owner: {escape(perms.owner or '-')} (holds MANAGE)")
    console.print(f"Everyone else: {perms.default_permission} (the server's default permission)")
    if not perms.grants:
        console.print("No grants.")
        return
    table = list_table(
        f"{len(perms.grants)} grant(s)",
        ("type", "grantee", "permission", "granted by", "granted at"),
    )
    for g in perms.grants:
        table.add_row(
            g.grantee_type,
            escape(g.grantee),
            g.permission,
            escape(g.granted_by),
            fmt_time(g.granted_at),
        )
    print_table(table)


def _granted(what: str, g: Grant) -> None:
    who = f"{g.grantee_type.capitalize()} {escape(g.grantee)}"
    console.print(f"{who} now holds {g.permission} on {escape(what)}.")


def _confirm_revoke(yes: bool, gtype: str, name: str, what: str) -> None:
    if not yes:
        typer.confirm(f"Revoke {gtype} {name!r}'s grant on {what}?", abort=True)


# ---------------------------------------------------------------- models


@model_permissions_app.command("show")
def model_show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Show the model's owner, the default permission and every grant (needs MANAGE)."""
    with open_client(url, token) as c:
        perms = c.get_model_permissions(name)
    _show(f"model {name}", perms)


@model_permissions_app.command("grant")
def model_grant(
    name: Annotated[str, typer.Argument(help="Model name.")],
    user: User = None,
    group: Group = None,
    permission: Permission = Level.READ,
    url: Url = None,
    token: Token = None,
) -> None:
    """Give a user or group READ, EDIT or MANAGE on the model (replaces what it held)."""
    gtype, grantee = _grantee(user, group)
    with open_client(url, token) as c:
        g = _grant(c.grant_model_permission, name, gtype, grantee, permission)
    _granted(f"model {name}", g)


@model_permissions_app.command("revoke")
def model_revoke(
    name: Annotated[str, typer.Argument(help="Model name.")],
    user: User = None,
    group: Group = None,
    yes: Yes = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Remove a user's or group's grant on the model."""
    gtype, grantee = _grantee(user, group)
    _confirm_revoke(yes, gtype, grantee, f"model {name!r}")
    with open_client(url, token) as c:
        c.revoke_model_permission(name, **{gtype: grantee})
    console.print(f"Revoked {gtype} {escape(grantee)}'s grant on model {escape(name)}.")


# ---------------------------------------------------------------- experiments


@experiment_permissions_app.command("show")
def experiment_show(
    experiment: Annotated[str, typer.Argument(help="Experiment id or name.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Show the experiment's owner, the default permission and every grant (needs MANAGE)."""
    with open_client(url, token) as c:
        perms = c.get_experiment_permissions(experiment)
    _show(f"experiment {experiment}", perms)


@experiment_permissions_app.command("grant")
def experiment_grant(
    experiment: Annotated[str, typer.Argument(help="Experiment id or name.")],
    user: User = None,
    group: Group = None,
    permission: Permission = Level.READ,
    url: Url = None,
    token: Token = None,
) -> None:
    """Give a user or group READ, EDIT or MANAGE on the experiment (replaces what it held)."""
    gtype, grantee = _grantee(user, group)
    with open_client(url, token) as c:
        g = _grant(c.grant_experiment_permission, experiment, gtype, grantee, permission)
    _granted(f"experiment {experiment}", g)


@experiment_permissions_app.command("revoke")
def experiment_revoke(
    experiment: Annotated[str, typer.Argument(help="Experiment id or name.")],
    user: User = None,
    group: Group = None,
    yes: Yes = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Remove a user's or group's grant on the experiment."""
    gtype, grantee = _grantee(user, group)
    _confirm_revoke(yes, gtype, grantee, f"experiment {experiment!r}")
    with open_client(url, token) as c:
        c.revoke_experiment_permission(experiment, **{gtype: grantee})
    console.print(f"Revoked {gtype} {escape(grantee)}'s grant on experiment {escape(experiment)}.")


def _grant(
    method: Callable[..., Grant], ref: str, gtype: str, grantee: str, permission: Level
) -> Grant:
    # One call shape for both resources: the SDK methods take user= or group= by keyword.
    return method(ref, **{gtype: grantee}, permission=permission.value)

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


# ---------------------------------------------------------------- the commands


def _register(app: typer.Typer, kind: str, metavar: str, arg_help: str) -> None:
    """show, grant and revoke on ``app`` for one kind of resource (``model`` or
    ``experiment``): the same three commands, calling the SDK's methods for that kind."""
    # A default, not an ``Annotated`` hint: hints are strings here (``from __future__ import
    # annotations``) that Typer resolves in the module's globals, where ``arg_help`` is not.
    REF = typer.Argument(..., help=arg_help, metavar=metavar)

    @app.command("show", help=f"Show the {kind}'s owner, the default permission and every grant.")
    def show(
        ref: str = REF,
        url: Url = None,
        token: Token = None,
    ) -> None:
        with open_client(url, token) as c:
            perms = getattr(c, f"get_{kind}_permissions")(ref)
        _show(f"{kind} {ref}", perms)

    @app.command(
        "grant",
        help=f"Give a user or group READ, EDIT or MANAGE on the {kind} (replaces what it held).",
    )
    def grant(
        ref: str = REF,
        user: User = None,
        group: Group = None,
        permission: Permission = Level.READ,
        url: Url = None,
        token: Token = None,
    ) -> None:
        gtype, grantee = _grantee(user, group)
        with open_client(url, token) as c:
            g = _grant(getattr(c, f"grant_{kind}_permission"), ref, gtype, grantee, permission)
        _granted(f"{kind} {ref}", g)

    @app.command("revoke", help=f"Remove a user's or group's grant on the {kind}.")
    def revoke(
        ref: str = REF,
        user: User = None,
        group: Group = None,
        yes: Yes = False,
        url: Url = None,
        token: Token = None,
    ) -> None:
        gtype, grantee = _grantee(user, group)
        _confirm_revoke(yes, gtype, grantee, f"{kind} {ref!r}")
        with open_client(url, token) as c:
            getattr(c, f"revoke_{kind}_permission")(ref, **{gtype: grantee})
        console.print(f"Revoked {gtype} {escape(grantee)}'s grant on {kind} {escape(ref)}.")


_register(model_permissions_app, "model", "name", "Model name.")
_register(experiment_permissions_app, "experiment", "experiment", "Experiment id or name.")


def _grant(
    method: Callable[..., Grant], ref: str, gtype: str, grantee: str, permission: Level
) -> Grant:
    # One call shape for both resources: the SDK methods take user= or group= by keyword.
    return method(ref, **{gtype: grantee}, permission=permission.value)

"""``podstack models protect-alias|unprotect-alias|protect-stage|unprotect-stage|protections``:
protected aliases and stages of a model (registered on the ``models`` group by ``main``).

A protected alias or stage may only be moved by holders of MANAGE on the model, or by members
of its group; protecting and unprotecting need MANAGE.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from podstack.cli.common import Token, Url, console, open_client, print_table

Group = Annotated[
    str | None,
    typer.Option(
        "--group",
        "-g",
        help="A reviewer or directory group whose members may also move it (besides MANAGE).",
    ),
]
Stage = Annotated[str, typer.Argument(help="None, Staging, Production or Archived.")]


def _who(group: str | None) -> str:
    return "MANAGE holders" + (f" and members of group {escape(group)}" if group else "")


def protect_alias(
    name: str, alias: str, group: Group = None, url: Url = None, token: Token = None
) -> None:
    """Protect an alias: only MANAGE holders (or --group) may set, move or delete it."""
    with open_client(url, token) as c:
        p = c.protect_alias(name, alias, group=group)
    console.print(f"Alias {escape(p.name)} of {escape(name)} is protected: {_who(p.group)}.")


def unprotect_alias(name: str, alias: str, url: Url = None, token: Token = None) -> None:
    """Remove an alias's protection (anyone with EDIT may move it again)."""
    with open_client(url, token) as c:
        c.unprotect_alias(name, alias)
    console.print(f"Alias {escape(alias)} of {escape(name)} is no longer protected.")


def protect_stage(
    name: str, stage: Stage, group: Group = None, url: Url = None, token: Token = None
) -> None:
    """Protect a stage: only MANAGE holders (or --group) may move versions into or out of it."""
    with open_client(url, token) as c:
        p = c.protect_stage(name, stage, group=group)
    console.print(f"Stage {escape(p.name)} of {escape(name)} is protected: {_who(p.group)}.")


def unprotect_stage(name: str, stage: Stage, url: Url = None, token: Token = None) -> None:
    """Remove a stage's protection."""
    with open_client(url, token) as c:
        c.unprotect_stage(name, stage)
    console.print(f"Stage {escape(stage)} of {escape(name)} is no longer protected.")


def protections(name: str, url: Url = None, token: Token = None) -> None:
    """List a model's protected aliases and stages and who may move them."""
    with open_client(url, token) as c:
        p = c.get_model_protections(name)
    table = Table(title=f"Protections of {escape(name)}")
    for col in ("kind", "name", "who may move it"):
        table.add_column(col)
    for kind, rows in (("alias", p.aliases), ("stage", p.stages)):
        for r in rows:
            table.add_row(kind, escape(r.name), _who(r.group))
    print_table(table)

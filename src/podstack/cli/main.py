"""The ``podstack`` command. Each group lives in its own module; register yours with one line."""

from __future__ import annotations

import typer

from podstack.cli import (
    approvals,
    artifacts,
    backup,
    db,
    demo,
    deployments,
    import_cmd,
    permissions,
    protections,
    provenance,
    registry,
    schedules,
    server,
    service_accounts,
    tokens,
    users,
)
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
app.add_typer(service_accounts.app, name="service-accounts")
app.add_typer(schedules.app, name="schedules")
app.command("backup")(backup.backup)
app.command("restore")(backup.restore)
app.command("verify-backup")(backup.verify_backup)
app.command("demo")(demo.demo)
app.add_typer(registry.models_app, name="models")
app.add_typer(registry.versions_app, name="versions")
app.add_typer(registry.aliases_app, name="aliases")
registry.models_app.add_typer(permissions.model_permissions_app, name="permissions")
app.add_typer(permissions.experiments_app, name="experiments")
app.command("download")(registry.download)
registry.models_app.command("sign")(provenance.sign)
registry.models_app.command("verify")(provenance.verify)
registry.models_app.command("signature")(provenance.save_signature)
app.command("signing-keys")(provenance.signing_keys)
registry.models_app.command("protect-alias")(protections.protect_alias)
registry.models_app.command("unprotect-alias")(protections.unprotect_alias)
registry.models_app.command("protect-stage")(protections.protect_stage)
registry.models_app.command("unprotect-stage")(protections.unprotect_stage)
registry.models_app.command("protections")(protections.protections)
app.command("verify-store")(provenance.verify_store)
app.command("gc")(registry.gc)
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(approvals.app, name="approvals")
app.add_typer(approvals.policies_app, name="policies")
app.add_typer(approvals.groups_app, name="groups")
app.add_typer(approvals.webhooks_app, name="webhooks")
app.add_typer(deployments.app, name="deployments")
app.add_typer(import_cmd.app, name="import")

"""``podstack models sign|verify|signature``, ``podstack signing-keys``, ``podstack
verify-store``: signatures of model versions (OpenSSF model-signing format)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from podstack.cli.common import Token, Url, console, fail, local_database, open_client, print_table
from podstack.cli.registry import ModelRef

Version = Annotated[str | None, typer.Argument(help="Version number.")]


def sign(
    name: ModelRef,
    version: Version = None,
    key: Annotated[
        Path, typer.Option("--key", "-k", help="Your PEM EC private key (P-256/384/521).")
    ] = ...,  # type: ignore[assignment]
    url: Url = None,
    token: Token = None,
) -> None:
    """Sign a version's manifest with your key (on this machine) and attach the signature."""
    if not key.is_file():
        fail(f"No key file at {key}.")
    with open_client(url, token) as c:
        check = c.sign_model_version(name, version, key=key)
    console.print(
        f"Signed {escape(name)} v{version or ''} with key {check.key_id}: recorded as "
        f"signature {check.id} by {escape(check.signer)}."
    )


def verify(
    name: ModelRef,
    version: Version = None,
    trusted_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--trusted-key",
            help="A PEM public key to trust (repeat); default: PODSTACK_TRUSTED_KEYS, else the "
            "keys the server lists.",
        ),
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Check on this machine that a trusted key signed exactly the version's files."""
    with open_client(url, token) as c:
        sig = c.verify_model_version(name, version, trusted_keys=trusted_key)
    console.print(
        f"Verified: signature {sig.id} by {escape(sig.signer)} with key {sig.key_id} covers "
        f"every file of {escape(name)} v{version or ''}."
    )


def save_signature(
    name: ModelRef,
    version: Version = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write it.")] = Path(
        "model.sig"
    ),
    url: Url = None,
    token: Token = None,
) -> None:
    """Write the version's verified signature as model.sig, for `model_signing verify`."""
    with open_client(url, token) as c:
        path = c.save_model_signature(name, version, out)
    console.print(
        f"Wrote {escape(str(path))}. Check a download with: model_signing verify key "
        f"--signature {escape(str(path))} --public_key server.pub <directory>"
    )


def signing_keys(
    pem: Annotated[
        str | None, typer.Option("--pem", help="Print this key's PEM (for --public_key).")
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """List the keys that signed model versions (the server's, current and past, and users')."""
    with open_client(url, token) as c:
        keys = c.list_signing_keys()
    if pem is not None:
        match = [k for k in keys if k.key_id == pem or (pem == "server" and k.current)]
        if not match:
            fail(f"No signing key {pem!r}; `podstack signing-keys` lists them.")
        typer.echo(match[0].public_pem, nl=False)
        return
    table = Table("key id", "kind", "owner", "since", "current")
    for k in keys:
        table.add_row(
            k.key_id, k.kind, escape(k.owner), k.created_at.isoformat(), "yes" if k.current else ""
        )
    print_table(table)


def verify_store() -> None:
    """Re-hash every referenced blob and re-check every signature (local database and store:
    PODSTACK_DATABASE_URL, PODSTACK_ARTIFACTS_URI). Changes nothing; exit code 1 on damage."""
    from podstack.server.artifacts.store_factory import open_store
    from podstack.server.config import Settings
    from podstack.server.provenance.store_check import verify_store as run

    settings = Settings()
    store = open_store(settings)
    with local_database(settings) as db:
        report = run(db, store)
    console.print(
        f"{report.blobs_checked} blob(s) re-hashed, {report.versions_checked} signed version(s) "
        "checked."
    )
    for d in report.corrupted:
        console.print(f"[red]corrupted[/red] blob {d}")
    for d in report.missing:
        console.print(f"[red]missing[/red] blob {d}")
    for model, version, path, digest in report.damaged_files:
        console.print(f"  breaks {escape(model)} v{version}: {escape(path)} ({digest[:12]}…)")
    for model, version, problem in report.bad_signatures:
        console.print(f"[red]signature[/red] {escape(model)} v{version}: {escape(problem)}")
    if not report.ok:
        raise typer.Exit(1)
    console.print("Everything verifies.")

"""A real OpenID provider for the single sign-on tests, and a Podstack server that trusts it.

The provider is panva's ``oidc-provider`` (OpenID Certified) under the machine's Node, from
``tests/oidc/provider/`` (``npm ci`` installs it from the lock file when ``node_modules`` is
missing: ``scripts/ensure-test-deps.sh`` does it for ``make test``, and this module does it
too, so a single test file also runs on a clean clone). It listens on loopback only.

Import the fixtures into a test module with ``from tests.oidc.harness import sso  # noqa``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from tests.conftest import IN_CI, LiveServer, free_port

from podstack.server.config import Settings
from podstack.server.db.session import Database

PROVIDER_DIR = Path(__file__).parent / "provider"
NODE = os.environ.get("PODSTACK_NODE", "/usr/bin/node")
CLIENT_ID = "podstack-test"
CLIENT_SECRET = "test-client-secret-not-for-production"
GROUP_ROLES = "ml-admins=admin,ml=editor"


def _missing(what: str) -> None:
    message = f"SINGLE SIGN-ON TESTS NOT RUN: {what}"
    if IN_CI:
        pytest.fail(message + " (CI=true requires them to run).", pytrace=False)
    pytest.skip(message)


def ensure_provider_installed() -> None:
    if not (Path(NODE).exists() or shutil.which(NODE)):
        _missing(f"Node.js not found at {NODE} (apt-get install nodejs; or set PODSTACK_NODE).")
    if (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        _missing("npm not found, so tests/oidc/provider cannot be installed (apt-get install npm).")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PROVIDER_DIR,
        check=True,
        timeout=300,
    )


class OidcProvider:
    """One ``node provider.js`` process on a loopback port."""

    def __init__(self, port: int, redirect_uri: str, accounts_file: Path) -> None:
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.redirect_uri = redirect_uri
        self.accounts_file = accounts_file
        self.proc: subprocess.Popen[bytes] | None = None

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        """Account id -> claims; read by the provider at every sign-in."""
        tmp = self.accounts_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(accounts))
        tmp.replace(self.accounts_file)

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "OIDC_PORT": str(self.port),
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_REDIRECT_URI": self.redirect_uri,
            "OIDC_ACCOUNTS_FILE": str(self.accounts_file),
            "NODE_ENV": "test",
        }
        self.proc = subprocess.Popen(
            [NODE, "provider.js"],
            cwd=PROVIDER_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        url = self.issuer + "/.well-known/openid-configuration"
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"oidc-provider exited at start:\n{err[-2000:]}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("oidc-provider did not start within 20 s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@dataclass
class Sso:
    provider: OidcProvider
    server: LiveServer


def sso_settings(base: Settings, issuer: str, **extra: Any) -> Settings:
    return base.model_copy(
        update={
            "oidc_issuer": issuer,
            "oidc_client_id": CLIENT_ID,
            # model_copy does not validate: wrap it as Settings would from the environment.
            "oidc_client_secret": SecretStr(CLIENT_SECRET),
            "oidc_group_roles": GROUP_ROLES,
            "oidc_provider_name": "Test IdP",
            # The suite's allow-list covers loopback; SSO must work without it (the issuer's
            # host is allowed implicitly for the OIDC client only).
            "outbound_allow": "",
            **extra,
        }
    )


@pytest.fixture(scope="session")
def sso(
    settings: Settings, db: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sso]:
    """The real provider and a Podstack server configured for it (same database as ``db``)."""
    ensure_provider_installed()
    port = free_port()
    server = LiveServer(sso_settings(settings, f"http://127.0.0.1:{port}"))
    provider = OidcProvider(
        port,
        server.url + "/login/oidc/callback",
        tmp_path_factory.mktemp("oidc") / "accounts.json",
    )
    provider.set_accounts({})
    provider.start()
    server.start()
    try:
        yield Sso(provider, server)
    finally:
        server.stop()
        provider.stop()

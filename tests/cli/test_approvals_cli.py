"""`podstack approvals|policies|groups|webhooks` against a live server, as different users."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from podstack.cli.main import app
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.server.approvals.helpers import make_user, make_version, stage_of

runner = CliRunner()
MODEL = "churn"


def cli(server: LiveServer, token: str, *args: str, code: int = 0) -> str:
    env = {"PODSTACK_URL": server.url, "PODSTACK_API_TOKEN": token, "PODSTACK_PROGRESS": "0"}
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def test_approval_workflow_from_the_terminal(
    live_server: LiveServer, api: httpx.Client, db: Database
) -> None:
    alice = make_user(db, "alice", "editor")
    bob = make_user(db, "bob", "editor")
    v = make_version(api, MODEL, {"accuracy": 0.93})

    out = cli(live_server, ADMIN_TOKEN, "groups", "create", "leads", "--member", "bob")
    assert "Created group leads (1 member(s))" in out
    assert "bob" in cli(live_server, ADMIN_TOKEN, "groups", "list")
    out = cli(
        live_server,
        ADMIN_TOKEN,
        "policies",
        "set",
        MODEL,
        "--stage",
        "Production",
        "--group",
        "leads",
        "--gate",
        "accuracy >= 0.9",
    )
    assert "gated stages:       Production" in out and "accuracy >= 0.9" in out
    assert "(model policy)" in cli(live_server, alice, "policies", "get", MODEL)
    out = cli(live_server, ADMIN_TOKEN, "policies", "set", MODEL, "--gate", "acc >>", code=1)
    assert "is invalid" in out

    # The registry CLI's transition stops with the request id (exit 1: nothing moved).
    out = cli(live_server, alice, "versions", "transition", MODEL, str(v), "Production", code=1)
    assert "needs approval" in out and "apr-" in out
    request_id = out[out.index("apr-") :].split()[0].rstrip(".,")
    listing = cli(live_server, bob, "approvals", "list")
    assert request_id in listing and "alice" in listing
    show = cli(live_server, bob, "approvals", "show", request_id)
    assert "pass" in show and "accuracy" in show and "Production (none)" in show

    out = cli(live_server, alice, "approvals", "approve", request_id, code=1)
    assert "your own request" in out
    cli(live_server, bob, "approvals", "comment", request_id, "checked the eval set")
    out = cli(live_server, bob, "approvals", "approve", request_id, "-m", "ship it")
    assert "is now in Production" in out
    assert stage_of(api, MODEL, v) == "Production"
    assert "approved" in cli(live_server, bob, "approvals", "list", "--all")

    v2 = make_version(api, MODEL, {"accuracy": 0.95})
    out = cli(live_server, alice, "approvals", "request", MODEL, str(v2), "Production")
    rid2 = out[out.index("apr-") :].split()[0].rstrip(":")
    cli(live_server, bob, "approvals", "reject", rid2, code=2)  # --comment is required
    assert "Rejected" in cli(live_server, bob, "approvals", "reject", rid2, "-m", "wait")


def test_webhooks_from_the_terminal(live_server: LiveServer, db: Database) -> None:
    out = cli(live_server, ADMIN_TOKEN, "webhooks", "create", "ftp://x", code=1)
    assert "scheme 'ftp' is not allowed" in out
    out = cli(
        live_server,
        ADMIN_TOKEN,
        "webhooks",
        "create",
        "http://127.0.0.1:9/hook",
        "-e",
        "stage.*",
    )
    hook_id = out[out.index("whk-") :].split()[0]
    assert "whsec_" in out
    assert hook_id in cli(live_server, ADMIN_TOKEN, "webhooks", "list")
    out = cli(live_server, ADMIN_TOKEN, "webhooks", "test", hook_id, code=1)
    assert "Not delivered" in out
    assert "webhook.test" in cli(live_server, ADMIN_TOKEN, "webhooks", "deliveries", hook_id)
    cli(live_server, ADMIN_TOKEN, "webhooks", "delete", hook_id)
    assert hook_id not in cli(live_server, ADMIN_TOKEN, "webhooks", "list")


def test_gated_alias_and_metric_provenance_from_the_terminal(
    live_server: LiveServer, api: httpx.Client, db: Database
) -> None:
    alice = make_user(db, "alice", "editor")
    bob = make_user(db, "bob", "editor")
    v = make_version(api, MODEL, {"accuracy": 0.93})
    out = cli(
        live_server, ADMIN_TOKEN, "policies", "set", MODEL, "-r", "bob", "--gated-alias", "champion"
    )
    assert "gated aliases:      champion" in out
    out = cli(live_server, alice, "aliases", "set", MODEL, "champion", str(v), code=1)
    assert "Nothing changed" in out and "apr-" in out
    request_id = out[out.index("apr-") :].split()[0].rstrip(".,)")
    show = cli(live_server, bob, "approvals", "show", request_id)
    assert "Metric provenance" in show and "accuracy" in show
    out = cli(live_server, bob, "approvals", "approve", request_id)
    assert "Approved and carried out" in out
    assert (
        httpx.get(
            f"{live_server.url}/api/v1/registered-models/{MODEL}/aliases/champion",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ).json()["version"]
        == v
    )

"""Service accounts: REST, SDK (both backends), CLI and the Users page; their limits (no
password, no web sign-in, no self-issued tokens); every bad input; the audit trail."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from podstack import MLOpsClient
from podstack.cli.main import app as cli_app
from podstack.errors import Conflict, NotFound, ValidationFailed
from podstack.server.audit.models import AuditEvent
from podstack.server.auth.models import ApiToken, User
from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.http_errors import api_error

ClientFor = Callable[[str], httpx.Client]
CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def _counts(db: Database) -> tuple[int, int, int]:
    with db.session(readonly=True) as s:
        return (
            s.scalar(select(func.count()).select_from(User)) or 0,
            s.scalar(select(func.count()).select_from(ApiToken)) or 0,
            s.scalar(select(func.count()).select_from(AuditEvent)) or 0,
        )


def _create(api: httpx.Client, name: str = "ci-train", role: str = "editor") -> dict:
    r = api.post(
        "/service-accounts", json={"name": name, "role": role, "description": "nightly training"}
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_rest_create_issue_token_use_it_and_audit(
    api: httpx.Client, client_for: ClientFor, db: Database
) -> None:
    account = _create(api)
    assert account["name"] == "ci-train" and account["role"] == "editor"
    assert account["description"] == "nightly training" and account["disabled"] is False
    r = api.post("/service-accounts/ci-train/tokens", json={"name": "gha", "expires_in_days": 30})
    assert r.status_code == 201, r.text
    issued = r.json()
    assert issued["username"] == "ci-train" and issued["token"].startswith("pst_")
    assert issued["expires_at"] is not None

    bot = client_for(issued["token"])
    me = bot.get("/me").json()
    assert (me["username"], me["role"]) == ("ci-train", "editor")
    assert bot.post("/experiments", json={"name": "from-ci"}).status_code == 201
    api_error(bot.get("/users"), 403, "PERMISSION_DENIED")  # editor, not admin

    # Listed separately, and as users of kind "service".
    assert [a["name"] for a in api.get("/service-accounts").json()["items"]] == ["ci-train"]
    assert api.get("/service-accounts/ci-train").json()["role"] == "editor"
    kinds = {u["username"]: u["kind"] for u in api.get("/users").json()["items"]}
    assert kinds == {"admin": "human", "ci-train": "service"}
    # Its tokens are listed and revoked like anyone's.
    (tok,) = api.get("/tokens", params={"username": "ci-train"}).json()["items"]
    assert api.delete(f"/tokens/{tok['id']}").status_code == 200
    api_error(bot.get("/me"), 401, "UNAUTHENTICATED")

    with db.session(readonly=True) as s:
        events = [
            (e.actor, e.action)
            for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))
            if e.action.startswith(("service_account", "token"))
        ]
    assert ("admin", "service_account.create") in events
    assert ("admin", "token.create") in events and ("admin", "token.revoke") in events


def test_rest_update_role_description_and_disable(api: httpx.Client, client_for: ClientFor) -> None:
    _create(api)
    token = api.post("/service-accounts/ci-train/tokens", json={"name": "t"}).json()["token"]
    bot = client_for(token)
    r = api.patch("/service-accounts/ci-train", json={"role": "viewer", "description": None})
    assert r.status_code == 200, r.text
    assert (r.json()["role"], r.json()["description"]) == ("viewer", None)
    assert bot.get("/me").json()["role"] == "viewer"
    assert api.patch("/service-accounts/ci-train", json={"disabled": True}).json()["disabled"]
    api_error(bot.get("/me"), 401, "UNAUTHENTICATED")
    body = api_error(
        api.post("/service-accounts/ci-train/tokens", json={"name": "t2"}), 409, "CONFLICT"
    )
    assert "disabled" in body["message"]


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        ({"name": "bad name!", "role": "viewer"}, 422, "VALIDATION_ERROR", "name"),
        ({"name": "bot", "role": "root"}, 422, "VALIDATION_ERROR", "viewer, editor, admin"),
        ({"name": "", "role": "viewer"}, 422, "VALIDATION_ERROR", "name"),
        ({"name": "bot", "password": "hunter22!"}, 422, "VALIDATION_ERROR", "password"),
        ({"name": "admin"}, 409, "CONFLICT", "already exists"),
    ],
    ids=["bad-name", "bad-role", "empty-name", "password-field", "taken-by-a-user"],
)
def test_create_bad_input_changes_nothing(
    api: httpx.Client, db: Database, body: dict, status: int, code: str, needle: str
) -> None:
    before = _counts(db)
    err = api_error(api.post("/service-accounts", json=body), status, code)
    assert needle in (err["message"] + str(err.get("details"))), err
    assert _counts(db) == before


def test_token_and_update_bad_input_changes_nothing(api: httpx.Client, db: Database) -> None:
    _create(api)
    before = _counts(db)
    err = api_error(
        api.post("/service-accounts/nobody/tokens", json={"name": "t"}), 404, "NOT_FOUND"
    )
    assert "nobody" in err["message"]
    # A person is not a service account: the service-account routes do not touch them.
    api_error(api.post("/service-accounts/admin/tokens", json={"name": "t"}), 404, "NOT_FOUND")
    api_error(api.patch("/service-accounts/admin", json={"role": "viewer"}), 404, "NOT_FOUND")
    api_error(
        api.post("/service-accounts/ci-train/tokens", json={"name": ""}), 422, "VALIDATION_ERROR"
    )
    api_error(
        api.post("/service-accounts/ci-train/tokens", json={"name": "t", "expires_in_days": 0}),
        422,
        "VALIDATION_ERROR",
    )
    api_error(
        api.patch("/service-accounts/ci-train", json={"role": "boss"}), 422, "VALIDATION_ERROR"
    )
    api_error(
        api.patch("/service-accounts/ci-train", json={"disabled": None}), 422, "VALIDATION_ERROR"
    )
    assert _counts(db) == before


def test_no_password_no_web_sign_in_no_self_issued_tokens(
    api: httpx.Client, client_for: ClientFor, live_server: LiveServer, db: Database
) -> None:
    _create(api)
    token = api.post("/service-accounts/ci-train/tokens", json={"name": "t"}).json()["token"]
    before = _counts(db)
    err = api_error(
        api.patch("/users/ci-train", json={"password": "long-enough-pw"}), 422, "VALIDATION_ERROR"
    )
    assert "service account" in err["message"] and "API tokens only" in err["message"]
    # The token cannot mint more tokens (a leak must not outlive its revocation).
    err = api_error(
        client_for(token).post("/tokens", json={"name": "more"}), 403, "PERMISSION_DENIED"
    )
    assert "only an admin" in err["message"]
    assert _counts(db) == before

    # Pasting the token into the web sign-in form is refused: no session.
    with httpx.Client(base_url=live_server.url, timeout=30) as c:
        csrf = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"username": "", "password": token, "csrf_token": csrf})
        assert r.status_code == 401
        assert "Service accounts cannot sign in to the web UI" in r.text
        assert c.get("/api/v1/me").status_code == 401


@pytest.mark.one_db  # UI / SDK / CLI adapters; the rules run on both DBs above
def test_users_page_shows_service_accounts_separately_and_issues_tokens(
    api: httpx.Client, live_server: LiveServer, db: Database
) -> None:
    _create(api)
    with httpx.Client(base_url=live_server.url, timeout=30) as c:
        csrf = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"password": ADMIN_TOKEN, "csrf_token": csrf})
        assert r.status_code == 303
        page = c.get("/admin/users").text
        people = page.split("data-users-table")[1].split("</table>")[0]
        robots = page.split("data-service-accounts-table")[1].split("</table>")[0]
        assert 'data-user="admin"' in people and "ci-train" not in people
        assert 'data-service-account="ci-train"' in robots
        csrf = CSRF.search(page).group(1)  # type: ignore[union-attr]

        r = c.post(
            "/admin/service-accounts",
            data={"name": "deploy-bot", "role": "viewer", "csrf_token": csrf},
        )
        assert r.status_code == 303
        r = c.post(
            "/admin/service-accounts/deploy-bot/tokens",
            data={"token_name": "ci", "expires_in_days": "30", "csrf_token": csrf},
        )
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        value = re.search(r"data-token-value>(pst_[^<]+)<", r.text).group(1)  # type: ignore[union-attr]
        with httpx.Client(base_url=live_server.url + "/api/v1", timeout=30) as bot:
            me = bot.get("/me", headers={"Authorization": f"Bearer {value}"}).json()
        assert me["username"] == "deploy-bot"

        before = _counts(db)
        r = c.post(
            "/admin/service-accounts",
            data={"name": "deploy-bot", "role": "viewer", "csrf_token": csrf},
        )
        assert r.status_code == 409 and "already exists" in r.text
        r = c.post("/admin/service-accounts", data={"name": "x y", "csrf_token": csrf})
        assert r.status_code == 422 and "Usernames are 1-64 characters" in r.text
        r = c.post(
            "/admin/service-accounts/deploy-bot/tokens",
            data={"token_name": "ci", "expires_in_days": "forever", "csrf_token": csrf},
        )
        assert r.status_code == 422 and "1-3650 days" in r.text
        r = c.post(
            "/admin/service-accounts/nobody/tokens",
            data={"token_name": "ci", "csrf_token": csrf},
        )
        assert r.status_code == 404
        assert _counts(db) == before


@pytest.mark.one_db  # UI / SDK / CLI adapters; the rules run on both DBs above
def test_sdk_manages_service_accounts(client: MLOpsClient) -> None:
    account = client.create_service_account("ci-eval", "viewer", description="evaluation")
    assert (account.name, account.role, account.description) == ("ci-eval", "viewer", "evaluation")
    issued = client.create_service_account_token("ci-eval", "pipeline", 7)
    assert issued.username == "ci-eval" and issued.token.startswith("pst_")
    assert [a.name for a in client.list_service_accounts()] == ["ci-eval"]
    updated = client.update_service_account("ci-eval", role="editor", description=None)
    assert (updated.role, updated.description) == ("editor", None)
    assert client.get_service_account("ci-eval").role == "editor"
    assert [t.name for t in client.list_tokens(username="ci-eval")] == ["pipeline"]
    with pytest.raises(Conflict):
        client.create_service_account("ci-eval")
    with pytest.raises(ValidationFailed):
        client.create_service_account("bad name")
    with pytest.raises(NotFound):
        client.get_service_account("admin")


@pytest.mark.one_db  # UI / SDK / CLI adapters; the rules run on both DBs above
def test_cli_manages_service_accounts(settings: Settings, db: Database) -> None:
    env = {
        "PODSTACK_HOME": str(settings.home),
        "PODSTACK_DATABASE_URL": settings.database_url,
        "PODSTACK_ARTIFACTS_URI": settings.artifacts_uri,
        "PODSTACK_MIGRATE_ON_START": None,
    }
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli_app, ["service-accounts", *args], env=env)
        assert result.exit_code == code, result.output
        return result.output + (result.stderr if code else "")

    out = run("create", "ci-nightly", "--role", "editor", "--with-token")
    assert "Created service account ci-nightly (editor)" in out
    assert re.search(r"pst_\S+", out)
    token = run("token", "ci-nightly", "--name", "gha", "-e", "30", "-q").strip()
    assert token.startswith("pst_")
    assert "ci-nightly" in run("list") and "editor" in run("list")
    assert "now viewer" in run("set-role", "ci-nightly", "viewer")
    assert "Disabled" in run("disable", "ci-nightly")
    with db.session(readonly=True) as s:
        user = s.scalar(select(User).where(User.username == "ci-nightly"))
        assert user is not None and user.kind == "service" and user.disabled
        assert user.role == "viewer" and user.password_hash is None
    assert "Enabled" in run("enable", "ci-nightly")
    before = _counts(db)
    assert "already exists" in run("create", "ci-nightly", code=1)
    assert "does not exist" in run("token", "nobody", code=1)
    assert "Unknown role" in run("set-role", "ci-nightly", "root", code=1)
    assert _counts(db) == before

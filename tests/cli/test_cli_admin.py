"""`podstack users|tokens|db` working directly on the test database (no server, no token)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from podstack.cli.main import app
from podstack.server.audit.models import AuditEvent
from podstack.server.auth import service as auth_service
from podstack.server.auth.models import ApiToken, User
from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import LiveServer

runner = CliRunner()


@pytest.fixture
def env(settings: Settings, db: Database) -> dict[str, str | None]:
    return {
        "PODSTACK_HOME": str(settings.home),
        "PODSTACK_DATABASE_URL": settings.database_url,
        "PODSTACK_ARTIFACTS_URI": settings.artifacts_uri,
        "PODSTACK_MIGRATE_ON_START": None,
    }


def run(env: dict[str, str | None], *args: str, input: str | None = None, ok: bool = True):
    result = runner.invoke(app, list(args), env=env, input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def expect_failure(env: dict[str, str | None], *args: str, needle: str) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 1, result.output
    assert "Error:" in result.stderr and needle in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.stderr


def user(db: Database, username: str) -> User | None:
    with db.session(readonly=True) as s:
        found = s.scalar(select(User).where(User.username == username))
        if found is not None:
            s.expunge(found)  # keep its loaded values after the read-only rollback
        return found


def test_users_create_list_and_change(env: dict, db: Database) -> None:
    out = run(env, "users", "create", "alice", "--role", "editor", "--email", "a@example.com")
    assert "Created user alice with role editor" in out.stdout
    run(env, "users", "create", "bob")
    listing = run(env, "users", "list").stdout
    for needle in ("admin", "alice", "bob", "editor", "viewer", "a@example.com", "3 user(s)"):
        assert needle in listing

    run(env, "users", "set-role", "bob", "admin")
    assert user(db, "bob").role == "admin"
    run(env, "users", "disable", "alice")
    assert user(db, "alice").disabled is True
    assert "disabled" in run(env, "users", "list").stdout
    run(env, "users", "enable", "alice")
    assert user(db, "alice").disabled is False

    run(env, "users", "set-password", "alice", input="correct-horse\ncorrect-horse\n")
    with db.session() as s:
        auth_service.authenticate_password(
            s, "alice", "correct-horse", max_failures=5, lockout_seconds=60
        )
    run(env, "users", "set-password", "alice", "--stdin", input="battery-staple\n")
    with db.session() as s:
        auth_service.authenticate_password(
            s, "alice", "battery-staple", max_failures=5, lockout_seconds=60
        )

    # Every change is audited, attributed to the operator's CLI session.
    with db.session(readonly=True) as s:
        events = s.execute(
            select(AuditEvent.action, AuditEvent.actor).where(AuditEvent.target_id == "alice")
        ).all()
    assert {action for action, _ in events} >= {
        "user.create",
        "user.disable",
        "user.enable",
        "user.set_password",
    }
    assert all(actor.startswith("cli:") for _, actor in events)


def test_users_create_with_password_and_token(
    env: dict, db: Database, live_server: LiveServer
) -> None:
    out = run(
        env,
        "users",
        "create",
        "carol",
        "--password-stdin",
        "--with-token",
        input="a-long-password\n",
    ).stdout
    token = out.strip().splitlines()[-1]
    assert token.startswith("pst_")
    assert user(db, "carol").password_hash is not None
    import httpx

    me = httpx.get(live_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["username"] == "carol"


def test_user_errors_are_clear_and_change_nothing(env: dict, db: Database) -> None:
    expect_failure(env, "users", "create", "bad name!", needle="letters, digits")
    expect_failure(
        env,
        "users",
        "create",
        "dan",
        "--role",
        "owner",
        needle="valid roles are viewer, editor, admin",
    )
    run(env, "users", "create", "dan")
    expect_failure(env, "users", "create", "dan", needle="already exists")
    expect_failure(env, "users", "set-role", "dan", "root", needle="viewer, editor, admin")
    expect_failure(env, "users", "set-role", "ghost", "editor", needle="does not exist")
    expect_failure(env, "users", "disable", "admin", needle="last active admin")
    result = runner.invoke(
        app, ["users", "set-password", "dan", "--stdin"], env=env, input="short\n"
    )
    assert result.exit_code == 1 and "at least 8" in result.stderr
    assert user(db, "bad name!") is None
    dan = user(db, "dan")
    assert (dan.role, dan.password_hash) == ("viewer", None)
    assert user(db, "admin").disabled is False


def test_tokens_create_list_revoke(env: dict, db: Database, live_server: LiveServer) -> None:
    import httpx

    run(env, "users", "create", "erin", "--role", "editor")
    out = run(env, "tokens", "create", "erin", "--name", "laptop", "--expires-in-days", "30")
    assert "shown only this once" in out.stdout
    token = out.stdout.strip().splitlines()[-1]
    assert token.startswith("pst_")
    quiet = run(env, "tokens", "create", "erin", "-q").stdout.strip()
    assert quiet.startswith("pst_") and "\n" not in quiet

    def me(t: str) -> httpx.Response:
        return httpx.get(live_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {t}"})

    assert me(token).json()["username"] == "erin"
    listing = run(env, "tokens", "list", "--user", "erin").stdout
    assert "laptop" in listing and token[:8] in listing and "active" in listing
    assert token not in listing and quiet not in listing
    everyone = run(env, "tokens", "list").stdout
    assert "admin" in everyone and "erin" in everyone

    with db.session(readonly=True) as s:
        tok = s.scalar(select(ApiToken).where(ApiToken.name == "laptop"))
        assert tok.token_hash == auth_service.hash_token(token) and tok.expires_at is not None
        tok_id = tok.id
    assert "Revoked token" in run(env, "tokens", "revoke", str(tok_id)).stdout
    assert me(token).status_code == 401
    assert "revoked" in run(env, "tokens", "list", "--user", "erin").stdout


def test_token_errors(env: dict) -> None:
    expect_failure(env, "tokens", "create", "ghost", needle="does not exist")
    expect_failure(env, "tokens", "revoke", "424242", needle="does not exist")
    expect_failure(env, "tokens", "list", "--user", "ghost", needle="does not exist")
    result = runner.invoke(app, ["tokens", "create", "admin", "--expires-in-days", "0"], env=env)
    assert result.exit_code == 2  # usage error from the option's range check


def test_db_commands(env: dict) -> None:
    assert "Up to date" in run(env, "db", "current").stdout
    assert "already up to date" in run(env, "db", "upgrade").stdout


def test_db_commands_on_a_fresh_sqlite(tmp_path) -> None:
    env = {"PODSTACK_HOME": str(tmp_path), "PODSTACK_DATABASE_URL": None}
    assert "none (empty database)" in run(env, "db", "current").stdout
    assert "Upgraded" in run(env, "db", "upgrade").stdout
    assert (tmp_path / "podstack.db").exists()
    # The users commands migrate on their own, so an operator can start with them.
    env2 = {"PODSTACK_HOME": str(tmp_path / "other"), "PODSTACK_DATABASE_URL": None}
    run(env2, "users", "create", "first", "--role", "admin")
    assert "first" in run(env2, "users", "list").stdout


def test_unreachable_database_is_a_clear_error(tmp_path) -> None:
    env = {
        "PODSTACK_HOME": str(tmp_path),
        "PODSTACK_DATABASE_URL": "postgresql+psycopg://nobody:hunter2@127.0.0.1:1/none",
    }
    err = expect_failure(env, "users", "list", needle="Database error")
    assert "hunter2" not in err
    expect_failure(env, "db", "current", needle="Database error")

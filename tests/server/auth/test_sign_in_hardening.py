"""Sign-in answers that give nothing away, and token prefixes that are not pieces of a chosen
secret."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from podstack.cli.main import app as cli_app
from podstack.errors import Unauthenticated
from podstack.server.auth import service as auth_service
from podstack.server.auth.models import ApiToken, User
from podstack.server.config import Settings
from podstack.server.db.base import utcnow
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
ALERT = re.compile(r'<div class="alert alert-error" role="alert">.*?<div>(.*?)</div>', re.S)
PASSWORD = "correct horse battery"


def _attempt(c: httpx.Client, username: str, password: str) -> tuple[int, str]:
    token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
    r = c.post("/login", data={"username": username, "password": password, "csrf_token": token})
    match = ALERT.search(r.text)
    return r.status_code, match.group(1).strip() if match else r.text[:200]


def test_a_locked_account_answers_like_an_unknown_username(
    live_server: LiveServer, db: Database
) -> None:
    with db.session() as s:
        auth_service.create_user(s, "test", "alice", role="viewer", password=PASSWORD)
    limit = live_server.settings.login_max_failures
    answers: dict[str, list[tuple[int, str]]] = {}
    for username in ("alice", "nobody-here"):
        with httpx.Client(base_url=live_server.url, timeout=30) as c:
            answers[username] = [_attempt(c, username, "wrong password") for _ in range(limit)]
            # alice is locked now: even her right password gets the very same answer.
            answers[username].append(_attempt(c, username, PASSWORD))
    assert answers["alice"] == answers["nobody-here"]
    status, message = answers["alice"][-1]
    assert status == 401
    assert message.startswith("Wrong username or password.")
    assert f"After {limit} failed attempts" in message  # the rule is stated, for everyone
    with db.session(readonly=True) as s:
        locked_until = s.scalar(select(User.locked_until).where(User.username == "alice"))
    assert locked_until is not None and locked_until > utcnow()  # the lock itself still works


def _fastest(fn: Callable[[], None], n: int = 3) -> float:
    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        with pytest.raises(Unauthenticated):
            fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_refusals_take_about_as_long_whatever_the_reason(db: Database, settings: Settings) -> None:
    """Every refusal costs one argon2 verification: unknown user, wrong password, locked."""
    with db.session() as s:
        auth_service.create_user(s, "test", "alice", role="viewer", password=PASSWORD)
        auth_service.create_user(s, "test", "lockedout", role="viewer", password=PASSWORD)
        s.scalar(select(User).where(User.username == "lockedout")).locked_until = (  # type: ignore[union-attr]
            utcnow().replace(year=utcnow().year + 1)
        )

    def attempt(username: str, password: str) -> Callable[[], None]:
        def run() -> None:
            with db.session() as s:
                auth_service.authenticate_password(
                    s,
                    username,
                    password,
                    max_failures=1000,  # never lock alice during the measurement
                    lockout_seconds=settings.login_lockout_seconds,
                )

        return run

    wrong = _fastest(attempt("alice", "wrong password"))
    unknown = _fastest(attempt("nobody-here", "wrong password"))
    locked = _fastest(attempt("lockedout", PASSWORD))
    for other in (unknown, locked):
        assert wrong / 4 < other < wrong * 4, (wrong, unknown, locked)


def test_a_chosen_admin_token_stores_no_prefix(
    db: Database, api: httpx.Client, live_server: LiveServer, settings: Settings
) -> None:
    """conftest bootstraps admin with the chosen ADMIN_TOKEN (PODSTACK_ADMIN_TOKEN)."""
    with db.session(readonly=True) as s:
        chosen = s.scalar(
            select(ApiToken).where(ApiToken.token_hash == auth_service.hash_token(ADMIN_TOKEN))
        )
        assert chosen is not None and chosen.prefix is None
    created = api.post("/tokens", json={"name": "laptop"}).json()
    assert created["token"].startswith("pst_") and created["prefix"] == created["token"][:8]
    listed = {t["name"]: t for t in api.get("/tokens").json()["items"]}
    assert listed["bootstrap"]["prefix"] is None
    assert listed["laptop"]["prefix"] == created["prefix"]
    assert ADMIN_TOKEN[:8] not in api.get("/tokens").text
    # The UI and the CLI list it without a prefix.
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as web:
        token = CSRF.search(web.get("/login").text).group(1)  # type: ignore[union-attr]
        web.post("/login", data={"password": ADMIN_TOKEN, "csrf_token": token})
        page = web.get("/settings/tokens")
        assert page.status_code == 200 and "chosen value" in page.text
    result = CliRunner().invoke(
        cli_app,
        ["tokens", "list", "--user", "admin"],
        env={
            "PODSTACK_HOME": str(settings.home),
            "PODSTACK_DATABASE_URL": settings.database_url,
            "PODSTACK_ARTIFACTS_URI": settings.artifacts_uri,
        },
    )
    assert result.exit_code == 0, result.output
    assert "bootstrap" in result.stdout and "(chosen value)" in result.stdout
    assert ADMIN_TOKEN[:8] not in result.stdout


def test_starting_with_a_chosen_admin_token_forgets_a_prefix_stored_before(db: Database) -> None:
    """Servers before this rule stored the chosen token's first 8 characters."""
    digest = auth_service.hash_token(ADMIN_TOKEN)
    with db.session() as s:
        s.scalar(select(ApiToken).where(ApiToken.token_hash == digest)).prefix = ADMIN_TOKEN[:8]  # type: ignore[union-attr]
    with db.session() as s:
        assert auth_service.bootstrap_admin(s, ADMIN_TOKEN) is None
    with db.session(readonly=True) as s:
        assert s.scalar(select(ApiToken.prefix).where(ApiToken.token_hash == digest)) is None

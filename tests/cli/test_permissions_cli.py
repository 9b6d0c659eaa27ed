"""`podstack models permissions` and `podstack experiments permissions` against a live server
(through MLOpsClient over HTTP), plus one embedded pass; bad input is refused with a clear
message and changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from typer.testing import CliRunner

from podstack.cli.main import app
from podstack.server.config import Settings
from tests.conftest import ADMIN_TOKEN, LiveServer

runner = CliRunner()


@pytest.fixture
def env(live_server: LiveServer, api: httpx.Client) -> dict[str, str]:
    return {
        "PODSTACK_PROGRESS": "0",
        "COLUMNS": "200",
        "PODSTACK_URL": live_server.url,
        "PODSTACK_API_TOKEN": ADMIN_TOKEN,
    }


@pytest.fixture
def world(api: httpx.Client) -> str:
    """A model ``churn``, an experiment ``churn-training`` (its id returned), user ``bob`` and
    reviewer group ``ml-reviewers``."""
    assert api.post("/users", json={"username": "bob", "role": "editor"}).status_code == 201
    r = api.post("/groups", json={"name": "ml-reviewers", "members": ["bob"]})
    assert r.status_code == 201, r.text
    assert api.post("/registered-models", json={"name": "churn"}).status_code == 201
    r = api.post("/experiments", json={"name": "churn-training"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def run(env: dict[str, str], *args: str, input: str | None = None) -> str:
    result = runner.invoke(app, list(args), env=env, input=input)
    assert result.exit_code == 0, result.output
    return result.output


def fails(env: dict[str, str], *args: str, needle: str, code: int = 1) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def test_model_grant_show_revoke(env: dict[str, str], world: str, api: httpx.Client) -> None:
    out = run(env, "models", "permissions", "grant", "churn", "--user", "bob", "-p", "edit")
    assert "User bob now holds EDIT on model churn." in out
    out = run(env, "models", "permissions", "grant", "churn", "--group", "ml-reviewers")
    assert "Group ml-reviewers now holds READ" in out
    out = run(env, "models", "permissions", "show", "churn")
    assert "Owner: admin (holds MANAGE)" in out
    assert "Everyone else: MANAGE" in out
    assert "2 grant(s)" in out
    lines = [ln for ln in out.splitlines() if "bob" in ln or "ml-reviewers" in ln]
    assert any("user" in ln and "bob" in ln and "EDIT" in ln and "admin" in ln for ln in lines)
    assert any("group" in ln and "ml-reviewers" in ln and "READ" in ln for ln in lines)

    # Revoke asks first; "n" aborts and keeps the grant.
    result = runner.invoke(
        app, ["models", "permissions", "revoke", "churn", "--user", "bob"], env=env, input="n\n"
    )
    assert result.exit_code == 1 and "Revoke user 'bob'" in result.output
    assert len(api.get("/registered-models/churn/permissions").json()["grants"]) == 2
    out = run(env, "models", "permissions", "revoke", "churn", "--user", "bob", input="y\n")
    assert "Revoked user bob's grant on model churn." in out
    run(env, "models", "permissions", "revoke", "churn", "-g", "ml-reviewers", "--yes")
    out = run(env, "models", "permissions", "show", "churn")
    assert "No grants." in out


def test_experiment_by_name_and_id(env: dict[str, str], world: str, api: httpx.Client) -> None:
    out = run(
        env, "experiments", "permissions", "grant", "churn-training", "-u", "bob", "-p", "MANAGE"
    )
    assert "User bob now holds MANAGE on experiment churn-training." in out
    out = run(env, "experiments", "permissions", "show", world)
    assert "bob" in out and "MANAGE" in out
    run(env, "experiments", "permissions", "revoke", world, "-u", "bob", "-y")
    assert api.get(f"/experiments/{world}/permissions").json()["grants"] == []


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [
        (("models", "permissions", "grant", "churn"), "exactly one grantee", 2),
        (("models", "permissions", "grant", "churn", "-u", "bob", "-g", "x"), "exactly one", 2),
        (("experiments", "permissions", "revoke", "churn-training", "-y"), "exactly one", 2),
        (("models", "permissions", "grant", "churn", "-u", "bob", "-p", "OWNER"), "OWNER", 2),
        (("models", "permissions", "grant", "churn", "-u", "ghost"), "User 'ghost' does not", 1),
        (("models", "permissions", "grant", "churn", "-g", "nope"), "Group 'nope' does not", 1),
        (("models", "permissions", "grant", "absent", "-u", "bob"), "'absent' does not exist", 1),
        (("models", "permissions", "show", "absent"), "'absent' does not exist", 1),
        (("experiments", "permissions", "show", "absent"), "'absent' does not exist", 1),
        (("models", "permissions", "revoke", "churn", "-u", "bob", "-y"), "holds no grant", 1),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    env: dict[str, str],
    world: str,
    api: httpx.Client,
    args: tuple[str, ...],
    needle: str,
    code: int,
) -> None:
    fails(env, *args, needle=needle, code=code)
    assert api.get("/registered-models/churn/permissions").json()["grants"] == []
    assert api.get(f"/experiments/{world}/permissions").json()["grants"] == []


def test_forbidden_for_a_non_manager(
    env: dict[str, str], world: str, api: httpx.Client, make_token: Callable[..., str]
) -> None:
    # The suite's server keeps the default MANAGE, so a viewer (role cap: READ) is the caller
    # who can read the model but not manage it: refused, said clearly.
    viewer = {**env, "PODSTACK_API_TOKEN": make_token("viewer")}
    fails(viewer, "models", "permissions", "show", "churn", needle="you need MANAGE")
    fails(viewer, "models", "permissions", "grant", "churn", "-u", "bob", needle="editor role")
    assert api.get("/registered-models/churn/permissions").json()["grants"] == []


def test_embedded(settings: Settings, db: object) -> None:
    local = {
        "PODSTACK_PROGRESS": "0",
        "COLUMNS": "200",
        "PODSTACK_URL": "",
        "PODSTACK_HOME": str(settings.home),
        "PODSTACK_DATABASE_URL": settings.database_url,
        "PODSTACK_ARTIFACTS_URI": settings.artifacts_uri,
    }
    run(local, "users", "create", "dora", "--role", "viewer")
    run(local, "models", "register", "local-model")
    out = run(local, "models", "permissions", "grant", "local-model", "-u", "dora")
    assert "User dora now holds READ on model local-model." in out
    assert "dora" in run(local, "models", "permissions", "show", "local-model")

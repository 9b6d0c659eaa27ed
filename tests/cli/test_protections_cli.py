"""`podstack models protect-alias|unprotect-alias|protect-stage|unprotect-stage|protections`
against a live server."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from podstack.cli.main import app
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.server.registry.helpers import make_run

runner = CliRunner()
MODEL = "prot-cli"


@pytest.fixture
def env(live_server: LiveServer, api: httpx.Client) -> dict[str, str]:
    run_id = make_run(api)
    r = api.post(
        f"/registered-models/{MODEL}/versions",
        json={"source_run_id": run_id, "artifact_path": "model.pt"},
    )
    assert r.status_code == 201, r.text
    assert api.post("/groups", json={"name": "ml-leads"}).status_code == 201
    return {
        "PODSTACK_PROGRESS": "0",
        "COLUMNS": "200",
        "PODSTACK_URL": live_server.url,
        "PODSTACK_API_TOKEN": ADMIN_TOKEN,
    }


def _run(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def test_protect_list_unprotect(env: dict[str, str], api: httpx.Client) -> None:
    out = _run(env, "models", "protect-alias", MODEL, "champion", "--group", "ml-leads")
    assert "champion" in out and "ml-leads" in out
    assert "Production" in _run(env, "models", "protect-stage", MODEL, "production")
    out = _run(env, "models", "protections", MODEL)
    assert "champion" in out and "ml-leads" in out and "Production" in out
    _run(env, "models", "unprotect-alias", MODEL, "champion")
    _run(env, "models", "unprotect-stage", MODEL, "Production")
    assert api.get(f"/registered-models/{MODEL}/protections").json() == {
        "aliases": [],
        "stages": [],
    }


def test_bad_stage_and_unknown_group(env: dict[str, str], api: httpx.Client) -> None:
    assert "Valid stages" in _run(env, "models", "protect-stage", MODEL, "Prod", code=1)
    out = _run(env, "models", "protect-alias", MODEL, "champion", "-g", "nope", code=1)
    assert "nope" in out
    assert api.get(f"/registered-models/{MODEL}/protections").json()["aliases"] == []

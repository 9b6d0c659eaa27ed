"""`podstack schedules …` against a live server (through MLOpsClient over HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from podstack.cli.common import console
from podstack.cli.main import app
from podstack.server.db.session import Database
from podstack.server.schedules.models import ScheduleExecution
from tests.conftest import ADMIN_TOKEN, LiveServer

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console() -> Iterator[None]:
    # Rich sizes its console once, at import; under xdist that is 80 columns, which folds
    # table cells. The tables are checked for content, not for folding.
    saved = console._width
    console.width = 200
    yield
    console._width = saved


@pytest.fixture
def env(live_server: LiveServer, api: httpx.Client) -> dict[str, str]:
    api.post("/experiments", json={"name": "sentiment-exp"})
    return {
        "PODSTACK_URL": live_server.url,
        "PODSTACK_API_TOKEN": ADMIN_TOKEN,
        "PODSTACK_PROGRESS": "0",
    }


def run(env: dict[str, str], *args: str, ok: bool = True, input: str | None = None) -> str:
    result = runner.invoke(app, ["schedules", *args], env=env, input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result.output


def fails(env: dict[str, str], *args: str, needle: str) -> str:
    result = runner.invoke(app, ["schedules", *args], env=env)
    assert result.exit_code == 1, result.output
    assert "Error:" in result.stderr and needle in result.stderr, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def test_create_show_edit_pause_resume_trigger_history_cancel_delete(
    env: dict[str, str], api: httpx.Client
) -> None:
    out = run(
        env,
        "create",
        "nightly-train",
        "-e",
        "sentiment-exp",
        "--cron",
        "0 2 * * *",
        "--tz",
        "America/New_York",
        "-p",
        "lr=0.001",
        "-p",
        "epochs=10",
        "-p",
        "opt=adam",
        "--timeout",
        "3600",
        "--",
        "python",
        "train.py",
        "--epochs",
        "10",
    )
    assert "Created schedule nightly-train" in out and "At 02:00 every day" in out
    s = api.get("/schedules/nightly-train").json()
    assert s["config"] == {"lr": 0.001, "epochs": 10, "opt": "adam"}
    assert s["executor"]["command"] == ["python", "train.py", "--epochs", "10"]
    assert s["timeout_seconds"] == 3600

    assert "nightly-train" in run(env, "list") and "active" in run(env, "list")
    shown = run(env, "show", "nightly-train")
    assert "America/New_York" in shown and "python train.py --epochs 10" in shown

    out = run(env, "edit", "nightly-train", "--cron", "@hourly", "--no-timeout")
    assert "version 2" in out and "Every hour" in out
    assert api.get("/schedules/nightly-train").json()["timeout_seconds"] is None

    assert "Paused" in run(env, "pause", "nightly-train")
    assert api.get("/schedules/nightly-train").json()["paused"] is True
    assert "Resumed" in run(env, "resume", "nightly-train")

    out = run(env, "trigger", "nightly-train")
    exec_id = out.split("execution ")[1].split(" ")[0]
    hist = run(env, "history", "nightly-train")
    assert exec_id in hist and "queued" in hist and "manual" in hist
    assert "Cancelled" in run(env, "cancel", exec_id)

    run(env, "delete", "nightly-train", input="n\n", ok=False)
    assert api.get("/schedules/nightly-train").status_code == 200
    assert "Deleted" in run(env, "delete", "nightly-train", "--yes")
    assert api.get("/schedules/nightly-train").status_code == 404
    assert "deleted" in run(env, "list", "--all")


def test_webhook_create_and_bad_input(env: dict[str, str], api: httpx.Client) -> None:
    out = run(
        env,
        "create",
        "hooked",
        "-e",
        "sentiment-exp",
        "--cron",
        "@daily",
        "--webhook-url",
        "https://ci.example.com/hook",
        "--webhook-secret",
        "x" * 20,
    )
    assert "webhook https://ci.example.com/hook" in out
    # Editing the URL keeps the stored secret.
    run(env, "edit", "hooked", "--webhook-url", "https://ci2.example.com/hook")
    fails(
        env,
        "create",
        "bad",
        "-e",
        "sentiment-exp",
        "--cron",
        "0 2 * *",
        "--",
        "true",
        needle="exactly 5",
    )
    fails(
        env,
        "create",
        "bad",
        "-e",
        "sentiment-exp",
        "--cron",
        "0 2 * * *",
        "--tz",
        "Moon/X",
        "--",
        "true",
        needle="Unknown timezone",
    )
    fails(
        env,
        "create",
        "bad",
        "-e",
        "nope",
        "--cron",
        "0 2 * * *",
        "--",
        "true",
        needle="does not exist",
    )
    fails(
        env,
        "create",
        "hooked",
        "-e",
        "sentiment-exp",
        "--cron",
        "0 2 * * *",
        "--",
        "true",
        needle="already exists",
    )
    fails(
        env, "create", "bad", "-e", "sentiment-exp", "--cron", "0 2 * * *", needle="Say what to run"
    )
    fails(
        env,
        "create",
        "bad",
        "-e",
        "sentiment-exp",
        "--cron",
        "0 2 * * *",
        "-p",
        "oops",
        "--",
        "true",
        needle="KEY=VALUE",
    )
    fails(env, "pause", "missing", needle="does not exist")
    assert [s["name"] for s in api.get("/schedules").json()["items"]] == ["hooked"]


def test_history_prints_full_values_off_a_terminal_and_json(
    env: dict[str, str], api: httpx.Client, db: Database
) -> None:
    console.width = 80  # what Rich assumes when stdout is not a terminal
    name = "nightly-train-with-a-long-name"
    run(env, "create", name, "-e", "sentiment-exp", "--cron", "@daily", "--", "python", "t.py")
    out = run(env, "trigger", name)
    exec_id = out.split("execution ")[1].split(" ")[0]
    note = "Late: " + " ".join(f"word{i}" for i in range(60)) + " end-of-note."
    with db.session() as s:
        s.get(ScheduleExecution, exec_id).message = note  # type: ignore[union-attr]
    hist = run(env, "history", name)
    row = next(line for line in hist.splitlines() if exec_id in line)
    assert "…" not in hist
    assert note in row  # the whole note, on the execution's own line
    assert "manual" in row and "queued" in row
    data = json.loads(run(env, "history", name, "--output", "json"))
    assert [(d["id"], d["trigger"], d["status"], d["message"]) for d in data] == [
        (exec_id, "manual", "queued", note)
    ]
    bad = runner.invoke(app, ["schedules", "history", "x", "-o", "yaml"], env=env)
    assert bad.exit_code == 1 and "use table or json" in bad.stderr

"""MLOps > Schedules in a real browser: create (cron in words while typing), pause, resume,
edit, delete, bad input shown under its field, and the execution history of a job that really
ran (status, exit code, log tail, link to its run)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from podstack import MLOpsClient
from podstack.server.artifacts.store import BlobStore
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.schedules.scheduler import Scheduler
from tests.browser.conftest import Person, login, settled, toast
from tests.conftest import LiveServer


def _open_create(page: Any) -> Any:
    page.get_by_role("link", name="Schedules").first.click()
    expect(page).to_have_url(re.compile(r"/schedules$"))
    page.get_by_role("button", name="Create Schedule").first.click()
    dialog = page.locator("#schedule-dialog")
    expect(dialog).to_be_visible()
    return dialog


def test_create_pause_resume_edit_delete(as_admin: Any, sdk: MLOpsClient) -> None:
    sdk.create_experiment("sentiment-exp")
    page = as_admin
    dialog = _open_create(page)
    dialog.get_by_role("textbox", name="Name", exact=True).fill("nightly-train")
    dialog.get_by_label("Experiment").fill("sentiment-exp")
    dialog.get_by_label("Cron Expression").fill("0 2 * * *")
    expect(dialog.locator("[data-cron-words]")).to_have_text("At 02:00 every day")
    dialog.get_by_label("Timezone").fill("Europe/Berlin")
    dialog.get_by_label("Configuration").fill("lr=0.001\nepochs=10\noptimizer=adam")
    dialog.get_by_label("Command (one argument per line)").fill("python\ntrain.py\n--epochs\n10")
    dialog.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/schedules/sch-[0-9a-f]+$"))
    expect(toast(page)).to_contain_text("Schedule nightly-train created")
    expect(page.locator("h1 [data-state]")).to_have_text("Active")
    expect(page.locator(".meta-line [data-cron-words]")).to_have_text("At 02:00 every day")
    expect(page.locator("[data-command]")).to_have_text("python train.py --epochs 10")
    expect(page.locator("[data-next-fires] li")).to_have_count(5)
    s = sdk.get_schedule("nightly-train")
    assert s.config == {"lr": 0.001, "epochs": 10, "optimizer": "adam"}
    assert s.timezone == "Europe/Berlin" and s.executor.command == [
        "python",
        "train.py",
        "--epochs",
        "10",
    ]

    page.get_by_role("button", name="Pause").click()
    expect(toast(page)).to_contain_text("Paused nightly-train")
    expect(page.locator("h1 [data-state]")).to_have_text("Paused")
    expect(page.locator("[data-next-fires]")).to_contain_text("Paused")
    assert sdk.get_schedule("nightly-train").paused
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("h1 [data-state]")).to_have_text("Active")
    expect(page.locator("[data-next-fires] li")).to_have_count(5)

    page.get_by_role("button", name="Edit").click()
    edit = page.locator("#schedule-dialog")
    expect(edit.get_by_label("Cron Expression")).to_have_value("0 2 * * *")
    expect(edit.get_by_label("Configuration")).to_have_value("epochs=10\nlr=0.001\noptimizer=adam")
    edit.get_by_label("Cron Expression").fill("30 4 * * 1")
    expect(edit.locator("[data-cron-words]")).to_have_text("At 04:30, only on Monday")
    edit.get_by_label("Configuration").fill("lr=0.01\nepochs=10")
    edit.get_by_role("button", name="Save").click()
    expect(toast(page)).to_contain_text("saved")
    expect(page.locator(".meta-line [data-cron-words]")).to_have_text("At 04:30, only on Monday")
    edited = sdk.get_schedule("nightly-train")
    assert (edited.cron, edited.config, edited.version) == (
        "30 4 * * 1",
        {"lr": 0.01, "epochs": 10},
        2,
    )

    page.get_by_role("button", name="Delete").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text("history and runs are kept")
    confirm.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/schedules$"))
    expect(toast(page)).to_contain_text("deleted")
    expect(page.get_by_text("No schedules yet")).to_be_visible()
    assert sdk.list_schedules() == []
    assert sdk.get_schedule(s.id).deleted


def test_bad_input_is_shown_under_its_field_and_nothing_is_created(
    as_admin: Any, sdk: MLOpsClient
) -> None:
    sdk.create_experiment("sentiment-exp")
    sdk.create_schedule("taken", "sentiment-exp", "@daily", command=["true"])
    page = as_admin
    dialog = _open_create(page)
    dialog.get_by_role("textbox", name="Name", exact=True).fill("nightly")
    dialog.get_by_label("Experiment").fill("sentiment-exp")
    dialog.get_by_label("Cron Expression").fill("0 25 * * *")
    expect(dialog.locator("[data-cron-preview]")).to_contain_text("hour field")
    dialog.get_by_label("Command (one argument per line)").fill("python\ntrain.py")
    dialog.get_by_role("button", name="Create").click()
    settled(page)
    dialog = page.locator("#schedule-dialog")
    expect(dialog.locator("#cron-error")).to_contain_text("the hour field")
    dialog.get_by_label("Cron Expression").fill("0 2 * * *")
    dialog.get_by_label("Timezone").fill("Mars/Olympus")
    dialog.get_by_role("button", name="Create").click()
    settled(page)
    dialog = page.locator("#schedule-dialog")
    expect(dialog.locator("#timezone-error")).to_contain_text("Unknown timezone")
    dialog.get_by_label("Timezone").fill("UTC")
    dialog.get_by_label("Experiment").fill("no-such-exp")
    dialog.get_by_role("button", name="Create").click()
    settled(page)
    dialog = page.locator("#schedule-dialog")
    expect(dialog.locator("#experiment-error")).to_contain_text("does not exist")
    dialog.get_by_label("Experiment").fill("sentiment-exp")
    dialog.get_by_role("textbox", name="Name", exact=True).fill("taken")
    dialog.get_by_role("button", name="Create").click()
    settled(page)
    dialog = page.locator("#schedule-dialog")
    expect(dialog.locator("#name-error")).to_contain_text("already exists")
    dialog.get_by_role("textbox", name="Name", exact=True).fill("nightly")
    dialog.get_by_label("Command (one argument per line)").fill("python train.py --epochs 3")
    dialog.get_by_role("button", name="Create").click()
    settled(page)
    expect(page.locator("#schedule-dialog [role=alert]").first).to_contain_text(
        "not one shell string"
    )
    assert [x.name for x in sdk.list_schedules()] == ["taken"]


def test_history_shows_a_real_execution_with_log_and_run_link(
    as_admin: Any,
    sdk: MLOpsClient,
    db: Database,
    settings: Settings,
    live_server: LiveServer,
) -> None:
    sdk.create_experiment("sentiment-exp")
    code = (
        "import os; from podstack import MLOpsClient; c = MLOpsClient(); "
        "c.log_metrics(os.environ['PODSTACK_RUN_ID'], {'accuracy': 0.93}); "
        "print('epoch 1 done, accuracy 0.93')"
    )
    sdk.create_schedule(
        "nightly-train",
        "sentiment-exp",
        "0 2 * * *",
        {"lr": 0.001},
        command=[sys.executable, "-c", code],
    )
    page = as_admin
    page.goto("/schedules")
    page.get_by_role("link", name="nightly-train").click()
    expect(page.get_by_text("No executions yet")).to_be_visible()
    page.get_by_role("button", name="Run now").click()
    expect(toast(page)).to_contain_text("Run queued")
    row = page.locator("[data-history] tr[data-execution]")
    expect(row.locator("[data-status]")).to_have_text("Queued")
    # The live server runs no background loop in tests: drive one scheduler to completion.
    scheduler = Scheduler(db, settings, BlobStore(settings.artifacts_path), api_url=live_server.url)
    try:
        scheduler.run_until_idle(timeout=60)
    finally:
        scheduler.shutdown()
    page.reload()
    expect(row.locator("[data-status]")).to_have_text("Succeeded")
    expect(row).to_contain_text("Run now")
    expect(row.locator("td.num")).to_have_text("0")
    detail = page.locator("[data-history] tr.exec-detail")
    detail.get_by_text("Log tail").click()
    expect(detail.locator("[data-log-tail]")).to_contain_text("epoch 1 done, accuracy 0.93")
    expect(page.locator("table[data-schedules-table]")).to_have_count(0)
    row.locator("[data-run-link]").click()
    expect(page).to_have_url(re.compile(r"/runs/run-[0-9a-f]+$"))
    expect(page.locator("[data-params]")).to_contain_text("lr")
    expect(page.locator("[data-metrics]")).to_contain_text("accuracy")
    # The list shows the last run's status.
    page.goto("/schedules")
    expect(page.locator("tr[data-schedule='nightly-train'] [data-status]")).to_have_text(
        "Succeeded"
    )
    # Filtering the history by status.
    page.get_by_role("link", name="nightly-train").click()
    page.get_by_label("Status").select_option("failed")
    expect(page.get_by_text("No executions with this status")).to_be_visible()


def test_editors_cannot_pick_local_commands_and_viewers_only_look(
    page: Any, sdk: MLOpsClient, make_user: Callable[..., Person]
) -> None:
    sdk.create_experiment("sentiment-exp")
    sdk.create_schedule("nightly-train", "sentiment-exp", "@daily", command=["true"])
    login(page, make_user("editor"))
    dialog = _open_create(page)
    options = dialog.get_by_label("Runs as").locator("option")
    expect(options).to_have_text(["Webhook (Airflow, Prefect, CI)", "Kubernetes Job", "Ray job"])
    dialog.get_by_role("textbox", name="Name", exact=True).fill("ci-train")
    dialog.get_by_label("Experiment").fill("sentiment-exp")
    dialog.get_by_label("Cron Expression").fill("@hourly")
    dialog.get_by_label("Webhook URL").fill("https://ci.example.com/hooks/train")
    dialog.get_by_label("Signing secret").fill("0123456789abcdef-secret")
    dialog.get_by_role("button", name="Create").click()
    expect(toast(page)).to_contain_text("Schedule ci-train created")
    expect(page.locator(".kv")).to_contain_text("Webhook https://ci.example.com/hooks/train")
    # An admin's local job: the editor may run or pause it but not edit it.
    page.goto("/schedules")
    page.get_by_role("link", name="nightly-train").click()
    expect(page.get_by_role("button", name="Run now")).to_be_visible()
    expect(page.get_by_role("button", name="Edit")).to_have_count(0)

    page.context.clear_cookies()
    login(page, make_user("viewer"))
    page.goto("/schedules")
    expect(page.locator("[data-schedules-table] tbody tr")).to_have_count(2)
    expect(page.get_by_role("button", name="Create Schedule")).to_have_count(0)
    page.get_by_role("link", name="nightly-train").click()
    expect(page.get_by_role("button", name="Run now")).to_have_count(0)
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)

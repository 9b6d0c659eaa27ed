"""Experiments and runs: list, runs table (sort, filter language, status), run page (params,
tags, datasets, charts, artifact browser, download) and Register to Model Registry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import seed_run, settled, toast


def _runs(sdk: Any, tmp_path: Path) -> list[str]:
    return [
        seed_run(sdk, tmp_path, name="low", params={"lr": 0.1, "epochs": 2}, final=0.5),
        seed_run(sdk, tmp_path, name="high", params={"lr": 0.001, "epochs": 4}, final=1.0),
        seed_run(sdk, tmp_path, name="mid", params={"lr": 0.01, "epochs": 3}, final=0.8),
    ]


def test_experiments_list_search_and_runs_table(as_admin: Any, sdk: Any, tmp_path: Path) -> None:
    _runs(sdk, tmp_path)
    sdk.create_experiment("vision-exp", description="ResNet on product photos")
    page = as_admin
    page.get_by_role("link", name="Experiments").first.click()
    expect(page.locator("[data-experiments-table] tbody tr")).to_have_count(2)
    page.get_by_label("Search experiments").fill("photos")
    expect(page.locator("[data-experiments-table] tbody tr")).to_have_count(1)
    page.get_by_label("Search experiments").fill("")
    expect(page.locator("[data-experiments-table] tbody tr")).to_have_count(2)
    page.get_by_role("link", name="sentiment-exp").click()
    table = page.locator("[data-runs-table]")
    expect(table.locator("thead")).to_contain_text("accuracy")
    expect(table.locator("thead")).to_contain_text("epochs")
    expect(table.locator("tbody tr")).to_have_count(3)
    # Sort by the accuracy column, descending then ascending.
    table.get_by_role("link", name="accuracy").click()
    expect(page).to_have_url(re.compile(r"sort=metric%3Aaccuracy&dir=desc"))
    first_cells = page.locator("[data-runs-table] tbody tr td.primary-cell a")
    expect(first_cells).to_have_text(["high", "mid", "low"])
    page.locator("[data-runs-table]").get_by_role("link", name=re.compile("accuracy")).click()
    expect(first_cells).to_have_text(["low", "mid", "high"])
    # The tracking filter language.
    page.get_by_label("Filter runs").fill("metrics.accuracy >= 0.7 and params.epochs != '2'")
    page.get_by_label("Filter runs").press("Enter")
    # The sort chosen before filtering is kept.
    expect(page).to_have_url(re.compile(r"sort=metric%3Aaccuracy&dir=asc"))
    expect(first_cells).to_have_text(["mid", "high"])
    page.get_by_label("Filter runs").fill("metrics.accuracy >>> 1")
    page.get_by_label("Filter runs").press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Invalid filter")
    page.get_by_label("Filter runs").fill("")
    page.get_by_label("Status").select_option("FAILED")
    expect(page.get_by_text("No runs match")).to_be_visible()


def test_run_page_overview_charts_and_artifacts(as_admin: Any, sdk: Any, tmp_path: Path) -> None:
    rid = seed_run(sdk, tmp_path, name="bert-base")
    page = as_admin
    page.goto(f"/runs/{rid}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("bert-base")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Finished")
    expect(page.locator("[data-params]")).to_contain_text("optimizer")
    expect(page.locator("[data-metrics]")).to_contain_text("accuracy")
    expect(page.locator("[data-tags]")).to_contain_text("team=nlp")
    expect(page.locator("[data-datasets]")).to_contain_text("reviews-v2")
    expect(page.locator("[data-datasets]")).to_contain_text("training")
    page.get_by_role("link", name=re.compile("Metric charts")).click()
    expect(page.locator("[data-charts] canvas")).to_have_count(2)
    page.get_by_role("link", name="Artifacts").click()
    rows = page.locator("tr[data-artifact]")
    expect(rows).to_have_count(3)
    page.get_by_role("link", name="tokenizer/").click()
    expect(page.locator("tr[data-artifact]")).to_have_count(1)
    with page.expect_download() as dl:
        page.locator('tr[data-artifact="tokenizer/vocab.txt"]').get_by_role(
            "link", name="Download"
        ).click()
    assert dl.value.path().read_text() == "a\nb\nc"
    page.locator(".card-header .breadcrumbs").get_by_role("link", name="artifacts").click()
    expect(page.locator("tr[data-artifact]")).to_have_count(3)


def test_register_to_model_registry_from_a_run(as_admin: Any, sdk: Any, tmp_path: Path) -> None:
    rid = seed_run(sdk, tmp_path, name="bert-base")
    sdk.register_model(name="sentiment-classifier")
    page = as_admin
    page.goto(f"/runs/{rid}?tab=artifacts")
    page.locator('tr[data-artifact="model.pt"]').get_by_role("button", name="Register").click()
    dialog = page.locator("#register-dialog")
    expect(dialog.get_by_label("Artifact")).to_have_value("model.pt")
    # A new model with an invalid name: inline error, nothing created.
    dialog.get_by_role("radio", name="New model").check()
    dialog.get_by_label("Model name").fill("not valid!")
    dialog.get_by_role("button", name="Register").click()
    expect(dialog.locator(".field-error")).to_contain_text("Invalid model name")
    # An existing model that does not exist: told to pick one or choose New model.
    dialog.get_by_role("radio", name="Existing model").check()
    dialog.get_by_label("Model name").fill("no-such-model")
    dialog.get_by_role("button", name="Register").click()
    expect(dialog.locator(".field-error")).to_contain_text("There is no model named")
    settled(page)
    # The existing model, suggested as you type.
    dialog.get_by_label("Model name").fill("sentiment")
    expect(dialog.locator("#model-options option")).to_have_count(1)
    dialog.get_by_label("Model name").fill("sentiment-classifier")
    dialog.get_by_label("Version description").fill("Fine-tuned on customer reviews dataset")
    dialog.get_by_role("button", name="Register").click()
    expect(page).to_have_url(re.compile(r"/models/sentiment-classifier/versions/1$"))
    expect(toast(page)).to_contain_text("Registered sentiment-classifier version 1.")
    expect(page.locator("[data-version-details]")).to_contain_text(rid)
    expect(page.locator("[data-version-description]")).to_have_text(
        "Fine-tuned on customer reviews dataset"
    )
    # A directory as a brand-new model.
    page.goto(f"/runs/{rid}?tab=artifacts")
    page.get_by_role("button", name="Register to Model Registry").click()
    dialog = page.locator("#register-dialog")
    dialog.get_by_label("Artifact").select_option("tokenizer")
    dialog.get_by_role("radio", name="New model").check()
    dialog.get_by_label("Model name").fill("review-tokenizer")
    dialog.get_by_role("button", name="Register").click()
    expect(page).to_have_url(re.compile(r"/models/review-tokenizer/versions/1$"))
    assert [f.path for f in sdk.list_model_version_files("review-tokenizer", 1)] == ["vocab.txt"]

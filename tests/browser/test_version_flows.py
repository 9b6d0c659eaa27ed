"""Version page flows: tabs, Change Stage, description, tags, artifacts download (selected
files as a zip, single files), Delete Version (refused while in Production), lineage."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Seeded, settled, toast


def test_change_stage_with_note_and_archive_existing(
    as_admin: Any, seeded: Seeded, sdk: Any
) -> None:
    page = as_admin
    page.goto("/models/sentiment-classifier/versions/3")
    expect(page.locator("[data-stage]")).to_contain_text("Staging")
    page.get_by_role("button", name="Change Stage").click()
    dialog = page.locator("#stage-dialog")
    expect(dialog.get_by_role("radio", name="Staging")).to_be_disabled()  # the current stage
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog.locator(".field-error")).to_contain_text("Choose the stage")
    settled(page)
    dialog.get_by_role("radio", name="Production").check()
    dialog.get_by_label("Transition note (optional)").fill("A/B test won: +5 points")
    dialog.get_by_label(re.compile("Archive the versions currently in the target stage")).check()
    dialog.get_by_role("button", name="Confirm").click()
    expect(toast(page)).to_contain_text("Version 3 moved to Production.")
    expect(page.locator("[data-stage]")).to_contain_text("Production")
    history = page.locator("[data-stage-history]")
    expect(history.locator("li").first).to_contain_text("Production")
    expect(history.locator("li").first).to_contain_text("A/B test won: +5 points")
    expect(history.locator("li").first).to_contain_text("admin")
    assert sdk.get_model_version("sentiment-classifier", 2).stage == "Archived"
    page.goto("/models/sentiment-classifier")
    expect(page.locator('tr[data-version="2"]')).to_contain_text("Archived")
    expect(page.locator("[data-production-version]")).to_contain_text("v3")


def test_delete_version_disabled_in_production_and_confirmed_otherwise(
    as_admin: Any, seeded: Seeded, sdk: Any
) -> None:
    page = as_admin
    page.goto("/models/sentiment-classifier/versions/2")
    delete = page.get_by_role("button", name="Delete Version")
    expect(delete).to_be_disabled()
    expect(page.locator("#delete-reason")).to_contain_text("Production versions cannot be deleted")
    # Posting anyway (e.g. a stale page) is refused by the service with the rule.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = page.request.post(
        "/models/sentiment-classifier/versions/2/delete",
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert refused.status == 409
    assert "Transition it to Archived first" in refused.text()
    assert sdk.get_model_version("sentiment-classifier", 2).version == 2
    # A refusal arriving in the dialog is shown there (the page stays), as Delete Model does.
    page.goto("/models/sentiment-classifier/versions/3")
    sdk.transition_model_version_stage("sentiment-classifier", 3, "Production")  # page is stale
    page.get_by_role("button", name="Delete Version").click()
    dialog = page.locator("#delete-version-dialog")
    dialog.get_by_role("button", name="Delete version").click()
    expect(dialog.locator("[data-refusal]")).to_contain_text("in Production and cannot be deleted")
    expect(page).to_have_url(re.compile(r"/versions/3$"))
    expect(page.locator("h1")).to_contain_text("Version 3")
    dialog.get_by_role("button", name="Cancel").click()
    assert sdk.get_model_version("sentiment-classifier", 3).version == 3
    page.goto("/models/sentiment-classifier/versions/1")
    page.get_by_role("button", name="Delete Version").click()
    confirm = page.locator("#delete-version-dialog")
    expect(confirm).to_contain_text("Delete version 1 of sentiment-classifier?")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    assert sdk.get_model_version("sentiment-classifier", 1).version == 1
    page.get_by_role("button", name="Delete Version").click()
    confirm.get_by_role("button", name="Delete version").click()
    expect(page).to_have_url(re.compile(r"/models/sentiment-classifier$"))
    expect(toast(page)).to_contain_text("Version 1 of sentiment-classifier deleted.")
    expect(page.locator("tr[data-version]")).to_have_count(2)


def test_edit_description_and_tags(as_admin: Any, seeded: Seeded, sdk: Any) -> None:
    page = as_admin
    page.goto("/models/sentiment-classifier/versions/3")
    page.locator("#desc-h").locator("..").get_by_role("button", name="Edit").click()
    page.get_by_role("textbox", name="Description").fill("Fine-tuned on customer reviews dataset")
    page.get_by_role("button", name="Save description").click()
    expect(toast(page)).to_contain_text("Description saved.")
    expect(page.locator("[data-version-description]")).to_have_text(
        "Fine-tuned on customer reviews dataset"
    )
    page.get_by_label("Key").fill("validated_by")
    page.get_by_label("Value").fill("ml-team")
    page.get_by_role("button", name="Set tag").click()
    expect(toast(page)).to_contain_text("Tag validated_by saved.")
    expect(page.locator("[data-version-tags]")).to_contain_text("ml-team")
    page.get_by_label("Key").fill("bad key!")
    page.get_by_role("button", name="Set tag").click()
    expect(page.locator("[data-tag-form] .field-error")).to_contain_text("Tag keys are")
    settled(page)
    page.get_by_role("button", name="Delete tag validated_by").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete tag").click()
    expect(toast(page)).to_contain_text("Tag validated_by deleted.")
    assert sdk.get_model_version("sentiment-classifier", 3).tags == {}


def test_artifacts_tab_downloads_selected_files_as_zip(as_admin: Any, seeded: Seeded) -> None:
    page = as_admin
    page.goto("/models/sentiment-classifier/versions/3?tab=artifacts")
    files = page.locator("tr[data-file]")
    expect(files).to_have_count(3)
    expect(page.locator('tr[data-file="model.pt"]')).to_contain_text("400 B")
    selected = page.get_by_role("button", name="Download selected")
    expect(selected).to_be_disabled()
    page.get_by_label("Select model.pt").check()
    page.get_by_label("Select config.json").check()
    expect(page.locator("[data-count]")).to_have_text("2")
    with page.expect_download() as info:
        selected.click()
    data = info.value.path().read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["config.json", "model.pt"]
        assert zf.read("config.json") == b'{"layers": 12}'
        assert zf.testzip() is None
    assert info.value.suggested_filename == "sentiment-classifier-v3.zip"
    page.get_by_label("Select all files").check()
    expect(page.locator("[data-count]")).to_have_text("3")
    with page.expect_download() as all_info:
        page.get_by_role("link", name="Download all (.zip)").click()
    with zipfile.ZipFile(io.BytesIO(all_info.value.path().read_bytes())) as zf:
        assert sorted(zf.namelist()) == ["config.json", "model.pt", "tokenizer/vocab.txt"]
    with page.expect_download() as one:
        page.locator('tr[data-file="tokenizer/vocab.txt"]').get_by_role(
            "link", name="Download"
        ).click()
    assert one.value.suggested_filename == "vocab.txt"
    assert one.value.path().read_text() == "a\nb\nc"


def test_metrics_tab_shows_training_validation_and_comparison(
    as_admin: Any, seeded: Seeded, sdk: Any
) -> None:
    sdk.log_model_version_metrics("sentiment-classifier", 3, {"holdout_accuracy": 0.93})
    page = as_admin
    page.goto("/models/sentiment-classifier/versions/3?tab=metrics")
    expect(page.locator(".chart-card canvas")).to_have_count(2)
    expect(page.locator("[data-validation-metrics]")).to_contain_text("holdout_accuracy")
    table = page.locator("[data-metric-comparison]")
    expect(table.locator("thead")).to_contain_text("v3 (baseline)")
    expect(table.locator("thead")).to_contain_text("v1")
    expect(table.locator('tr[data-metric="accuracy"] td.best')).to_have_count(1)


def test_lineage_tab_graph_and_fine_tuned_child(as_admin: Any, seeded: Seeded, sdk: Any) -> None:
    sdk.create_model_version(
        "sentiment-classifier-de",
        seeded.runs[2],
        "model.pt",
        parent="models:/sentiment-classifier/3",
    )
    page = as_admin
    page.goto("/models/sentiment-classifier-de/versions/1?tab=lineage")
    graph = page.locator("[data-lineage]")
    expect(graph).to_have_attribute("data-node-count", re.compile(r"^[5-9]$"))
    listing = page.locator("[data-lineage-list]")
    expect(listing.locator('li[data-kind="experiment"]')).to_contain_text("sentiment-exp")
    expect(listing.locator('li[data-kind="dataset"]')).to_contain_text("reviews-v2")
    expect(listing.locator('li[data-kind="params"]')).to_contain_text("epochs=5")
    expect(listing).to_contain_text("sentiment-classifier v3")
    expect(page.locator("[data-version-details]")).to_have_count(0)
    listing.get_by_role("link", name="sentiment-classifier v3").click()
    expect(page).to_have_url(re.compile(r"/models/sentiment-classifier/versions/3\?tab=lineage$"))
    expect(page.locator('[data-lineage-list] li[data-kind="model_version"]')).to_have_count(2)
    page.get_by_role("link", name="Overview").click()
    expect(page.locator("[data-version-details]")).to_contain_text("sentiment-exp")

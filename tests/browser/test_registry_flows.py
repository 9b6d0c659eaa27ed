"""Model Registry flows: list, search and filters, Register Model, model page, aliases,
compare, delete model (including the Production refusal)."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from podstack.server.registry import service as registry
from tests.browser.conftest import Seeded, settled, toast


def test_register_model_dialog_with_inline_validation(as_admin: Any, sdk: Any) -> None:
    page = as_admin
    page.goto("/models")
    expect(page.get_by_text("No models registered yet")).to_be_visible()
    page.get_by_role("button", name="Register Model").first.click()
    dialog = page.locator("#register-model-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Name").fill("bad name/with spaces")
    dialog.get_by_role("button", name="Register").click()
    expect(dialog.locator(".field-error")).to_contain_text("Invalid model name")
    expect(dialog.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    settled(page)
    assert sdk.search_registered_models() == []
    dialog.get_by_label("Name").fill("sentiment-classifier")
    dialog.get_by_label("Description").fill("BERT-based sentiment analysis model")
    dialog.get_by_label("Tags").fill("nlp, sentiment, production-ready")
    dialog.get_by_role("button", name="Register").click()
    expect(page).to_have_url(re.compile(r"/models/sentiment-classifier$"))
    expect(toast(page)).to_contain_text("Model sentiment-classifier registered.")
    expect(page.locator(".meta-line .chip")).to_have_text(["nlp", "production-ready", "sentiment"])
    expect(page.get_by_text("No versions yet")).to_be_visible()
    # Duplicate name: refused inline, nothing new.
    page.goto("/models")
    page.get_by_role("button", name="Register Model").first.click()
    page.locator("#register-model-dialog").get_by_label("Name").fill("sentiment-classifier")
    page.locator("#register-model-dialog").get_by_role("button", name="Register").click()
    expect(page.locator("#register-model-dialog .field-error")).to_contain_text("already exists")


def test_model_list_shows_versions_and_filters(as_admin: Any, seeded: Seeded, sdk: Any) -> None:
    sdk.register_model(name="resnet50", description="Image classifier", tags=["vision"])
    page = as_admin
    page.goto("/models")
    row = page.locator('tr[data-model="sentiment-classifier"]')
    expect(row).to_contain_text("v3")
    expect(row).to_contain_text("Staging")
    expect(row.locator("td").nth(2)).to_contain_text("v2")
    expect(row).to_contain_text("BERT-based sentiment analysis model")
    # Search by description text.
    page.get_by_label("Search models").fill("image")
    expect(page.locator("tr[data-model]")).to_have_count(1)
    expect(page.locator("tr[data-model]")).to_have_attribute("data-model", "resnet50")
    expect(page).to_have_url(re.compile(r"q=image"))
    page.get_by_label("Search models").fill("")
    # Stage filter.
    page.get_by_label("Stage").select_option("Production")
    expect(page.locator("tr[data-model]")).to_have_count(1)
    expect(page.locator("tr[data-model]")).to_have_attribute("data-model", "sentiment-classifier")
    page.get_by_label("Stage").select_option("")
    expect(page.locator("tr[data-model]")).to_have_count(2)
    # Label filter by clicking a label chip.
    page.locator('tr[data-model="resnet50"] a.chip', has_text="vision").click()
    expect(page.locator("tr[data-model]")).to_have_count(1)
    expect(page.get_by_label("Labels")).to_have_value("vision")
    # Nothing matches: a helpful empty state.
    page.goto("/models?q=nothing-like-this")
    expect(page.get_by_text("No models match these filters")).to_be_visible()


def test_model_list_paginates(as_admin: Any, db: Any) -> None:
    with db.session() as s:
        for i in range(55):
            registry.register_model(s, "test", f"model-{i:03d}")
    page = as_admin
    page.goto("/models")
    expect(page.locator("tr[data-model]")).to_have_count(50)
    expect(page.locator("tr[data-model]").first).to_have_attribute("data-model", "model-000")
    page.get_by_role("link", name="Next page →").click()
    expect(page.locator("tr[data-model]")).to_have_count(5)
    expect(page.locator("tr[data-model]").first).to_have_attribute("data-model", "model-050")
    page.get_by_role("link", name="← First page").click()
    expect(page.locator("tr[data-model]")).to_have_count(50)


def test_model_page_versions_history_chart_lineage(as_admin: Any, seeded: Seeded) -> None:
    page = as_admin
    page.goto("/models/sentiment-classifier")
    rows = page.locator("tr[data-version]")
    expect(rows).to_have_count(3)
    expect(page.locator('tr[data-version="2"]')).to_contain_text("Production")
    expect(page.locator('tr[data-version="1"]')).to_contain_text("Archived")
    expect(page.locator('tr[data-version="3"]')).to_contain_text("Staging")
    history = page.locator("[data-history]")
    expect(history).to_contain_text("candidate")
    expect(history).to_contain_text("admin")
    expect(history.locator("li").first).to_contain_text("v3")
    expect(page.locator("[data-version-charts] canvas").first).to_be_visible()
    expect(page.locator("[data-lineage]")).to_have_attribute("data-node-count", re.compile(r"\d+"))
    expect(page.get_by_text("Not deployed")).to_be_visible()


def test_compare_versions_has_a_shareable_url(as_admin: Any, seeded: Seeded) -> None:
    page = as_admin
    page.goto("/models/sentiment-classifier")
    compare = page.get_by_role("button", name="Compare")
    expect(compare).to_be_disabled()
    page.get_by_label("Select version 1").check()
    expect(compare).to_be_disabled()
    page.get_by_label("Select version 3").check()
    expect(page.locator("[data-count]")).to_have_text("2")
    compare.click()
    expect(page).to_have_url(re.compile(r"/models/sentiment-classifier/compare\?v=3&v=1$"))
    shared = page.url
    table = page.locator("[data-metric-comparison]")
    expect(table.locator("thead")).to_contain_text("v1 (baseline)")
    expect(table.locator('tr[data-metric="accuracy"]')).to_contain_text("+")
    expect(page.locator('[data-param-changes] tr[data-param="epochs"]')).to_contain_text("5")
    expect(page.locator("[data-compare-charts] canvas")).to_have_count(2)
    # The URL alone reproduces the comparison (e.g. pasted by a colleague).
    other = page.context.new_page()
    other.goto(shared)
    expect(other.locator("[data-metric-comparison] thead")).to_contain_text("v3")


def test_manage_aliases_add_move_delete_and_reserved(
    as_admin: Any, seeded: Seeded, sdk: Any
) -> None:
    page = as_admin
    page.goto("/models/sentiment-classifier")
    page.get_by_role("button", name="Manage Aliases").click()
    dialog = page.locator("#aliases-dialog")
    dialog.get_by_label("New alias").fill("latest-prod")
    dialog.get_by_label("Version", exact=True).select_option("2")
    dialog.get_by_role("button", name="Add alias").click()
    expect(dialog.locator('tr[data-alias="latest-prod"]')).to_be_visible()
    expect(toast(page)).to_contain_text("latest-prod now points at version 2")
    assert (
        sdk.get_model_by_alias(model_name="sentiment-classifier", alias="latest-prod").version == 2
    )
    settled(page)
    # Move it.
    dialog.get_by_label("Version for latest-prod").select_option("3")
    dialog.locator('tr[data-alias="latest-prod"]').get_by_role("button", name="Move").click()
    expect(toast(page)).to_contain_text("now points at version 3")
    assert (
        sdk.get_model_by_alias(model_name="sentiment-classifier", alias="latest-prod").version == 3
    )
    settled(page)
    # Reserved name: refused with the reason, nothing added.
    dialog.get_by_label("New alias").fill("latest")
    dialog.get_by_role("button", name="Add alias").click()
    expect(dialog.locator(".field-error")).to_contain_text("reserved")
    settled(page)
    # Delete it: asks first (Cancel keeps it), then deletes and reloads the model page.
    dialog.get_by_role("button", name="Delete alias latest-prod").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text("Delete alias @latest-prod (now v3)?")
    expect(confirm).to_contain_text("models:/sentiment-classifier@latest-prod will stop resolving")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    assert [a.alias for a in sdk.list_model_aliases("sentiment-classifier")] == ["latest-prod"]
    dialog.get_by_role("button", name="Delete alias latest-prod").click()
    confirm.get_by_role("button", name="Delete alias").click()
    expect(toast(page)).to_contain_text("Alias latest-prod deleted.")
    assert sdk.list_model_aliases("sentiment-classifier") == []
    expect(page.locator("[data-aliases-summary]")).to_contain_text("No aliases")


def test_delete_model_refused_while_in_production_then_allowed(
    as_admin: Any, seeded: Seeded, sdk: Any
) -> None:
    page = as_admin
    page.goto("/models/sentiment-classifier")
    page.get_by_role("button", name="Delete Model").click()
    dialog = page.locator("#delete-model-dialog")
    confirm = dialog.get_by_role("button", name="Delete model")
    expect(confirm).to_be_disabled()
    # Named before anything is typed: which versions block the deletion.
    expect(dialog.locator("[data-production-versions]")).to_contain_text(
        "Version v2 is in Production. Move it to Archived first"
    )
    dialog.get_by_label("Type sentiment-classifier to confirm").fill("sentiment-class")
    expect(confirm).to_be_disabled()
    dialog.get_by_label("Type sentiment-classifier to confirm").fill("sentiment-classifier")
    expect(confirm).to_be_enabled()
    confirm.click()
    expect(dialog.locator("[data-refusal]")).to_contain_text("v2 are in Production")
    expect(dialog.locator("[data-refusal]")).to_contain_text("Archived first")
    assert sdk.get_registered_model("sentiment-classifier").name == "sentiment-classifier"
    sdk.transition_model_version_stage("sentiment-classifier", 2, "Archived")
    dialog.get_by_role("button", name="Delete model").click()
    expect(page).to_have_url(re.compile(r"/models$"))
    expect(toast(page)).to_contain_text("sentiment-classifier and all its versions were deleted")
    expect(page.get_by_text("No models registered yet")).to_be_visible()


def test_edit_model_description_and_labels(as_admin: Any, seeded: Seeded) -> None:
    page = as_admin
    page.goto("/models/sentiment-classifier")
    page.get_by_role("button", name="Edit").click()
    dialog = page.locator("#edit-model-dialog")
    dialog.get_by_label("Description").fill("Now with <b>markup</b> that must stay text")
    dialog.get_by_label("Tags").fill("nlp, bad<label>")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".field-error")).to_contain_text("not a valid label")
    settled(page)
    dialog.get_by_label("Tags").fill("nlp, reviews")
    dialog.get_by_role("button", name="Save").click()
    expect(toast(page)).to_contain_text("Model details saved.")
    expect(page.locator("[data-model-description]")).to_have_text(
        "Now with <b>markup</b> that must stay text"
    )
    expect(page.locator(".meta-line .chip")).to_have_text(["nlp", "reviews"])

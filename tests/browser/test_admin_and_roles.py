"""Roles in the UI (viewers see no edit controls and are refused when posting anyway), the
admin users page, and the API tokens page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import Person, Seeded, login, seed_run, settled, toast


def test_viewer_sees_no_edit_controls(page: Any, make_user: Any, seeded: Seeded) -> None:
    viewer: Person = make_user("viewer")
    login(page, viewer)
    page.goto("/models")
    expect(page.locator("tr[data-model]")).to_have_count(1)
    expect(page.get_by_role("button", name="Register Model")).to_have_count(0)
    page.goto("/models/sentiment-classifier")
    expect(page.locator("tr[data-version]")).to_have_count(3)
    for name in ("Edit", "Delete Model"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    page.get_by_role("button", name="Manage Aliases").click()
    expect(page.locator("#aliases-dialog")).to_be_visible()
    expect(page.locator("#aliases-dialog form")).to_have_count(0)
    page.goto("/models/sentiment-classifier/versions/3")
    for name in ("Change Stage", "Delete Version", "Edit", "Set tag"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_role("link", name="Download")).to_be_visible()
    page.goto(f"/runs/{seeded.runs[0]}?tab=artifacts")
    expect(page.locator("tr[data-artifact]")).to_have_count(3)
    expect(page.get_by_role("button", name=re.compile("Register"))).to_have_count(0)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)


def test_viewer_posting_anyway_is_refused(
    page: Any, make_user: Any, seeded: Seeded, sdk: Any
) -> None:
    viewer: Person = make_user("viewer")
    login(page, viewer)
    page.goto("/models/sentiment-classifier/versions/3")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    headers = {"X-CSRF-Token": token}
    attempts = [
        ("/models", {"name": "viewer-model"}),
        ("/models/sentiment-classifier/versions/3/stage", {"stage": "Production"}),
        ("/models/sentiment-classifier/versions/1/delete", {}),
        ("/models/sentiment-classifier/aliases", {"alias": "mine", "version": "3"}),
        ("/models/sentiment-classifier/delete", {"confirm_name": "sentiment-classifier"}),
        (
            f"/runs/{seeded.runs[0]}/register",
            {"artifact_path": "model.pt", "mode": "new", "model_name": "x"},
        ),
        ("/admin/users", {"username": "intruder", "role": "admin"}),
    ]
    for url, form in attempts:
        resp = page.request.post(url, form=form, headers=headers)
        assert resp.status == 403, (url, resp.status)
        assert "needs the" in resp.text() and "you (" in resp.text()
    versions = {v.version: v.stage for v in sdk.list_model_versions("sentiment-classifier")}
    assert versions == {1: "Archived", 2: "Production", 3: "Staging"}
    assert [m.name for m in sdk.search_registered_models()] == ["sentiment-classifier"]
    assert sdk.list_model_aliases("sentiment-classifier") == []
    # The refusal page itself is a proper page.
    page.goto("/admin/users")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("[data-error-message]")).to_contain_text("needs the admin role")


def test_admin_creates_user_changes_role_and_disables(as_admin: Any, live_server: Any) -> None:
    page = as_admin
    page.locator(".user-menu summary").click()
    page.get_by_role("menuitem", name="Users").click()
    expect(page).to_have_url(re.compile(r"/admin/users$"))
    page.get_by_role("button", name="Create user").click()
    dialog = page.locator("#create-user-dialog")
    dialog.get_by_label("Username").fill("bad name")
    dialog.get_by_role("button", name="Create user").click()
    expect(dialog.locator(".field-error, .alert-error").first).to_contain_text("Usernames are")
    settled(page)
    dialog.get_by_label("Username").fill("maria")
    dialog.get_by_label("Display name").fill("Maria Rossi")
    dialog.get_by_label("Role").select_option("viewer")
    dialog.get_by_label("Password (optional)").fill("maria-password-1")
    dialog.get_by_role("button", name="Create user").click()
    expect(toast(page)).to_contain_text("User maria created.")
    row = page.locator('tr[data-user="maria"]')
    expect(row).to_contain_text("Maria Rossi")
    row.get_by_label("Role of maria").select_option("editor")
    expect(toast(page)).to_contain_text("maria is now editor.")
    expect(page.locator('tr[data-user="maria"]').get_by_label("Role of maria")).to_have_value(
        "editor"
    )
    # The last admin cannot demote themself: refused, the select snaps back.
    page.locator('tr[data-user="admin"]').get_by_label("Role of admin").select_option("viewer")
    expect(toast(page)).to_contain_text("last active admin")
    expect(page.locator('tr[data-user="admin"]').get_by_label("Role of admin")).to_have_value(
        "admin"
    )
    page.locator('tr[data-user="maria"]').get_by_role("button", name="Disable").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Disable user").click()
    expect(toast(page)).to_contain_text("maria is disabled")
    expect(page.locator('tr[data-user="maria"]')).to_contain_text("Disabled")
    # A disabled user cannot sign in.
    other = page.context.browser.new_context(base_url=live_server.url)
    p2 = other.new_page()
    p2.goto("/login")
    p2.get_by_label("Username").fill("maria")
    p2.get_by_label("Password or API token").fill("maria-password-1")
    p2.get_by_role("button", name="Sign in").click()
    expect(p2.get_by_role("alert")).to_contain_text("Wrong username or password.")
    other.close()


def test_api_token_created_once_listed_and_revoked(
    page: Any, make_user: Any, live_server: Any
) -> None:
    editor: Person = make_user("editor")
    login(page, editor)
    page.locator(".user-menu summary").click()
    page.get_by_role("menuitem", name="API tokens").click()
    expect(page.get_by_text("No tokens yet")).to_be_visible()
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#token-form .field-error")).to_contain_text("Give the token a name")
    settled(page)
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Expires").select_option("30")
    page.get_by_role("button", name="Create token").click()
    created = page.locator("[data-token-created]")
    expect(created).to_contain_text("Token “laptop” created.")
    value = page.get_by_label("New token value").input_value()
    assert value.startswith("pst_")
    who = httpx.get(live_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {value}"})
    assert who.json()["username"] == editor.username
    row = page.locator("[data-tokens-table] tbody tr").first
    expect(row).to_contain_text("laptop")
    expect(row).to_contain_text(value[:8])
    expect(row).to_contain_text("Active")
    # Shown once: a reload lists the token but never its value again.
    page.reload()
    expect(page.locator("[data-token-created]")).to_have_count(0)
    assert value not in page.content()
    page.get_by_role("button", name="Revoke").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("Revoke token “laptop”?")
    dialog.get_by_role("button", name="Revoke token").click()
    expect(toast(page)).to_contain_text("Token “laptop” revoked.")
    expect(page.locator("[data-tokens-table] tbody tr").first).to_contain_text("Revoked")
    refused = httpx.get(
        live_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {value}"}
    )
    assert refused.status_code == 401


def test_shell_navigation_placeholders_and_not_found(as_admin: Any) -> None:
    page = as_admin
    for label in ("Approvals", "Schedules", "Deployments"):
        page.locator(".sidebar").get_by_role("link", name=label).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(label)
        expect(page.locator(".sidebar a[aria-current=page]")).to_have_text(label)
        # Sections whose issue has not landed yet show a tidy placeholder.
        if page.locator("[data-placeholder]").count():
            expect(page.get_by_text(f"{label} are coming soon")).to_be_visible()
    page.locator(".sidebar").get_by_role("link", name="Model Registry").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Model Registry")
    page.goto("/no/such/page")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    page.goto("/models/does-not-exist")
    expect(page.locator("[data-error-message]")).to_contain_text("'does-not-exist' does not exist")


def test_user_text_renders_inert(as_admin: Any, sdk: Any, tmp_path: Path) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    rid = seed_run(sdk, tmp_path, name=evil, params={"note": evil})
    sdk.register_model(name="safe-model", description=evil, tags=["nlp"])
    sdk.create_model_version("safe-model", rid, "model.pt", description=evil)
    page = as_admin
    for url in (
        "/models",
        "/models/safe-model",
        "/models/safe-model/versions/1",
        f"/runs/{rid}",
        "/experiments/sentiment-exp",
    ):
        page.goto(url)
        expect(page.get_by_text(evil).first).to_be_visible()
        assert page.locator("img[src=x]").count() == 0
    # Native dialogs would have been recorded by the fixture and failed the test.

"""Sign-in, sign-out, redirects, lockout and CSRF, walked in the browser."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Person, login
from tests.conftest import ADMIN_TOKEN


def test_unauthenticated_page_redirects_to_login_and_back(page: Any, seeded: Any) -> None:
    page.goto("/models/sentiment-classifier?x=1")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fmodels%2Fsentiment-classifier%3Fx%3D1$"))
    page.get_by_label("Password or API token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/models/sentiment-classifier\?x=1$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("sentiment-classifier")


def test_token_pasted_as_password_signs_in_the_first_admin(page: Any) -> None:
    login(page)
    expect(page.locator(".user-menu summary")).to_contain_text("admin")
    expect(page.get_by_role("heading", name="Model Registry")).to_be_visible()


def test_password_sign_in_user_menu_and_sign_out(page: Any, make_user: Any) -> None:
    editor: Person = make_user("editor")
    login(page, editor)
    menu = page.locator(".user-menu")
    expect(menu).to_contain_text(editor.username)
    expect(menu).to_contain_text("editor")
    menu.locator("summary").click()
    page.get_by_role("menuitem", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator("#toasts")).to_contain_text("You have signed out.")
    page.goto("/models")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_wrong_password_then_lockout_message(page: Any, make_user: Any) -> None:
    viewer: Person = make_user("viewer")
    page.goto("/login")
    for _ in range(5):
        page.get_by_label("Username").fill(viewer.username)
        page.get_by_label("Password or API token").fill("not-the-password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("Wrong username or password.")
    page.get_by_label("Password or API token").fill(viewer.password)
    page.get_by_role("button", name="Sign in").click()
    # Locked: the same answer as any failure (so it does not reveal real usernames), which
    # states the lockout rule.
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password.")
    expect(page.get_by_role("alert")).to_contain_text("an account is locked")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_a_cookie_saved_before_sign_out_does_not_sign_in_again(page: Any, make_user: Any) -> None:
    editor: Person = make_user("editor")
    login(page, editor)
    saved = [c for c in page.context.cookies() if c["name"] == "podstack_session"]
    assert saved
    menu = page.locator(".user-menu")
    menu.locator("summary").click()
    page.get_by_role("menuitem", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    # Put the old cookie back, as someone who copied it would.
    page.context.clear_cookies()
    page.context.add_cookies(saved)
    page.goto("/models")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_next_is_only_followed_to_same_site_paths(page: Any) -> None:
    page.goto("/login?next=//evil.example/steal")
    page.get_by_label("Password or API token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"^http://127\.0\.0\.1:\d+/models$"))


def test_forms_without_the_csrf_token_are_refused(as_admin: Any, sdk: Any) -> None:
    page = as_admin
    page.goto("/models")
    missing = page.request.post("/models", form={"name": "csrf-victim"})
    assert missing.status == 403
    assert "could not be verified" in missing.text()
    wrong = page.request.post(
        "/models",
        form={"name": "csrf-victim", "csrf_token": "forged"},
        headers={"X-CSRF-Token": ""},
    )
    assert wrong.status == 403
    forged_header = page.request.post(
        "/models", form={"name": "csrf-victim"}, headers={"X-CSRF-Token": "forged"}
    )
    assert forged_header.status == 403
    # The page's own token works, proving the refusals were about the token alone.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    ok = page.request.post("/models", form={"name": "csrf-ok"}, headers={"X-CSRF-Token": token})
    assert ok.status in (200, 303)
    names = [m.name for m in sdk.search_registered_models()]
    assert "csrf-victim" not in names and "csrf-ok" in names

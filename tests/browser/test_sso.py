"""Single sign-on in the real browser against a real OpenID provider (oidc-provider on Node):
the Podstack sign-in button, the provider's own login and consent forms, the callback.
Nothing is mocked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from podstack.server.auth import groups as group_rules
from podstack.server.auth.models import User, UserIdentity
from podstack.server.db.session import Database
from tests.browser.conftest import PageProblems
from tests.oidc import harness
from tests.oidc.harness import Sso

sso = harness.sso  # the real provider and a server trusting it (fixture)

ALICE = {
    "preferred_username": "alice",
    "name": "Alice Example",
    "email": "alice@example.com",
    "groups": ["ml", "readers"],
}


@pytest.fixture
def sso_page(browser: Any, sso: Sso) -> Iterator[Any]:
    """A fresh browser context (no cookies at Podstack or at the provider) per sign-in."""
    contexts: list[Any] = []
    problems = PageProblems()

    def new_page() -> Any:
        ctx = browser.new_context(base_url=sso.server.url)
        ctx.set_default_timeout(10_000)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("pageerror", problems.page_error)
        page.on("response", problems.response)
        return page

    yield new_page
    for ctx in contexts:
        ctx.close()
    assert not problems.errors, problems.errors


def _sign_in_at_provider(page: Any, sso: Sso, account: str) -> None:
    page.goto("/login?next=/models")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    # The provider's development login form (any password is accepted for a known account).
    page.wait_for_url(f"{sso.provider.issuer}/**")
    page.locator("input[name=login]").fill(account)
    page.locator("input[name=password]").fill("any-password")
    page.locator("button[type=submit]").click()
    # Its consent screen, on first authorization of the client in this browser.
    if page.url.startswith(sso.provider.issuer):
        page.locator("button[type=submit]").click()
    page.wait_for_url(f"{sso.server.url}/models**")


def _user(db: Database, username: str) -> tuple[User, list[str], UserIdentity | None]:
    with db.session(readonly=True) as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None
        s.expunge(user)
        groups = group_rules.groups_of(s, user.id)
        ident = s.scalar(select(UserIdentity).where(UserIdentity.user_id == user.id))
        if ident is not None:
            s.expunge(ident)
    return user, groups, ident


def test_first_sign_in_creates_the_user_and_the_next_one_refreshes_role_and_groups(
    sso: Sso, sso_page: Any, db: Database
) -> None:
    sso.provider.set_accounts({"sub-alice-1": ALICE})
    page = sso_page()
    _sign_in_at_provider(page, sso, "sub-alice-1")
    # Signed in to Podstack: the page is the requested one, and the session works.
    assert page.get_by_text("alice").first.is_visible()
    user, groups, ident = _user(db, "alice")
    assert user.role == "editor"  # ml=editor; "readers" maps to nothing, default viewer
    assert groups == ["ml", "readers"]
    assert user.email == "alice@example.com" and user.display_name == "Alice Example"
    assert ident is not None and ident.issuer == sso.provider.issuer
    assert ident.subject == "sub-alice-1"
    assert user.password_hash is None

    # The directory changes: alice joins ml-admins and leaves readers.
    sso.provider.set_accounts({"sub-alice-1": {**ALICE, "groups": ["ml", "ml-admins"]}})
    page2 = sso_page()
    _sign_in_at_provider(page2, sso, "sub-alice-1")
    user, groups, _ = _user(db, "alice")
    assert user.role == "admin"  # the highest mapped role wins
    assert groups == ["ml", "ml-admins"]
    page2.goto("/admin/users")
    assert page2.locator("h1", has_text="Users").is_visible()
    groups_cell = page2.locator('tr[data-user="alice"] [data-directory-groups]')
    assert groups_cell.inner_text() == "Groups: ml, ml-admins"

    # Removed from every mapped group: back to the default role at the next sign-in.
    sso.provider.set_accounts({"sub-alice-1": {**ALICE, "groups": []}})
    page3 = sso_page()
    _sign_in_at_provider(page3, sso, "sub-alice-1")
    user, groups, _ = _user(db, "alice")
    assert (user.role, groups) == ("viewer", [])
    # The earlier admin session ended with the role change.
    page2.goto("/admin/users")
    assert "/login" in page2.url


def test_login_page_keeps_the_local_password_form_for_recovery(sso: Sso, sso_page: Any) -> None:
    page = sso_page()
    page.goto("/login")
    assert page.get_by_role("link", name="Sign in with Test IdP").is_visible()
    assert page.get_by_label("Username").is_visible()
    assert page.get_by_label("Password or API token").is_visible()


def test_a_tampered_answer_shows_the_reason_and_signs_nobody_in(sso: Sso, sso_page: Any) -> None:
    sso.provider.set_accounts({"sub-alice-1": ALICE})
    page = sso_page()
    page.goto("/login")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_url(f"{sso.provider.issuer}/**")
    # An attacker's link to the callback, with a state this browser never sent.
    page.goto("/login/oidc/callback?code=stolen&state=forged")
    alert = page.locator("[role=alert]")
    assert "wrong state" in alert.inner_text()
    page.goto("/models")
    assert "/login" in page.url  # still signed out

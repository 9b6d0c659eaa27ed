"""The Permissions tab in a real browser, on a server whose default permission is NONE (models
private to owners and grantees): an owner grants a user READ through the tab, that user then
sees the model while another user gets 404 for its page; revoking through the tab (after the
confirmation dialog) closes it again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from podstack import MLOpsClient
from podstack.server.db.session import Database
from tests.browser.conftest import login
from tests.conftest import LiveServer
from tests.server.permissions.conftest import make_user as make_db_user
from tests.server.permissions.conftest import perm_server  # noqa: F401 (a fixture)

MODEL = "team-model"


@pytest.fixture
def live_server(perm_server: tuple[LiveServer, Database]) -> LiveServer:  # noqa: F811
    # The browser fixtures (context, page) open the suite's live server; here that is the
    # server with PODSTACK_DEFAULT_PERMISSION=NONE.
    return perm_server[0]


@pytest.fixture
def people(perm_server: tuple[LiveServer, Database]) -> dict[str, tuple[str, str]]:  # noqa: F811
    """owner, reader, other: (username, token), all editors; the owner registers MODEL."""
    server, db = perm_server
    people = {who: make_db_user(db, "editor", who) for who in ("owner", "reader", "other")}
    with MLOpsClient(api_token=people["owner"][1], url=server.url) as c:
        c.register_model(MODEL, description="Team A's private model")
    return people


@pytest.fixture
def new_page(browser: Any, live_server: LiveServer) -> Iterator[Callable[[], Any]]:
    """A page in a browser context of its own: the other users, signed in at the same time
    as the owner."""
    contexts: list[Any] = []

    def make() -> Any:
        ctx = browser.new_context(base_url=live_server.url)
        ctx.set_default_timeout(10_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


def _status(page: Any, path: str) -> int:
    resp = page.goto(path)
    assert resp is not None
    return int(resp.status)


def test_grant_and_revoke_through_the_tab(
    page: Any, new_page: Callable[[], Any], people: dict[str, tuple[str, str]]
) -> None:
    reader_name, reader_token = people["reader"]
    login(page, token=people["owner"][1])
    reader = new_page()
    login(reader, token=reader_token)
    assert _status(reader, f"/models/{MODEL}") == 404  # private before the grant

    page.goto(f"/models/{MODEL}")
    page.get_by_role("link", name="Permissions").click()
    expect(page.locator("[data-owner]")).to_have_text(people["owner"][0])
    expect(page.locator("[data-default-permission]")).to_have_text("NONE")
    form = page.locator("[data-grant-form]")
    form.get_by_label("Grantee type").select_option("user")
    form.get_by_label("Name").fill(reader_name)
    form.get_by_label("Permission").select_option("READ")
    form.get_by_role("button", name="Save grant").click()
    row = page.locator(f'tr[data-grant="user:{reader_name}"]')
    expect(row.locator("[data-grant-permission]")).to_have_text("READ")

    # The grantee sees the model, without the Permissions tab (READ does not manage it).
    assert _status(reader, f"/models/{MODEL}") == 200
    expect(reader.locator("[data-model-name]")).to_have_text(MODEL)
    expect(reader.locator("[data-permissions-tab]")).to_have_count(0)
    assert _status(reader, f"/models/{MODEL}/permissions") == 403
    # Anyone else still cannot learn it exists.
    other = new_page()
    login(other, token=people["other"][1])
    assert _status(other, f"/models/{MODEL}") == 404
    other.goto("/models")
    expect(other.get_by_text(MODEL)).to_have_count(0)

    row.get_by_role("button", name="Revoke").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(reader_name)
    dialog.locator("[data-confirm-submit]").click()
    expect(row).to_have_count(0)
    expect(page.get_by_text("No grants")).to_be_visible()
    assert _status(reader, f"/models/{MODEL}") == 404

"""The UI honours per-resource permissions as the API does: each principal of the permission
matrix signs in to the real UI (the login form, with their token as the password) and opens the
pages of a model and an experiment it may or may not read. An unreadable model is absent from
every list and suggestion and its pages answer 404, exactly like a model that does not exist;
a READ holder sees the pages but cannot change the model (403); EDIT holders can.

The server runs with ``PODSTACK_DEFAULT_PERMISSION=NONE`` (``conftest.py``)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import signed_in
from tests.server.permissions.conftest import EXPERIMENT, MODEL, World

# The rules here are decided in Python; the read filter's SQL is checked on both databases by
# test_matrix.py, test_every_route.py and test_search_at_scale.py. One pass is enough.
pytestmark = pytest.mark.one_db

_CSRF_META = re.compile(r'name="csrf-token" content="([^"]+)"')

# The service account (READ by grant) and the job token cannot sign in to the UI at all; the
# last tests say so.
READERS = ("owner", "reader", "editor", "manager", "grouped", "admin")
EDITORS = ("owner", "editor", "manager", "grouped", "admin")
UI_PRINCIPALS = (*READERS, "other")


def _ui(world: World, who: str) -> httpx.Client:
    return signed_in(world.url, world.tokens[who])


@pytest.fixture(scope="module")
def ui_clients(world: World) -> dict[str, httpx.Client]:
    clients = {who: _ui(world, who) for who in UI_PRINCIPALS}
    yield clients  # type: ignore[misc]
    for c in clients.values():
        c.close()


def _pages(world: World) -> list[str]:
    return [
        f"/models/{MODEL}",
        f"/models/{MODEL}/versions/1",
        f"/models/{MODEL}/versions/1/download",
        f"/experiments/{world.experiment_id}",
        f"/runs/{world.run_id}",
    ]


@pytest.mark.parametrize("who", UI_PRINCIPALS)
def test_pages_of_an_unreadable_model_are_404_and_readable_ones_open(
    world: World, ui_clients: dict[str, httpx.Client], who: str
) -> None:
    c = ui_clients[who]
    for page in _pages(world):
        r = c.get(page)
        expected = 200 if who in READERS else 404
        assert r.status_code == expected, f"{who} GET {page}: {r.status_code}"
        if expected == 404:
            # Nothing in the answer says what the model or experiment holds.
            assert "model.pt" not in r.text and EXPERIMENT not in r.text


@pytest.mark.parametrize("who", UI_PRINCIPALS)
def test_comparing_versions_of_an_unreadable_model_is_404_before_any_other_check(
    world: World, ui_clients: dict[str, httpx.Client], who: str
) -> None:
    """The model has one version, so a reader is told to pick two (422); someone who cannot
    read it gets the 404 of a model that does not exist, not that hint."""
    r = ui_clients[who].get(f"/models/{MODEL}/compare?v=1")
    assert r.status_code == (422 if who in READERS else 404), f"{who}: {r.status_code}"


@pytest.mark.parametrize("who", UI_PRINCIPALS)
def test_lists_and_suggestions_hold_only_readable_models(
    world: World, ui_clients: dict[str, httpx.Client], who: str
) -> None:
    c = ui_clients[who]
    visible = who in READERS
    for page, needle in (
        ("/models", MODEL),
        (f"/models?q={MODEL[:6]}", MODEL),
        (f"/models/suggest?q={MODEL[:6]}", MODEL),
        ("/experiments", EXPERIMENT),
    ):
        r = c.get(page)
        assert r.status_code == 200, f"{who} GET {page}: {r.status_code}"
        assert (needle in r.text) is visible, f"{who} GET {page}"


@pytest.mark.parametrize("who", UI_PRINCIPALS)
def test_changing_a_model_from_the_ui_needs_edit(
    world: World, ui_clients: dict[str, httpx.Client], who: str
) -> None:
    c = ui_clients[who]
    token = _CSRF_META.search(c.get("/models").text).group(1)  # type: ignore[union-attr]
    r = c.post(
        f"/models/{MODEL}/edit",
        data={"description": f"edited by {who}", "labels": "", "csrf_token": token},
        headers={"x-csrf-token": token},
    )
    if who in EDITORS:
        assert r.status_code == 303, f"{who}: {r.status_code} {r.text[:300]}"
    else:
        assert r.status_code == (403 if who in READERS else 404), f"{who}: {r.status_code}"
        owner = world.client("owner")
        assert owner.get(f"/registered-models/{MODEL}").json()["description"] != (
            f"edited by {who}"
        )


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ("job", "limited to a single run"),
        ("service", "Service accounts cannot sign in to the web UI"),
    ],
)
def test_job_and_service_account_tokens_cannot_sign_in_to_the_ui(
    world: World, who: str, message: str
) -> None:
    """They reach the API only (a job: only its run's endpoints), so no UI page can leak."""
    with httpx.Client(base_url=world.url, follow_redirects=False, timeout=60) as c:
        token = _CSRF_META.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"password": world.tokens[who], "csrf_token": token})
        assert r.status_code == 401
        assert message in r.text
        assert c.get(f"/models/{MODEL}").status_code in (302, 303)  # back to the login page

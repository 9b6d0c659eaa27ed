"""The Permissions tab over plain HTTP: who sees it, the grant form and revoke, and every bad
input refused with a clear 4xx and nothing changed. (The flow in a real browser, with access
actually opening and closing, is tests/browser/test_permissions_ui.py.)"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from podstack.server.db.session import Database
from tests.conftest import LiveServer, signed_in

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture
def web(live_server: LiveServer, db: Database) -> Iterator[httpx.Client]:
    c = signed_in(live_server.url)
    c.headers["X-CSRF-Token"] = CSRF.search(c.get("/models").text).group(1)  # type: ignore[union-attr]
    yield c
    c.close()


@pytest.fixture
def exp_id(api: httpx.Client) -> str:
    assert api.post("/users", json={"username": "bob", "role": "editor"}).status_code == 201
    assert api.post("/groups", json={"name": "ml-reviewers"}).status_code == 201
    assert api.post("/registered-models", json={"name": "churn"}).status_code == 201
    r = api.post("/experiments", json={"name": "churn-training"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _grants(api: httpx.Client, path: str) -> list[tuple[str, str, str]]:
    body = api.get(f"{path}/permissions").json()
    return [(g["grantee_type"], g["grantee"], g["permission"]) for g in body["grants"]]


@pytest.mark.parametrize(
    ("page", "rest"),
    [("/models/churn", "/registered-models/churn"), ("/experiments/{id}", "/experiments/{id}")],
)
def test_grant_change_revoke(
    web: httpx.Client, api: httpx.Client, exp_id: str, page: str, rest: str
) -> None:
    page, rest = page.format(id=exp_id), rest.format(id=exp_id)
    # The owner (here: admin) sees the tab on the resource's page.
    assert "data-permissions-tab" in web.get(page).text
    r = web.get(f"{page}/permissions")
    assert r.status_code == 200
    assert "No grants" in r.text and "data-default-permission>MANAGE<" in r.text

    form = {"grantee_type": "user", "grantee": " bob ", "permission": "READ"}
    r = web.post(f"{page}/permissions", data=form)
    assert r.status_code == 303 and r.headers["location"] == f"{page}/permissions"
    assert _grants(api, rest) == [("user", "bob", "READ")]
    r = web.get(f"{page}/permissions")
    assert "now holds READ" in r.text and 'data-grant="user:bob"' in r.text
    web.post(f"{page}/permissions", data={**form, "permission": "EDIT"})
    assert "changed to EDIT" in web.get(f"{page}/permissions").text
    assert _grants(api, rest) == [("user", "bob", "EDIT")]

    r = web.post(f"{page}/permissions/revoke?grantee_type=user&grantee=bob")
    assert r.status_code == 303
    assert "Revoked user bob" in web.get(f"{page}/permissions").text
    assert _grants(api, rest) == []


@pytest.mark.parametrize(
    ("path", "data", "status", "needle"),
    [
        ("/models/churn/permissions", {"grantee": ""}, 422, "Enter the name of a user"),
        ("/models/churn/permissions", {"grantee": "ghost"}, 404, "User &#39;ghost&#39; does not"),
        (
            "/models/churn/permissions",
            {"grantee_type": "group", "grantee": "nope"},
            404,
            "Group &#39;nope&#39; does not",
        ),
        (
            "/models/churn/permissions",
            {"grantee": "bob", "permission": "OWNER"},
            422,
            "Unknown permission",
        ),
        (
            "/models/churn/permissions",
            {"grantee_type": "robot", "grantee": "bob"},
            422,
            "Unknown grantee type",
        ),
        ("/models/churn/permissions/revoke", {}, 422, "Choose the grant to revoke"),
        ("/models/churn/permissions/revoke?grantee_type=user&grantee=bob", {}, 404, "no grant"),
        ("/models/absent/permissions", {"grantee": "bob"}, 404, "does not exist"),
        ("/experiments/absent/permissions", {"grantee": "bob"}, 404, "does not exist"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    web: httpx.Client,
    api: httpx.Client,
    exp_id: str,
    path: str,
    data: dict[str, str],
    status: int,
    needle: str,
) -> None:
    api.put("/registered-models/churn/permissions/group/ml-reviewers", json={"permission": "READ"})
    r = web.post(path, data=data)
    assert r.status_code == status, r.text[:500]
    assert needle in r.text
    assert _grants(api, "/registered-models/churn") == [("group", "ml-reviewers", "READ")]
    assert _grants(api, f"/experiments/{exp_id}") == []


def test_without_csrf_token_nothing_changes(
    live_server: LiveServer, api: httpx.Client, exp_id: str
) -> None:
    c = signed_in(live_server.url)
    r = c.post("/models/churn/permissions", data={"grantee": "bob", "permission": "READ"})
    assert r.status_code == 403
    assert _grants(api, "/registered-models/churn") == []
    c.close()


def test_a_non_manager_sees_no_tab_and_gets_403(
    live_server: LiveServer, api: httpx.Client, exp_id: str, make_token: Callable[..., str]
) -> None:
    # A viewer reads everything under the default permission but its role caps it at READ.
    viewer = signed_in(live_server.url, make_token("viewer"))
    page = viewer.get("/models/churn")
    assert page.status_code == 200 and "data-permissions-tab" not in page.text
    assert "data-permissions-tab" not in viewer.get(f"/experiments/{exp_id}").text
    r = viewer.get("/models/churn/permissions")
    assert r.status_code == 403 and "you need MANAGE" in r.text
    viewer.close()

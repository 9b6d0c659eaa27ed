"""GET /api/v1/audit: admins only, filters, keyset pages, no secrets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from podstack.server.pagination import encode_token
from tests.http_errors import api_error as _error

MakeToken = Callable[..., str]
ClientFor = Callable[[str], httpx.Client]


def _all_events(api: httpx.Client, **params: object) -> list[dict]:
    events: list[dict] = []
    token = None
    while True:
        page = api.get("/audit", params={**params, "page_token": token}).json()
        events += page["items"]
        token = page["next_page_token"]
        if not token:
            return events


def test_mutations_are_recorded_newest_first(api: httpx.Client) -> None:
    api.post("/users", json={"username": "alice", "role": "viewer"})
    api.patch("/users/alice", json={"role": "editor"})
    tok = api.post("/tokens", json={"name": "t1", "username": "alice"}).json()
    api.delete(f"/tokens/{tok['id']}")
    events = api.get("/audit").json()["items"]
    actions = [e["action"] for e in events]
    # The fixture's bootstrap (system) comes first in time, so last in the list.
    assert actions[:4] == ["token.revoke", "token.create", "user.set_role", "user.create"]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, reverse=True)
    set_role = events[2]
    assert set_role["actor"] == "admin"
    assert (set_role["target_type"], set_role["target_id"]) == ("user", "alice")
    assert set_role["before"] == {"role": "viewer"} and set_role["after"] == {"role": "editor"}
    assert datetime.fromisoformat(set_role["at"]).tzinfo is not None


def test_filters(api: httpx.Client, make_token: MakeToken, client_for: ClientFor) -> None:
    api.post("/users", json={"username": "bob"})
    api.post("/users", json={"username": "carol"})
    editor = client_for(make_token("editor", "ed"))
    editor.post("/tokens", json={"name": "mine"})

    by_action = _all_events(api, action="user.create")
    assert {e["target_id"] for e in by_action} >= {"bob", "carol", "ed"}
    assert {e["action"] for e in by_action} == {"user.create"}
    assert [e["target_id"] for e in _all_events(api, target_type="user", target_id="bob")] == [
        "bob"
    ]
    by_actor = _all_events(api, actor="ed")
    assert [e["action"] for e in by_actor] == ["token.create"]
    assert by_actor[0]["after"]["user"] == "ed"
    assert _all_events(api, action="user.create", actor="nobody") == []

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.get("/audit", params={"since": future}).json()["items"] == []
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert len(_all_events(api, since=past)) == len(_all_events(api))
    # A naive timestamp is read as UTC.
    naive_past = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert len(_all_events(api, since=naive_past)) == len(_all_events(api))


def test_keyset_pages_neither_skip_nor_repeat(api: httpx.Client) -> None:
    for i in range(7):
        api.post("/users", json={"username": f"p{i}"})
    first = api.get("/audit", params={"limit": 3}).json()
    assert len(first["items"]) == 3 and first["next_page_token"]
    # Rows written between pages do not shift the next page (unlike OFFSET).
    api.post("/users", json={"username": "late"})
    second = api.get("/audit", params={"limit": 3, "page_token": first["next_page_token"]})
    assert second.json()["items"][0]["id"] == first["items"][-1]["id"] - 1
    everything = _all_events(api, limit=2)
    ids = [e["id"] for e in everything]
    assert len(ids) == len(set(ids)) == len(_all_events(api, limit=1000))


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"limit": 0}, 400, "BAD_REQUEST"),
        ({"limit": 5000}, 400, "BAD_REQUEST"),
        ({"page_token": "not-a-token"}, 400, "BAD_REQUEST"),
        ({"page_token": "WyJ4Il0"}, 400, "BAD_REQUEST"),  # ["x"]: right shape, wrong type
        ({"page_token": encode_token([2**70])}, 400, "BAD_REQUEST"),  # beyond a 64-bit id
        ({"since": "yesterday"}, 422, "VALIDATION_ERROR"),
        ({"limit": "many"}, 422, "VALIDATION_ERROR"),
    ],
)
def test_bad_query_is_4xx(api: httpx.Client, params: dict, status: int, code: str) -> None:
    _error(api.get("/audit", params=params), status, code)


def test_only_admins_read_the_audit_log(
    anon: httpx.Client, make_token: MakeToken, client_for: ClientFor
) -> None:
    _error(anon.get("/audit"), 401, "UNAUTHENTICATED")
    for role in ("viewer", "editor"):
        body = _error(client_for(make_token(role)).get("/audit"), 403, "PERMISSION_DENIED")
        assert "admin" in body["message"]


def test_secrets_never_reach_the_audit_log(api: httpx.Client) -> None:
    api.post("/users", json={"username": "dave", "password": "first-password"})
    api.patch("/users/dave", json={"password": "second-password"})
    value = api.post("/tokens", json={"name": "t", "username": "dave"}).json()["token"]
    dump = str(_all_events(api))
    for secret in ("first-password", "second-password", value):
        assert secret not in dump

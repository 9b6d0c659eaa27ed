"""In-app notifications: your own inbox only, unread count, mark read, pages, bad input."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from podstack.server.auth import service as auth_service
from podstack.server.db.session import Database
from podstack.server.notifications import service
from tests.server.approvals.helpers import error, make_user


def _notify(db: Database, username: str, n: int) -> None:
    with db.session() as s:
        for i in range(n):
            service.notify(s, [username], "test.kind", f"hello {i}", link=f"/x/{i}")


def test_inbox(db: Database, client_for: Callable[[str], httpx.Client]) -> None:
    ann = client_for(make_user(db, "ann", "viewer"))
    ben = client_for(make_user(db, "ben", "viewer"))
    _notify(db, "ann", 3)
    _notify(db, "ben", 1)
    assert ann.get("/notifications/unread-count").json() == {"unread": 3}
    items = ann.get("/notifications").json()["items"]
    assert [n["title"] for n in items] == ["hello 2", "hello 1", "hello 0"]
    assert all(n["read_at"] is None for n in items)

    # Marking someone else's notification changes nothing.
    ben_id = ben.get("/notifications").json()["items"][0]["id"]
    assert ann.post("/notifications/mark-read", json={"ids": [ben_id]}).json() == {"marked": 0}
    assert ben.get("/notifications/unread-count").json() == {"unread": 1}

    assert ann.post("/notifications/mark-read", json={"ids": [items[0]["id"]]}).json() == {
        "marked": 1
    }
    assert ann.get("/notifications/unread-count").json() == {"unread": 2}
    unread = ann.get("/notifications", params={"unread": True}).json()["items"]
    assert [n["title"] for n in unread] == ["hello 1", "hello 0"]
    page = ann.get("/notifications", params={"limit": 2}).json()
    rest = ann.get(
        "/notifications", params={"limit": 2, "page_token": page["next_page_token"]}
    ).json()
    assert [n["title"] for n in page["items"] + rest["items"]] == ["hello 2", "hello 1", "hello 0"]

    err = error(ann.post("/notifications/mark-read", json={}), 422, "VALIDATION_ERROR")
    assert "'ids'" in err["message"] and "'all'" in err["message"]
    error(ann.post("/notifications/mark-read", json={"ids": ["x"]}), 422, "VALIDATION_ERROR")
    error(ann.get("/notifications", params={"page_token": "!!"}), 400, "BAD_REQUEST")
    assert ann.post("/notifications/mark-read", json={"all": True}).json() == {"marked": 2}
    assert ann.get("/notifications/unread-count").json() == {"unread": 0}


def test_disabled_users_are_not_notified(db: Database, api: httpx.Client) -> None:
    make_user(db, "gone", "viewer")
    with db.session() as s:
        auth_service.set_disabled(s, "admin", "gone", True)
        assert service.notify(s, ["gone", "nobody"], "k", "t") == []


def test_anonymous_gets_401(anon: httpx.Client) -> None:
    error(anon.get("/notifications"), 401, "UNAUTHENTICATED")

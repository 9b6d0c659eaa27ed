"""``gated_aliases``: setting, moving, rolling back or deleting such an alias opens an approval
request (APPROVAL_PENDING, 409) instead of changing it; approving carries it out. Like gated
stages, the rule holds for admins too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from podstack.server.db.session import Database
from tests.server.approvals.helpers import error, make_user, make_version

MODEL = "churn"
A = f"/registered-models/{MODEL}/aliases"


@pytest.fixture
def clients(
    api: httpx.Client, db: Database, client_for: Callable[[str], httpx.Client]
) -> tuple[httpx.Client, httpx.Client]:
    alice = client_for(make_user(db, "alice", "editor"))
    bob = client_for(make_user(db, "bob", "editor"))
    make_version(alice, MODEL, {"f1": 0.9})
    make_version(alice, MODEL, {"f1": 0.91})
    doc = {"reviewers": ["bob"], "gated_aliases": ["champion"]}
    r = api.put(f"/registered-models/{MODEL}/approval-policy", json=doc)
    assert r.status_code == 200, r.text
    assert r.json()["gated_aliases"] == ["champion"]
    return alice, bob


def _pending(r: httpx.Response) -> str:
    err = error(r, 409, "APPROVAL_PENDING")
    assert "Nothing changed" in err["message"] and err["details"]["kind"] == "alias"
    return str(err["details"]["request_id"])


def _approve(bob: httpx.Client, rid: str) -> None:
    r = bob.post(f"/approval-requests/{rid}/approve", json={})
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text


def _aliases(api: httpx.Client) -> dict[str, int]:
    return {a["alias"]: a["version"] for a in api.get(A).json()}


def test_gated_alias_set_move_rollback_delete_need_approval(
    api: httpx.Client, clients: tuple[httpx.Client, httpx.Client]
) -> None:
    alice, bob = clients
    rid = _pending(alice.put(f"{A}/champion", json={"version": 1}))
    assert _aliases(api) == {}
    assert _pending(alice.put(f"{A}/champion", json={"version": 1})) == rid  # no duplicate
    assert _pending(api.put(f"{A}/champion", json={"version": 1})) == rid  # admins too
    # A different change while one waits: decide that one first.
    err = error(alice.put(f"{A}/champion", json={"version": 2}), 409, "CONFLICT")
    assert rid in err["message"]
    req = bob.get(f"/approval-requests/{rid}").json()
    assert req["kind"] == "alias" and req["subject"] == f"alias:{MODEL}/champion"
    _approve(bob, rid)
    assert _aliases(api) == {"champion": 1}
    audit = api.get("/audit", params={"action": "alias.set"}).json()["items"]
    assert audit[0]["actor"] == "alice" and audit[0]["after"]["approval_request"] == rid

    _approve(bob, _pending(alice.put(f"{A}/champion", json={"version": 2})))
    assert _aliases(api) == {"champion": 2}
    _approve(bob, _pending(alice.post(f"{A}/champion/rollback")))
    assert _aliases(api) == {"champion": 1}
    rid = _pending(alice.delete(f"{A}/champion"))
    assert _aliases(api) == {"champion": 1}
    _approve(bob, rid)
    assert _aliases(api) == {}

    # Aliases the policy does not gate move at once.
    assert alice.put(f"{A}/dev", json={"version": 2}).status_code == 200
    assert _aliases(api) == {"dev": 2}


def test_alias_request_goes_nowhere_if_the_alias_moved_meanwhile(
    api: httpx.Client, clients: tuple[httpx.Client, httpx.Client]
) -> None:
    alice, bob = clients
    _approve(bob, _pending(alice.put(f"{A}/champion", json={"version": 1})))
    rid = _pending(alice.put(f"{A}/champion", json={"version": 2}))
    # Only an admin could move it meanwhile by changing the policy first.
    r = api.put(f"/registered-models/{MODEL}/approval-policy", json={"reviewers": ["bob"]})
    assert r.status_code == 200
    assert api.delete(f"{A}/champion").status_code == 204
    err = error(bob.post(f"/approval-requests/{rid}/approve", json={}), 409, "CONFLICT")
    assert "moved" in err["message"]
    assert _aliases(api) == {}


@pytest.mark.parametrize("bad", ["latest", "v3", "bad name", ""])
def test_invalid_gated_aliases_are_refused(
    api: httpx.Client, clients: tuple[httpx.Client, httpx.Client], bad: str
) -> None:
    doc = {"reviewers": ["bob"], "gated_aliases": ["ok", bad]}
    err = error(
        api.put(f"/registered-models/{MODEL}/approval-policy", json=doc), 422, "VALIDATION_ERROR"
    )
    assert "gated_aliases" in err["message"]
    policy = api.get(f"/registered-models/{MODEL}/approval-policy").json()
    assert policy["gated_aliases"] == ["champion"]  # unchanged


def test_alias_request_page_renders(
    api: httpx.Client, clients: tuple[httpx.Client, httpx.Client], live_server: Any
) -> None:
    alice, _ = clients
    rid = _pending(alice.put(f"{A}/champion", json={"version": 2}))
    web = httpx.Client(base_url=live_server.url, headers=dict(api.headers))
    page = web.get(f"/approvals/{rid}")
    assert page.status_code == 200, page.text
    assert 'data-request-kind="alias"' in page.text and "alias @champion" in page.text
    listing = web.get("/approvals")
    assert listing.status_code == 200 and "alias @champion" in listing.text
    web.close()

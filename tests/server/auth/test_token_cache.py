"""Verified tokens are remembered briefly (auth/token_cache.py); changes to them still apply
at once on this server, through the API, with no cached answer outliving them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from podstack.server.auth.principal import Principal
from podstack.server.auth.token_cache import TokenCache

MakeToken = Callable[..., str]
ClientFor = Callable[[str], httpx.Client]
P = Principal(username="u", role="editor", user_id=1, token_id=1)


def test_disabling_a_user_refuses_their_cached_token_at_once(
    api: httpx.Client, make_token: MakeToken, client_for: ClientFor
) -> None:
    c = client_for(make_token("editor", "dora"))
    assert c.get("/me").status_code == 200  # now cached
    assert api.patch("/users/dora", json={"disabled": True}).status_code == 200
    r = c.get("/me")
    assert r.status_code == 401
    assert "disabled" in r.json()["error"]["message"]


def test_a_role_change_applies_to_the_next_request(
    api: httpx.Client, make_token: MakeToken, client_for: ClientFor
) -> None:
    c = client_for(make_token("editor", "eddy"))
    assert c.post("/experiments", json={"name": "before-demotion"}).status_code == 201
    assert api.patch("/users/eddy", json={"role": "viewer"}).status_code == 200
    r = c.post("/experiments", json={"name": "after-demotion"})
    assert r.status_code == 403
    assert c.get("/me").json()["role"] == "viewer"


def test_revoking_through_the_api_refuses_the_cached_token_at_once(
    api: httpx.Client, make_token: MakeToken, client_for: ClientFor
) -> None:
    c = client_for(make_token("viewer", "vic"))
    assert c.get("/me").status_code == 200
    token_id = c.get("/tokens").json()["items"][0]["id"]  # a viewer lists their own
    assert api.delete(f"/tokens/{token_id}").status_code == 200
    assert c.get("/me").status_code == 401


def test_entries_expire_after_the_ttl() -> None:
    cache = TokenCache(ttl=0.05)
    cache.put("h", P, None, cache.generation)
    assert cache.get("h") == P
    time.sleep(0.06)
    assert cache.get("h") is None


def test_a_lookup_that_raced_a_change_is_not_kept() -> None:
    cache = TokenCache()
    generation = cache.generation  # a request starts its database lookup...
    cache.clear()  # ...a revocation commits meanwhile...
    cache.put("h", P, None, generation)  # ...and the (old) answer arrives
    assert cache.get("h") is None


def test_the_token_expiry_is_checked_on_every_hit() -> None:
    cache = TokenCache(ttl=60)
    cache.put("h", P, datetime.now(UTC) + timedelta(milliseconds=30), cache.generation)
    assert cache.get("h") == P
    time.sleep(0.04)
    assert cache.get("h") is None


def test_the_cache_is_bounded() -> None:
    cache = TokenCache(max_entries=3)
    for i in range(10):
        cache.put(f"h{i}", P, None, cache.generation)
    assert len(cache._entries) <= 3
    assert cache.get("h9") == P

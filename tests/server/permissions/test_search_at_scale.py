"""Issue 21: search results never contain unreadable models, checked at 10,000 models with
mixed grants (owned, granted to the user, granted to a group of theirs, granted to others,
none). The rows are bulk-inserted (the seeding of benchmarks/permissions_search.py) on the
permission server's own database (default NONE); the searches go over HTTP."""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest

from benchmarks import permissions_search as ps
from benchmarks import registry_search as rs
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer

N_MODELS = 10_000


@pytest.fixture(scope="module")
def scale(perm_server: tuple[LiveServer, Database]) -> Iterator[tuple[ps.Mix, str]]:
    server, db = perm_server
    url = db.engine.url.render_as_string(hide_password=False)
    rs.seed(url, N_MODELS, random.Random(42))
    yield ps.grant_mix(url, N_MODELS), server.url


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def test_restricted_search_returns_exactly_the_readable_models(
    scale: tuple[ps.Mix, str],
) -> None:
    mix, url = scale
    # 1 in 50 owned, 1 in 50 granted to the user, 1 in 50 to her group.
    assert len(mix.readable) == 3 * N_MODELS // 50
    with _client(url, mix.token) as alice, _client(url, ADMIN_TOKEN) as admin:
        seen = ps.all_names(alice)
        assert len(seen) == len(set(seen))
        assert set(seen) == mix.readable
        assert len(ps.all_names(admin)) == N_MODELS
        # Filters and orders narrow the same way: what the admin finds, cut to the readable.
        for params in (
            {"q": "model-01"},
            {"label": "team-07"},
            {"stage": "Production"},
            {"order_by": "updated"},
            {"label": ["team-03", "tier-1"], "order_by": "stage"},
        ):
            mine = ps.all_names(alice, params)
            assert len(mine) == len(set(mine)), params
            assert set(mine) == set(ps.all_names(admin, params)) & mix.readable, params
        # A model she cannot read is a 404, like one that does not exist.
        hidden = next(rs._name(i) for i in range(N_MODELS) if rs._name(i) not in mix.readable)
        assert alice.get(f"/registered-models/{hidden}").status_code == 404
        r = alice.get("/registered-models", params={"q": hidden})
        assert r.status_code == 200
        assert hidden not in [m["name"] for m in r.json()["items"]]

"""Text search over registered models: name-prefix matches come first (from an index range),
then every other substring match; together exactly the models whose name or description
contains the text, case-insensitively, each once across pages."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from podstack.server.registry import model_pages as pages
from tests.server.registry.helpers import error, make_run, new_version, transition


def _register(api: httpx.Client, name: str, **extra: object) -> None:
    r = api.post("/registered-models", json={"name": name, **extra})
    assert r.status_code == 201, r.text


def _names(api: httpx.Client, **params: object) -> list[str]:
    r = api.get("/registered-models", params=params)
    assert r.status_code == 200, r.text
    return [m["name"] for m in r.json()["items"]]


def _all_pages(api: httpx.Client, **params: object) -> list[str]:
    seen: list[str] = []
    token = None
    for _ in range(100):
        page = api.get("/registered-models", params={**params, "page_token": token}).json()
        seen += [m["name"] for m in page["items"]]
        token = page["next_page_token"]
        if not token:
            return seen
    raise AssertionError("pagination did not end")


@pytest.fixture
def models(api: httpx.Client) -> None:
    _register(api, "Bench-Model-0001", tags=["team-a"])
    _register(api, "bench-model-0002", tags=["team-b"])
    _register(api, "bench-model-0003", tags=["team-a"])
    _register(api, "bench-model-0010", tags=["team-a"])
    _register(api, "old-bench-model-0001", tags=["team-a"])  # substring, not prefix
    _register(api, "aaa-other", description="Copy of BENCH-MODEL-0001", tags=["team-b"])
    _register(api, "zzz-unrelated", description="nothing here")


def test_prefix_matches_first_then_other_matches(api: httpx.Client, models: None) -> None:
    # Case-insensitive prefix matches A→Z (by lower-cased name), then the rest A→Z.
    assert _names(api, q="bench-model-000") == [
        "Bench-Model-0001",
        "bench-model-0002",
        "bench-model-0003",
        "aaa-other",  # description match
        "old-bench-model-0001",  # name substring match
    ]
    assert _names(api, q="BENCH-MODEL-0001") == [
        "Bench-Model-0001",
        "aaa-other",
        "old-bench-model-0001",
    ]
    assert _names(api, q="model-00") == [  # no prefix match: substring matches only
        "Bench-Model-0001",
        "aaa-other",
        "bench-model-0002",
        "bench-model-0003",
        "bench-model-0010",
        "old-bench-model-0001",
    ]
    assert _names(api, q="copy of") == ["aaa-other"]
    assert _names(api, q="no-such-model") == []


def test_prefix_with_labels_stage_and_order(api: httpx.Client, models: None) -> None:
    assert _names(api, q="bench-model", label="team-a") == [
        "Bench-Model-0001",
        "bench-model-0003",
        "bench-model-0010",
        "old-bench-model-0001",
    ]
    assert _names(api, q="bench", label="team-b") == ["bench-model-0002", "aaa-other"]
    run = make_run(api)
    new_version(api, "bench-model-0003", run)
    transition(api, "bench-model-0003", 1, "Production")
    new_version(api, "old-bench-model-0001", run)
    transition(api, "old-bench-model-0001", 1, "Production")
    assert _names(api, q="bench-model", stage="Production") == [
        "bench-model-0003",
        "old-bench-model-0001",
    ]
    # Newest first is unchanged by the prefix path.
    assert _names(api, q="bench-model", order_by="updated")[:2] == [
        "old-bench-model-0001",
        "bench-model-0003",
    ]


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 7])
def test_pages_cross_from_prefix_to_other_matches(
    api: httpx.Client, models: None, limit: int
) -> None:
    everything = _names(api, q="bench-model")
    assert sorted(everything) == sorted(
        [
            "Bench-Model-0001",
            "bench-model-0002",
            "bench-model-0003",
            "bench-model-0010",
            "old-bench-model-0001",
            "aaa-other",
        ]
    )
    # Every match exactly once, in the same order as one big page.
    assert _all_pages(api, q="bench-model", limit=limit) == everything


def test_full_page_of_prefix_matches_may_end_with_an_empty_page(
    api: httpx.Client, models: None
) -> None:
    # Four prefix matches fill a page of four: the token is given without scanning for
    # other matches, so the next page can be empty (its token is then None).
    first = api.get("/registered-models", params={"q": "bench-model-00", "limit": 4}).json()
    assert [m["name"] for m in first["items"]][-1] == "bench-model-0010"
    nxt = api.get(
        "/registered-models",
        params={"q": "bench-model-00", "limit": 4, "page_token": first["next_page_token"]},
    ).json()
    assert [m["name"] for m in nxt["items"]] == ["aaa-other", "old-bench-model-0001"]
    assert nxt["next_page_token"] is None
    only_prefix = api.get("/registered-models", params={"q": "bench-model-000", "limit": 3})
    token = only_prefix.json()["next_page_token"]
    assert token
    last = api.get(
        "/registered-models", params={"q": "bench-model-0001", "limit": 1, "page_token": token}
    )
    assert last.status_code == 200


def test_wildcards_and_unusual_text_are_literal(api: httpx.Client) -> None:
    _register(api, "a_b")
    _register(api, "axb", description="100% sure")
    _register(api, "A.c", description="ünïcode text")
    assert _names(api, q="a_") == ["a_b"]  # "_" is not a wildcard
    assert _names(api, q="a") == ["A.c", "a_b", "axb"]  # all prefix matches
    assert _names(api, q="0%") == ["axb"]
    assert _names(api, q="%") == ["axb"]
    assert _names(api, q="ünïcode") == ["A.c"]
    assert _names(api, q="\U0010ffff") == []  # no prefix range: plain substring search


def test_bad_page_token_is_rejected(api: httpx.Client, models: None) -> None:
    before = _names(api)
    r = api.get("/registered-models", params={"q": "bench", "page_token": "!!notatoken"})
    error(r, 400, "BAD_REQUEST", "page_token")
    assert _names(api) == before


def test_prefix_search_reads_an_index_range(db: object) -> None:
    """The plan for the prefix phase is an index range, not a scan of every model."""
    engine = db.engine  # type: ignore[attr-defined]
    if engine.dialect.name == "postgresql":
        sql = (
            "EXPLAIN SELECT id FROM registered_models WHERE lower(name) COLLATE \"C\" >= 'ab' "
            'AND lower(name) COLLATE "C" < \'ac\' ORDER BY lower(name) COLLATE "C", '
            'name COLLATE "C" LIMIT 101'
        )
        setting = "SET enable_seqscan = off"  # an empty table would otherwise be scanned
    else:
        sql = (
            "EXPLAIN QUERY PLAN SELECT id FROM registered_models WHERE lower(name) >= 'ab' "
            "AND lower(name) < 'ac' ORDER BY lower(name), name LIMIT 101"
        )
        setting = None
    with engine.connect() as c:
        if setting:
            c.execute(text(setting))
        plan = " ".join(str(r) for r in c.execute(text(sql)))
    assert "ix_registered_models_lower_name" in plan, plan


def test_prefix_bounds() -> None:
    assert pages._prefix_bounds("ab") == ("ab", "ac")
    assert pages._prefix_bounds("a\ud7ff") == ("a\ud7ff", "a\ue000")
    assert pages._prefix_bounds("a\U0010ffff") is None

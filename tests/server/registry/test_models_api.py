"""Registered models over REST: register, read, update, search/filter/sort/paginate, delete,
and every bad input (clear 4xx, nothing changed)."""

from __future__ import annotations

import httpx
import pytest

from podstack.server.pagination import encode_token
from tests.server.registry.helpers import error, make_run, new_version, state, transition


def _register(api: httpx.Client, name: str, **extra: object) -> dict:
    r = api.post("/registered-models", json={"name": name, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def test_register_get_update(api: httpx.Client) -> None:
    m = _register(
        api,
        "sentiment-classifier",
        description="BERT-based sentiment analysis model",
        tags=["nlp", "sentiment", "production-ready", "nlp"],
    )
    assert m["name"] == "sentiment-classifier"
    assert m["tags"] == ["nlp", "production-ready", "sentiment"]  # deduplicated, sorted
    assert m["latest_version"] is None and m["production_version"] is None
    assert m["created_by"] == "admin"

    got = api.get("/registered-models/sentiment-classifier").json()
    assert got["description"] == "BERT-based sentiment analysis model"

    r = api.patch("/registered-models/sentiment-classifier", json={"tags": ["cv"]})
    assert r.status_code == 200
    assert r.json()["tags"] == ["cv"]
    assert r.json()["description"] == "BERT-based sentiment analysis model"  # untouched
    r = api.patch("/registered-models/sentiment-classifier", json={"description": "new"})
    assert r.json()["description"] == "new" and r.json()["tags"] == ["cv"]
    assert r.json()["updated_at"] > m["updated_at"]


def test_list_shows_latest_and_production_versions(api: httpx.Client) -> None:
    run = make_run(api)
    for _ in range(3):
        new_version(api, "churn", run)
    transition(api, "churn", 2, "Production")
    _register(api, "empty-model")
    items = {m["name"]: m for m in api.get("/registered-models").json()["items"]}
    assert items["churn"]["latest_version"]["version"] == 3
    assert items["churn"]["latest_version"]["stage"] == "None"
    assert items["churn"]["production_version"] == {
        "version": 2,
        "stage": "Production",
        "created_at": items["churn"]["production_version"]["created_at"],
    }
    assert items["empty-model"]["latest_version"] is None


def test_search_text_stage_labels_and_order(api: httpx.Client) -> None:
    run = make_run(api)
    _register(api, "alpha-nlp", description="Sentiment for REVIEWS", tags=["nlp", "prod"])
    _register(api, "beta-cv", description="images", tags=["cv", "prod"])
    _register(api, "gamma_nlp", description=None, tags=["nlp"])
    _register(api, "delta_x", description="100% sure", tags=[])
    new_version(api, "beta-cv", run)
    transition(api, "beta-cv", 1, "Production")
    new_version(api, "gamma_nlp", run)
    transition(api, "gamma_nlp", 1, "staging")

    def names(**params: object) -> list[str]:
        r = api.get("/registered-models", params=params)
        assert r.status_code == 200, r.text
        return [m["name"] for m in r.json()["items"]]

    assert names() == ["alpha-nlp", "beta-cv", "delta_x", "gamma_nlp"]
    assert names(q="NLP") == ["alpha-nlp", "gamma_nlp"]
    assert names(q="reviews") == ["alpha-nlp"]  # description, case-insensitive
    assert names(q="%") == ["delta_x"]  # LIKE wildcards are literal
    assert names(q="_") == ["delta_x", "gamma_nlp"]
    assert names(stage="production") == ["beta-cv"]
    assert names(stage="Staging") == ["gamma_nlp"]
    assert names(label="nlp") == ["alpha-nlp", "gamma_nlp"]
    assert names(label=["nlp", "prod"]) == ["alpha-nlp"]  # all labels must match
    assert names(label=["nlp", "cv"]) == []
    assert names(label="prod", stage="Production") == ["beta-cv"]
    # Most recently updated first: gamma_nlp had the last transition.
    assert names(order_by="updated")[:2] == ["gamma_nlp", "beta-cv"]


@pytest.mark.parametrize("order_by", ["name", "updated"])
def test_keyset_pagination_visits_every_model_once(api: httpx.Client, order_by: str) -> None:
    for i in range(25):
        _register(api, f"m-{i:02d}", tags=["even"] if i % 2 == 0 else [])
    seen: list[str] = []
    token = None
    while True:
        params = {"limit": 7, "order_by": order_by}
        if token:
            params["page_token"] = token
        page = api.get("/registered-models", params=params).json()
        seen += [m["name"] for m in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert len(seen) == 25 and len(set(seen)) == 25
    if order_by == "name":
        assert seen == sorted(seen)
    even = api.get("/registered-models", params={"label": "even", "limit": 5}).json()
    assert len(even["items"]) == 5 and even["next_page_token"]


def test_delete_model_removes_versions_aliases_tags(api: httpx.Client) -> None:
    run = make_run(api)
    new_version(api, "doomed", run, tags={"k": "v"})
    new_version(api, "doomed", run)
    assert api.put("/registered-models/doomed/aliases/best", json={"version": 1}).status_code == 200
    transition(api, "doomed", 1, "Archived")
    r = api.delete("/registered-models/doomed")
    assert r.status_code == 204
    error(api.get("/registered-models/doomed"), 404, "NOT_FOUND", "doomed")
    error(api.get("/registered-models/doomed/versions/1"), 404, "NOT_FOUND")
    # The name is free again and numbering starts over for the new model.
    assert new_version(api, "doomed", run)["version"] == 1
    assert api.get("/registered-models/doomed/aliases").json() == []


def test_delete_model_holding_production_is_refused(api: httpx.Client) -> None:
    run = make_run(api)
    new_version(api, "live", run)
    new_version(api, "live", run)
    transition(api, "live", 2, "Production")
    before = state(api)
    error(api.delete("/registered-models/live"), 409, "CONFLICT", "v2", "Production", "Archived")
    assert state(api) == before
    transition(api, "live", 2, "Archived")
    assert api.delete("/registered-models/live").status_code == 204


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "name",
    ["", "has space", "slash/name", "ü-model", "a" * 129, ".", "..", "semi;colon", "name\n"],
)
def test_invalid_model_names_are_refused(api: httpx.Client, name: str) -> None:
    before = state(api)
    body = error(
        api.post("/registered-models", json={"name": name}),
        422,
        "VALIDATION_ERROR",
        "invalid model name",
        "letters, digits",
    )
    assert body["details"]["pattern"]
    assert state(api) == before


def test_valid_edge_names_are_accepted(api: httpx.Client) -> None:
    for name in ["a", "A.b_c-1", "x" * 128, "...a"]:
        _register(api, name)
        assert api.get(f"/registered-models/{name}").status_code == 200


def test_duplicate_model_is_a_conflict(api: httpx.Client) -> None:
    _register(api, "dup", description="first", tags=["a"])
    before = state(api)
    error(
        api.post("/registered-models", json={"name": "dup", "description": "second"}),
        409,
        "CONFLICT",
        "already exists",
    )
    assert state(api) == before


def test_bad_labels_and_bodies(api: httpx.Client) -> None:
    before = state(api)
    error(
        api.post("/registered-models", json={"name": "x", "tags": {"a": "b"}}),
        422,
        "VALIDATION_ERROR",
        "tags",
    )
    error(
        api.post("/registered-models", json={"name": "x", "tags": ["bad\tlabel"]}),
        422,
        "VALIDATION_ERROR",
    )
    error(api.post("/registered-models", json={"name": "x", "bogus": 1}), 422, "VALIDATION_ERROR")
    error(
        api.post(
            "/registered-models", content=b"{nope", headers={"content-type": "application/json"}
        ),
        400,
        "BAD_REQUEST",
    )
    assert state(api) == before


def test_unknown_model_is_404_everywhere(api: httpx.Client) -> None:
    for method, path, body in [
        ("GET", "/registered-models/ghost", None),
        ("PATCH", "/registered-models/ghost", {"description": "x"}),
        ("DELETE", "/registered-models/ghost", None),
        ("GET", "/registered-models/ghost/versions", None),
        ("GET", "/registered-models/ghost/versions/1", None),
        ("GET", "/registered-models/ghost/aliases", None),
        ("GET", "/registered-models/ghost/history", None),
    ]:
        r = api.request(method, path, json=body)
        error(r, 404, "NOT_FOUND", "'ghost'")


def test_bad_search_parameters(api: httpx.Client) -> None:
    error(
        api.get("/registered-models", params={"stage": "Prod"}),
        422,
        "VALIDATION_ERROR",
        "Unknown stage",
        "None, Staging, Production, Archived",
    )
    error(
        api.get("/registered-models", params={"order_by": "size"}),
        422,
        "VALIDATION_ERROR",
        "order_by",
        "name, updated",
    )
    error(
        api.get("/registered-models", params={"page_token": "!!!"}),
        400,
        "BAD_REQUEST",
        "page_token",
    )
    error(api.get("/registered-models", params={"limit": 0}), 422, "VALIDATION_ERROR")
    # Well-formed tokens with the wrong shape inside (forged or from another listing).
    for order, key in [("name", [123]), ("updated", ["not a date", 1])]:
        r = api.get(
            "/registered-models", params={"order_by": order, "page_token": encode_token(key)}
        )
        error(r, 400, "BAD_REQUEST", "page_token")
    _register(api, "paged")
    r = api.get("/registered-models/paged/versions", params={"page_token": encode_token(["x"])})
    error(r, 400, "BAD_REQUEST", "page_token")


def test_roles(api: httpx.Client, make_token, client_for) -> None:
    _register(api, "shared")
    viewer = client_for(make_token("viewer"))
    assert viewer.get("/registered-models/shared").status_code == 200
    before = state(api)
    error(
        viewer.post("/registered-models", json={"name": "nope"}), 403, "PERMISSION_DENIED", "editor"
    )
    error(viewer.delete("/registered-models/shared"), 403, "PERMISSION_DENIED")
    assert state(api) == before
    editor = client_for(make_token("editor"))
    assert editor.post("/registered-models", json={"name": "mine"}).status_code == 201

"""Model search answers from plain rows: the search returns column tuples (not ORM objects),
the list view adds labels and latest/Production versions in one query (labels only when no
model of the page ever had a version), and the endpoint's own JSON is exactly the declared
``Page[RegisteredModel]``."""

from __future__ import annotations

import httpx

from podstack.schemas import registry as sch
from podstack.schemas.common import Page
from podstack.server.db.session import Database
from podstack.server.registry import model_pages as pages
from podstack.server.registry import service, views
from tests.server.registry.helpers import make_run, new_version, transition
from tests.server.registry.helpers import statements as _statements


def _register(api: httpx.Client, name: str, **extra: object) -> None:
    r = api.post("/registered-models", json={"name": name, **extra})
    assert r.status_code == 201, r.text


def test_search_returns_plain_rows_with_the_model_attributes(
    api: httpx.Client, db: Database
) -> None:
    _register(api, "rows-a", description="first", tags=["team-x", "alpha"])
    _register(api, "rows-b", tags=["team-x"])
    _register(api, "other", tags=["team-y"])
    with db.session(readonly=True) as s:
        rows, token = service.search_models(s, labels=["team-x"])
        assert token is None
        assert [type(r) for r in rows] == [pages.ModelRow, pages.ModelRow]
        for row in rows:
            m = service.get_model(s, row.name)
            for field in pages.ModelRow._fields:
                assert getattr(row, field) == getattr(m, field), field
        prefix, _ = service.search_models(s, q="ROWS-")
        assert [r.name for r in prefix] == ["rows-a", "rows-b"]
        assert all(isinstance(r, pages.ModelRow) for r in prefix)


def test_page_without_versions_costs_the_search_and_one_label_query(
    api: httpx.Client, db: Database
) -> None:
    for i in range(5):
        _register(api, f"nov-{i}", tags=["team-z", f"n{i}"])
    # The text search runs its two phases (prefix matches, then the others: the page is not
    # full); the others one statement each. No version lookup: no model ever had a version.
    cases = (({"labels": ["team-z"]}, 2), ({"q": "nov-"}, 3), ({"order_by": "updated"}, 2))
    for kw, statements in cases:
        with db.session(readonly=True) as s, _statements(db) as seen:
            rows, _ = service.search_models(s, **kw)  # type: ignore[arg-type]
            page = views.model_views(s, rows)
        assert len(seen) == statements, (kw, seen)
        assert not any("model_versions" in q for q in seen), seen
        assert "FROM model_labels" in seen[-1]
        assert sorted(m.name for m in page) == [f"nov-{i}" for i in range(5)]
        for m in page:
            assert sorted(m.tags) == sorted(["team-z", f"n{m.name[-1]}"])
            assert m.tags == sorted(m.tags)
            assert m.latest_version is None and m.production_version is None


def test_latest_and_production_versions_in_one_query(api: httpx.Client, db: Database) -> None:
    run = make_run(api)
    _register(api, "lv-a", tags=["lv", "b-label", "a-label"])
    _register(api, "lv-b", tags=["lv"])
    _register(api, "lv-c", tags=["lv"])  # versions created, then all deleted
    _register(api, "lv-d", tags=["lv"])  # never had a version
    for _ in range(3):
        new_version(api, "lv-a", run)
    transition(api, "lv-a", 1, "Production")
    transition(api, "lv-a", 2, "Production")  # the most recent move into Production
    new_version(api, "lv-b", run)
    transition(api, "lv-b", 1, "Staging")
    new_version(api, "lv-c", run)
    assert api.delete("/registered-models/lv-c/versions/1").status_code == 204

    with db.session(readonly=True) as s, _statements(db) as seen:
        rows, _ = service.search_models(s, labels=["lv"])
        page = {m.name: m for m in views.model_views(s, rows)}
    assert len(seen) == 2, seen  # the search, then labels + versions in one UNION
    a, b, c, d = (page[n] for n in ("lv-a", "lv-b", "lv-c", "lv-d"))
    assert a.tags == ["a-label", "b-label", "lv"]
    assert a.latest_version is not None and a.latest_version.version == 3
    assert a.latest_version.stage == "None"
    assert a.production_version is not None and a.production_version.version == 2
    assert b.latest_version is not None and b.latest_version.stage == "Staging"
    assert b.production_version is None
    assert c.latest_version is None and c.production_version is None
    assert d.latest_version is None and d.tags == ["lv"]
    # The list entries agree with the single-model read (which also loads each version).
    listed = {
        m["name"]: m for m in api.get("/registered-models", params={"label": "lv"}).json()["items"]
    }
    for name in ("lv-a", "lv-b", "lv-c", "lv-d"):
        one = api.get(f"/registered-models/{name}").json()
        assert listed[name] == {**one, "aliases": {}}, name


def test_search_endpoint_answers_the_declared_page_shape(api: httpx.Client) -> None:
    _register(api, "shape-1", description="Ünïcode ✓", tags=["t"])
    _register(api, "shape-2", tags=["t"])
    r = api.get("/registered-models", params={"label": "t", "limit": 1})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body == Page[sch.RegisteredModel].model_validate(body).model_dump(mode="json")
    # Serialised from plain dicts: byte for byte what the schema writes (field order too).
    assert r.content == Page[sch.RegisteredModel].model_validate(body).model_dump_json().encode()
    assert [m["name"] for m in body["items"]] == ["shape-1"]
    assert body["items"][0]["description"] == "Ünïcode ✓"
    assert body["next_page_token"]
    nxt = api.get(
        "/registered-models",
        params={"label": "t", "limit": 1, "page_token": body["next_page_token"]},
    ).json()
    assert [m["name"] for m in nxt["items"]] == ["shape-2"] and nxt["next_page_token"] is None
    # The OpenAPI document still declares the page schema.
    spec = api.get("/openapi.json")
    if spec.status_code == 404:  # served at the root, not under /api/v1
        spec = httpx.get(str(api.base_url).removesuffix("/api/v1/") + "/openapi.json")
    ok = spec.json()["paths"]["/api/v1/registered-models"]["get"]["responses"]["200"]
    ref = ok["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("Page_RegisteredModel_")


def test_updated_order_pages_from_rows(api: httpx.Client) -> None:
    for i in range(5):
        _register(api, f"upd-{i}", tags=["upd"])
    seen: list[str] = []
    token = None
    for _ in range(10):
        params = {"label": "upd", "order_by": "updated", "limit": 2, "page_token": token}
        page = api.get("/registered-models", params=params).json()
        seen += [m["name"] for m in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == [f"upd-{i}" for i in reversed(range(5))]

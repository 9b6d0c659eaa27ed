"""Label search in name order pages from the (label, model_name) index: the same models in
the same order as the name-ordered search always gave (A→Z as the database sorts
``registered_models.name``), exact keyset pages, and ``model_labels.model_name`` kept equal
to the model's name by every label writer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import event, text

from podstack.server.db.session import Database
from podstack.server.registry import service
from tests.server.registry.helpers import make_run, new_version, transition

# Mixed case, digits and punctuation: the database's own name order decides, not Python's.
NAMES = [
    f"{stem}-{i:02d}"
    for i, stem in enumerate(
        ["alpha", "Alpha", "beta", "BETA", "b.eta", "b_eta", "gamma", "Z", "z", "a1", "A0"] * 3
    )
]


def _labels_for(i: int) -> list[str]:
    out = ["even" if i % 2 == 0 else "odd"]
    if i % 3 == 0:
        out.append("third")
    return out


@pytest.fixture
def models(db: Database) -> None:
    with db.session() as s:
        for i, name in enumerate(NAMES):
            service.register_model(s, "admin", name, labels=_labels_for(i))


def _reference(db: Database, labels: Sequence[str], stage: str | None = None) -> list[str]:
    """The old semantics, asked of the database itself: models holding every label, ordered
    by ``registered_models.name``."""
    where = " AND ".join(
        f"EXISTS (SELECT 1 FROM model_labels l WHERE l.model_id = m.id AND l.label = :l{i})"
        for i in range(len(labels))
    )
    params: dict[str, str] = {f"l{i}": lab for i, lab in enumerate(labels)}
    if stage:
        where += " AND EXISTS (SELECT 1 FROM model_versions v WHERE v.model_id = m.id"
        where += " AND v.stage = :stage)"
        params["stage"] = stage
    sql = f"SELECT m.name FROM registered_models m WHERE {where} ORDER BY m.name"
    with db.session(readonly=True) as s:
        return list(s.scalars(text(sql), params))


def _pages(db: Database, limit: int, **kw: object) -> list[list[str]]:
    pages: list[list[str]] = []
    token = None
    with db.session(readonly=True) as s:
        for _ in range(len(NAMES) + 2):
            rows, token = service.search_models(s, limit=limit, page_token=token, **kw)
            pages.append([r.name for r in rows])
            if token is None:
                return pages
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("limit", [1, 2, 5, 7, 100])
@pytest.mark.parametrize("labels", [["even"], ["odd"], ["third"], ["even", "third"]])
def test_label_pages_match_name_order(
    db: Database, models: None, labels: list[str], limit: int
) -> None:
    expected = _reference(db, labels)
    assert expected  # the fixture gives every label set some models
    pages = _pages(db, limit, labels=labels)
    seen = [n for p in pages for n in p]
    assert seen == expected  # no skips, no repeats, database name order
    assert all(len(p) == limit for p in pages[:-1])


def test_unknown_label_is_an_empty_page(db: Database, models: None) -> None:
    assert _pages(db, 5, labels=["nobody"]) == [[]]
    assert _pages(db, 5, labels=["even", "odd"]) == [[]]


def test_label_and_stage(api: httpx.Client, db: Database) -> None:
    run = make_run(api)
    for i, name in enumerate(["st-b", "st-a", "St-c", "st-d", "st-e"]):
        r = api.post("/registered-models", json={"name": name, "tags": ["team", f"n{i}"]})
        assert r.status_code == 201, r.text
        if i != 3:
            v = new_version(api, name, run)["version"]
            if i % 2 == 0:
                transition(api, name, v, "Production")
    expected = _reference(db, ["team"], "Production")
    assert sorted(expected) == ["St-c", "st-b", "st-e"]
    for limit in (1, 2, 10):
        pages = _pages(db, limit, labels=["team"], stage="Production")
        assert [n for p in pages for n in p] == expected


def test_pages_follow_label_changes(api: httpx.Client, db: Database, models: None) -> None:
    # Relabel a few models between pages: later pages reflect the new labels, and the keyset
    # neither repeats nor skips the models that did not change.
    before = _reference(db, ["even"])
    with db.session(readonly=True) as s:
        first, token = service.search_models(s, labels=["even"], limit=4)
    assert [r.name for r in first] == before[:4]
    cut = first[-1].name
    moved = _reference(db, ["odd"])[-3:]  # after the cut: later pages must show them
    for name in moved:
        r = api.patch(f"/registered-models/{name}", json={"tags": ["even", "new"]})
        assert r.status_code == 200, r.text
    dropped = before[-1]
    r = api.patch(f"/registered-models/{dropped}", json={"tags": []})
    assert r.status_code == 200, r.text
    rest = [n for p in _pages_from(db, token, labels=["even"]) for n in p]
    assert rest == [n for n in _reference(db, ["even"]) if n > cut]
    assert set(moved) <= set(rest)
    assert _pages(db, 100, labels=["new"]) == [_reference(db, ["new"])]
    assert dropped not in rest
    _assert_label_names_in_sync(db)


def _pages_from(db: Database, token: str | None, **kw: object) -> list[list[str]]:
    pages: list[list[str]] = []
    with db.session(readonly=True) as s:
        while token is not None:
            rows, token = service.search_models(s, limit=3, page_token=token, **kw)
            pages.append([r.name for r in rows])
    return pages


def _assert_label_names_in_sync(db: Database) -> None:
    sql = (
        "SELECT count(*) FROM model_labels l JOIN registered_models m ON m.id = l.model_id "
        "WHERE l.model_name <> m.name"
    )
    with db.session(readonly=True) as s:
        assert s.scalar(text("SELECT count(*) FROM model_labels")) > 0
        assert s.scalar(text(sql)) == 0


def test_every_label_writer_copies_the_model_name(api: httpx.Client, db: Database) -> None:
    """register (with tags), update (tags replaced) and auto-register by create_model_version
    all keep ``model_labels.model_name`` equal to the name. Models cannot be renamed: the
    update endpoint rejects a name field, so no other writer exists."""
    assert api.post("/registered-models", json={"name": "w-1", "tags": ["a", "b"]}).status_code
    r = api.patch("/registered-models/w-1", json={"tags": ["c"]})
    assert r.status_code == 200, r.text
    new_version(api, "w-2", make_run(api))
    assert api.patch("/registered-models/w-2", json={"tags": ["d"]}).status_code == 200
    r = api.patch("/registered-models/w-1", json={"name": "w-renamed"})
    assert r.status_code == 422, r.text
    with db.session(readonly=True) as s:
        rows = s.execute(text("SELECT model_name, label FROM model_labels ORDER BY label")).all()
    assert [tuple(r) for r in rows] == [("w-1", "c"), ("w-2", "d")]
    _assert_label_names_in_sync(db)


@contextmanager
def _statements(db: Database) -> Iterator[list[tuple[str, object]]]:
    seen: list[tuple[str, object]] = []

    def before(_conn: object, _cur: object, stmt: str, params: object, *_a: object) -> None:
        if "model_labels" in stmt and "registered_models" in stmt:
            seen.append((stmt, params))

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


@pytest.mark.parametrize("labels", [["even"], ["even", "third"]])
def test_label_search_plan_is_a_range_of_the_label_name_index(
    db: Database, models: None, labels: list[str]
) -> None:
    with db.session(readonly=True) as s:
        _, token = service.search_models(s, labels=labels, limit=2)
    with _statements(db) as seen, db.session(readonly=True) as s:
        service.search_models(s, labels=labels, stage="Production", limit=2, page_token=token)
    (stmt, params), *_ = seen
    pg = db.engine.dialect.name == "postgresql"
    with db.engine.connect() as c:
        if pg:
            c.exec_driver_sql("ANALYZE model_labels")
            c.exec_driver_sql("ANALYZE registered_models")
            # A few dozen rows would otherwise be read whole and sorted.
            c.exec_driver_sql("SET enable_seqscan = off")
            c.exec_driver_sql("SET enable_sort = off")
        explain = "EXPLAIN " if pg else "EXPLAIN QUERY PLAN "
        plan = "\n".join(str(r) for r in c.exec_driver_sql(explain + stmt, params))
    assert "ix_model_labels_label_name" in plan, plan
    assert "TEMP B-TREE" not in plan.upper(), plan  # SQLite: no sort step
    assert "Sort" not in plan.replace("Sort Key", ""), plan  # PostgreSQL: no sort step


def test_more_labels_than_the_statement_cache_keeps(db: Database) -> None:
    """Search statements are cached per shape for up to 4 labels; more labels are built per
    request and must mean the same: every label held."""
    six = [f"l{i}" for i in range(6)]
    with db.session() as s:
        service.register_model(s, "admin", "all-six", labels=six)
        service.register_model(s, "admin", "five-of-six", labels=six[:5])
        service.register_model(s, "admin", "missing-l0", labels=six[1:])
    for labels in (six[:5], six):
        expected = _reference(db, labels)
        assert expected == (["all-six", "five-of-six"] if len(labels) == 5 else ["all-six"])
        for limit in (1, 100):
            assert [n for p in _pages(db, limit, labels=labels) for n in p] == expected

"""The registry's hot paths stay cheap: resolving an alias and creating a version cost a
fixed, small number of SQL statements (counted on the real database), and the lean answers
they build without reading back agree with what a read returns."""

from __future__ import annotations

import httpx

from podstack.server.db.session import Database
from podstack.server.notifications import sinks  # noqa: F401 (subscribes the outbox)
from podstack.server.registry import service, views
from tests.server.registry.helpers import make_run, new_version
from tests.server.registry.helpers import statements as _statements


def test_alias_resolution_is_one_join_plus_one_query(api: httpx.Client, db: Database) -> None:
    run = make_run(api, params={"lr": 0.1}, metrics={"acc": 0.9})
    new_version(api, "hot", run, tags={"team": "a"})
    new_version(api, "hot", run, parent="models:/hot/1")
    assert api.put("/registered-models/hot/aliases/champion", json={"version": 2}).is_success
    with db.session(readonly=True) as s, _statements(db) as seen:
        m, mv = service.version_by_alias(s, "hot", "champion")
        view = views.version_view(s, m, mv, detail=False)
    # model+alias+version joined; tags, metrics and aliases in one UNION; the parent's ref.
    assert len(seen) == 3, seen
    assert view.version == 2 and view.aliases == ["champion"]
    assert view.parent is not None and (view.parent.model_name, view.parent.version) == ("hot", 1)
    assert view.files is None and view.source_run is None
    via_api = api.get("/registered-models/hot/aliases/champion").json()
    assert via_api == view.model_dump(mode="json")


def test_version_creation_statements(api: httpx.Client, db: Database) -> None:
    run = make_run(api)
    assert api.post("/registered-models", json={"name": "hot-create"}).is_success
    with db.session() as s, _statements(db) as seen:
        new = service.add_version(s, "admin", "hot-create", run, "model.pt")
        view = views.new_version_view(s, new)
    # the artifact (its row proves the run exists), allocate (UPDATE ... RETURNING), version,
    # files, audit, webhooks.
    assert len(seen) == 6, seen
    assert not any("FROM runs" in q for q in seen)
    assert not any("FROM version_tags" in q or "FROM params" in q for q in seen)
    assert view.version == 1
    assert api.get("/registered-models/hot-create/versions/1").json() | {
        "files": None,
        "source_run": None,
    } == view.model_dump(mode="json")


def test_failed_create_takes_no_number(api: httpx.Client) -> None:
    run = make_run(api)
    new_version(api, "gapless", run)
    r = api.post(
        "/registered-models/gapless/versions",
        json={"source_run_id": run, "artifact_path": "model.pt", "parent": "models:/gapless/9"},
    )
    assert r.status_code == 404
    assert new_version(api, "gapless", run)["version"] == 2


def test_numbers_are_right_when_the_model_is_already_loaded(
    api: httpx.Client, db: Database
) -> None:
    # The web form registers and adds a version in one transaction: the allocation must
    # read the counter from the row, not from the model object already in the session.
    run = make_run(api)
    with db.session() as s:
        m = service.register_model(s, "admin", "loaded")
        assert service.add_version(s, "admin", "loaded", run, "model.pt").version.version == 1
        assert m.next_version == 2
        assert service.add_version(s, "admin", "loaded", run, "model.pt").version.version == 2
        service.get_version(s, "loaded", 2)  # found: the version rows are the session's own
    assert [
        v["version"] for v in api.get("/registered-models/loaded/versions").json()["items"]
    ] == [2, 1]
    assert new_version(api, "loaded", run)["version"] == 3

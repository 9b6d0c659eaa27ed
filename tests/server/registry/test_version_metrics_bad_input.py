"""Every bad input to ``POST /registered-models/{name}/versions/{v}/metrics`` (a version's
own validation metrics): the 4xx status, the error code, a message that says what is wrong,
and nothing changed (the registry's whole state and the audit log are the same after)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from podstack.server.audit.models import AuditEvent
from podstack.server.db.session import Database
from tests.server.registry.helpers import error, make_run, new_version, state

# Bad input is refused before anything is written, by validation and lookups by name: the
# database engine plays no part in the answer (SQLite pass only).
pytestmark = pytest.mark.one_db

MODEL = "m"
URL = f"/registered-models/{MODEL}/versions/1/metrics"


def _audit_count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


@pytest.fixture
def version(api: httpx.Client) -> dict[str, Any]:
    assert api.post("/registered-models", json={"name": MODEL}).status_code == 201
    v = new_version(api, MODEL, make_run(api))
    r = api.post(URL, json={"metrics": {"accuracy": 0.9}})
    assert r.status_code == 200, r.text
    assert r.json()["validation_metrics"] == {"accuracy": 0.9}
    return v


BAD_BODIES: list[tuple[Any, str]] = [
    ({"metrics": {}}, "at least 1"),
    ({}, "metrics"),
    ({"metrics": {"accuracy": "high"}}, "number"),
    ({"metrics": {"accuracy": None}}, "number"),
    ({"metrics": {"acc$uracy": 0.5}}, "pattern"),
    ({"metrics": {"k" * 251: 0.5}}, "at most 250"),
    ({"metrics": {f"m{i}": 0.5 for i in range(1001)}}, "at most 1000"),
    ({"metrics": {"accuracy": 0.5}, "colour": "red"}, "extra inputs"),
    ({"metrics": [["accuracy", 0.5]]}, "dictionary"),
    ([{"accuracy": 0.5}], "dictionary"),
]


@pytest.mark.parametrize(("body", "needle"), BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_bodies_are_422_and_change_nothing(
    api: httpx.Client, db: Database, version: dict[str, Any], body: Any, needle: str
) -> None:
    before, audits = state(api), _audit_count(db)
    error(api.post(URL, json=body), 422, "VALIDATION_ERROR", needle)
    assert state(api) == before
    assert _audit_count(db) == audits


def test_body_that_is_not_json_is_refused(
    api: httpx.Client, db: Database, version: dict[str, Any]
) -> None:
    before, audits = state(api), _audit_count(db)
    r = api.post(URL, content=b"accuracy=0.5", headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["code"] in ("BAD_REQUEST", "VALIDATION_ERROR")
    assert "json" in r.json()["error"]["message"].lower()
    assert state(api) == before
    assert _audit_count(db) == audits


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("/registered-models/nope/versions/1/metrics", "nope"),
        (f"/registered-models/{MODEL}/versions/7/metrics", "7"),
    ],
)
def test_unknown_model_or_version_is_404(
    api: httpx.Client, db: Database, version: dict[str, Any], url: str, needle: str
) -> None:
    before, audits = state(api), _audit_count(db)
    error(api.post(url, json={"metrics": {"accuracy": 0.1}}), 404, "NOT_FOUND", needle)
    assert state(api) == before
    assert _audit_count(db) == audits


def test_viewer_and_anonymous_are_refused(
    api: httpx.Client,
    anon: httpx.Client,
    db: Database,
    make_token: Callable[[str], str],
    client_for: Callable[[str], httpx.Client],
    version: dict[str, Any],
) -> None:
    viewer = client_for(make_token("viewer"))
    before, audits = state(api), _audit_count(db)
    error(viewer.post(URL, json={"metrics": {"accuracy": 0.1}}), 403, "PERMISSION_DENIED")
    error(anon.post(URL, json={"metrics": {"accuracy": 0.1}}), 401, "UNAUTHENTICATED")
    assert state(api) == before
    assert _audit_count(db) == audits

"""Body validation of ``POST /runs/{id}/datasets``: every bad body is a 422 VALIDATION_ERROR
whose message names the problem, and the run's datasets and the audit log are unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from podstack.server.audit.models import AuditEvent
from podstack.server.db.session import Database
from tests.http_errors import api_error

# Bad input is refused before anything is written, by validation and lookups by name: the
# database engine plays no part in the answer (SQLite pass only).
pytestmark = pytest.mark.one_db


def _audit_count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


@pytest.fixture
def run_id(api: httpx.Client) -> str:
    r = api.post("/runs", json={"experiment_id": "datasets-exp"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    ok = api.post(f"/runs/{rid}/datasets", json={"name": "train", "context": "training"})
    assert ok.status_code == 201, ok.text
    return str(rid)


def _datasets(api: httpx.Client, run_id: str) -> Any:
    r = api.get(f"/runs/{run_id}")
    assert r.status_code == 200, r.text
    return r.json().get("datasets")


BAD_BODIES: list[tuple[Any, str]] = [
    ({}, "name"),
    ({"name": ""}, "at least 1"),
    ({"name": "n" * 257}, "at most 256"),
    ({"name": None}, "string"),
    ({"name": 7}, "string"),
    ({"name": "d", "source_uri": "s" * 4001}, "at most 4000"),
    ({"name": "d", "digest": "0" * 129}, "at most 128"),
    ({"name": "d", "context": "c" * 65}, "at most 64"),
    ({"name": "d", "context": ["training"]}, "string"),
    ({"name": "d", "schema": {}}, "extra inputs"),
    (["train"], "dictionary"),
]


@pytest.mark.parametrize(("body", "needle"), BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_bodies_are_422_and_change_nothing(
    api: httpx.Client, db: Database, run_id: str, body: Any, needle: str
) -> None:
    before, audits = _datasets(api, run_id), _audit_count(db)
    err = api_error(api.post(f"/runs/{run_id}/datasets", json=body), 422, "VALIDATION_ERROR")
    assert needle in err["message"].lower(), err["message"]
    assert _datasets(api, run_id) == before
    assert _audit_count(db) == audits


def test_unknown_run_is_404_and_viewer_is_403(
    api: httpx.Client,
    db: Database,
    run_id: str,
    make_token: Callable[[str], str],
    client_for: Callable[[str], httpx.Client],
) -> None:
    viewer = client_for(make_token("viewer"))
    before, audits = _datasets(api, run_id), _audit_count(db)
    err = api_error(api.post("/runs/nope/datasets", json={"name": "d"}), 404, "NOT_FOUND")
    assert "nope" in err["message"]
    api_error(viewer.post(f"/runs/{run_id}/datasets", json={"name": "d"}), 403, "PERMISSION_DENIED")
    assert _datasets(api, run_id) == before
    assert _audit_count(db) == audits

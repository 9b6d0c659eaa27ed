"""Idempotency-Key on the REST API: a repeat is answered with the first result and applied
once, including when two attempts race and when the server died before storing the answer."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
from sqlalchemy import text, update

from podstack.server.db.base import utcnow
from podstack.server.db.session import Database
from podstack.server.idempotency import service
from podstack.server.idempotency.models import IdempotencyKey
from tests.server.registry.helpers import error, make_run


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _count(db: Database, sql: str, **params: object) -> int:
    with db.engine.connect() as c:
        return int(c.execute(text(sql), params).scalar() or 0)


def _lose_answers(db: Database) -> None:
    """What a SIGKILL between the request's commit and storing its answer leaves."""
    with db.session() as s:
        s.execute(
            update(IdempotencyKey).values(
                status=None,
                content_type=None,
                body=None,
                # Long enough ago that no first attempt can still be storing it.
                created_at=utcnow() - timedelta(seconds=5),
            )
        )


def test_repeated_create_run_is_answered_with_the_first_run(api: httpx.Client, db: Database):
    h = _key()
    first = api.post("/runs", json={"experiment_id": "idem"}, headers=h)
    again = api.post("/runs", json={"experiment_id": "idem"}, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert _count(db, "SELECT count(*) FROM runs") == 1
    # Another key is another call.
    assert api.post("/runs", json={"experiment_id": "idem"}, headers=_key()).status_code == 201
    assert _count(db, "SELECT count(*) FROM runs") == 2


def test_repeated_metric_batch_is_stored_once(api: httpx.Client, db: Database):
    run = make_run(api, finish=False)
    h = _key()
    body = {"points": [{"key": "loss", "value": 0.5, "step": 1}, {"key": "acc", "value": 1.0}]}
    for _ in range(3):
        r = api.post(f"/runs/{run}/metrics", json=body, headers=h)
        assert r.status_code == 200 and r.json() == {"logged": 2}
    assert _count(db, "SELECT count(*) FROM metrics WHERE run_id = :r", r=run) == 2


def test_repeated_version_creation_makes_one_version(api: httpx.Client, db: Database):
    run = make_run(api)
    h = _key()
    body = {"source_run_id": run, "artifact_path": "model.pt"}
    first = api.post("/registered-models/idem-m/versions", json=body, headers=h)
    again = api.post("/registered-models/idem-m/versions", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json()["version"] == again.json()["version"] == 1
    assert _count(db, "SELECT count(*) FROM model_versions") == 1


def test_repeat_of_a_create_that_now_conflicts_gets_the_first_answer(api: httpx.Client):
    # The second attempt alone would be refused ("already exists"): the key answers it.
    h = _key()
    first = api.post("/registered-models", json={"name": "idem-reg"}, headers=h)
    again = api.post("/registered-models", json={"name": "idem-reg"}, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    # Without the key it is a new request, and refused as before.
    assert api.post("/registered-models", json={"name": "idem-reg"}).status_code == 409


def test_same_key_with_another_body_is_refused(api: httpx.Client, db: Database):
    h = _key()
    assert api.post("/runs", json={"experiment_id": "a"}, headers=h).status_code == 201
    r = api.post("/runs", json={"experiment_id": "b"}, headers=h)
    err = error(r, 422, "VALIDATION_ERROR", "already used for a different request")
    assert err["details"]["idempotency_key"] == h["Idempotency-Key"]
    assert _count(db, "SELECT count(*) FROM runs") == 1
    assert _count(db, "SELECT count(*) FROM experiments WHERE name = 'b'") == 0


def test_a_bad_key_is_refused(api: httpx.Client, db: Database):
    for bad in ("", "x" * 256, "with space"):
        r = api.post("/runs", json={"experiment_id": "a"}, headers={"Idempotency-Key": bad})
        error(r, 400, "BAD_REQUEST", "Idempotency-Key must be")
    assert _count(db, "SELECT count(*) FROM runs") == 0


def test_keys_are_scoped_per_principal(
    api: httpx.Client, make_token: Callable[..., str], client_for: Callable[[str], httpx.Client]
):
    other = client_for(make_token("editor"))
    h = _key()
    mine = api.post("/runs", json={"experiment_id": "shared"}, headers=h)
    theirs = other.post("/runs", json={"experiment_id": "shared"}, headers=h)
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert "idempotent-replayed" not in theirs.headers


def test_failed_requests_and_reads_store_nothing(api: httpx.Client, db: Database):
    r = api.post("/runs/nope/metrics", json={"metrics": {"a": 1}}, headers=_key())
    assert r.status_code == 404
    r = api.post("/runs/search", json={}, headers=_key())
    assert r.status_code == 200
    assert service.count(db) == 0


def test_racing_attempts_apply_once(api: httpx.Client, db: Database):
    run = make_run(api)
    h = _key()
    body = {"source_run_id": run, "artifact_path": "model.pt"}
    answers: list[httpx.Response] = []

    def attempt() -> None:
        with httpx.Client(base_url=str(api.base_url), headers=api.headers, timeout=60) as c:
            answers.append(c.post("/registered-models/race/versions", json=body, headers=h))

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert {a.json()["version"] for a in answers} == {1}
    assert _count(db, "SELECT count(*) FROM model_versions") == 1


def test_answers_lost_in_a_crash_are_rebuilt(api: httpx.Client, db: Database):
    run = make_run(api, finish=False)
    k_run, k_metrics, k_params = _key(), _key(), _key()
    created = api.post("/runs", json={"experiment_id": "lost"}, headers=k_run).json()
    metrics = {"points": [{"key": "loss", "value": 0.1, "step": s} for s in range(5)]}
    assert api.post(f"/runs/{run}/metrics", json=metrics, headers=k_metrics).status_code == 200
    params = {"params": {"lr": "0.1"}}
    assert api.post(f"/runs/{run}/params", json=params, headers=k_params).status_code == 204
    api.patch(f"/runs/{run}", json={"status": "FINISHED"})
    k_version = _key()
    body = {"source_run_id": run, "artifact_path": "model.pt"}
    version = api.post("/registered-models/lost/versions", json=body, headers=k_version).json()
    k_model = _key()
    assert api.post("/registered-models", json={"name": "lost2"}, headers=k_model).is_success
    _lose_answers(db)

    again = api.post("/runs", json={"experiment_id": "lost"}, headers=k_run)
    assert again.status_code == 201 and again.json()["id"] == created["id"]
    again = api.post(f"/runs/{run}/metrics", json=metrics, headers=k_metrics)
    assert again.status_code == 200 and again.json() == {"logged": 5}
    again = api.post(f"/runs/{run}/params", json=params, headers=k_params)
    assert again.status_code == 204
    again = api.post("/registered-models/lost/versions", json=body, headers=k_version)
    assert again.status_code == 201 and again.json()["version"] == version["version"]
    # No rebuilder for this route: the caller is told it was applied, never applied twice.
    again = api.post("/registered-models", json={"name": "lost2"}, headers=k_model)
    error(again, 409, "IDEMPOTENCY_RESULT_LOST", "already applied, once")
    assert _count(db, "SELECT count(*) FROM runs") == 2
    assert _count(db, "SELECT count(*) FROM metrics WHERE run_id = :r", r=run) == 5
    assert _count(db, "SELECT count(*) FROM model_versions") == 1
    assert _count(db, "SELECT count(*) FROM registered_models WHERE name = 'lost2'") == 1


def test_keys_expire_after_24_hours(api: httpx.Client, db: Database):
    h = _key()
    first = api.post("/runs", json={"experiment_id": "old"}, headers=h).json()
    assert service.cleanup(db) == 0
    with db.session() as s:
        s.execute(
            update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=24, seconds=1))
        )
    assert service.lookup(db, "admin", h["Idempotency-Key"]) is None
    assert service.cleanup(db) == 1
    assert service.count(db) == 0
    again = api.post("/runs", json={"experiment_id": "old"}, headers=h).json()
    assert again["id"] != first["id"]


def test_hot_paths_add_no_second_transaction(api: httpx.Client, db: Database):
    """Metric batches, create run/version and 204 answers are answered again from the key
    row written with their effects; other answers are stored beside it."""
    run = make_run(api, finish=False)
    h = _key()
    assert api.post(f"/runs/{run}/metrics", json={"metrics": {"a": 1}}, headers=h).is_success
    assert api.post("/registered-models", json={"name": "stored"}, headers=_key()).is_success
    with db.session(readonly=True) as s:
        rows = {r.path: r.status for r in s.query(IdempotencyKey)}
    assert rows == {f"/api/v1/runs/{run}/metrics": None, "/api/v1/registered-models": 201}
    again = api.post(f"/runs/{run}/metrics", json={"metrics": {"a": 1}}, headers=h)
    assert again.json() == {"logged": 1} and again.headers["idempotent-replayed"] == "true"


def test_answers_holding_a_secret_are_never_kept(api: httpx.Client, db: Database):
    h = _key()
    first = api.post("/tokens", json={"name": "ci"}, headers=h)
    assert first.status_code == 201
    token = first.json()["token"]
    with db.session(readonly=True) as s:
        (row,) = s.query(IdempotencyKey).all()
        assert (row.content_type, row.body) == (service.WITHHELD, None)
    with db.engine.connect() as c:
        dump = " ".join(str(r) for r in c.execute(text("SELECT * FROM idempotency_keys")).all())
    assert token not in dump
    # Applied once; the repeat is told so instead of getting a second token.
    again = api.post("/tokens", json={"name": "ci"}, headers=h)
    error(again, 409, "IDEMPOTENCY_RESULT_LOST", "held a secret")
    assert _count(db, "SELECT count(*) FROM api_tokens WHERE name = 'ci'") == 1

"""Metric logging's fast paths (issue 8): the body parsed by pydantic-core's JSON parser, the
points inserted as driver tuples (executemany on SQLite, COPY on PostgreSQL). Checked here:
every value and timestamp reads back exactly as the ORM would have stored it, bad bodies get
the same clear 4xx as before, and nothing is written when a request fails."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from podstack.errors import ValidationFailed
from podstack.server.db.session import Database
from podstack.server.tracking import metric_writes as repo
from podstack.server.tracking.models import LatestMetric, Metric
from tests.conftest import current_db_kind
from tests.http_errors import api_error as _error


def _run(api: httpx.Client) -> str:
    r = api.post("/runs", json={"experiment_id": "fast"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _history(api: httpx.Client, run_id: str, key: str) -> list[dict]:
    r = api.get(f"/runs/{run_id}/metrics/{key}/history")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _nothing_logged(api: httpx.Client, run_id: str) -> None:
    assert api.get(f"/runs/{run_id}").json()["metrics"] == {}
    r = api.get(f"/runs/{run_id}/metrics/a/history")
    assert r.status_code == 404


def _same_float(got: object, want: float) -> bool:
    if math.isnan(want):
        return got == "NaN"
    if math.isinf(want):
        return got == ("Infinity" if want > 0 else "-Infinity")
    return got == want


@pytest.mark.parametrize(
    ("wire", "want"),
    [
        ("NaN", math.nan),
        ("nan", math.nan),
        (" NaN ", math.nan),
        ("Infinity", math.inf),
        ("+Infinity", math.inf),
        ("infinity", math.inf),
        ("inf", math.inf),
        ("+inf", math.inf),
        ("INF", math.inf),
        ("-Infinity", -math.inf),
        ("-inf", -math.inf),
        ("-INFINITY", -math.inf),
        ("2.5", 2.5),
        (3, 3.0),
        (True, 1.0),
    ],
)
def test_metric_value_spellings(api: httpx.Client, wire: object, want: float) -> None:
    """The spellings the old per-value validator mapped are accepted by the core float
    validator itself; pinned so a pydantic upgrade that changes that is caught."""
    run_id = _run(api)
    r = api.post(f"/runs/{run_id}/metrics", json={"points": [{"key": "a", "value": wire}]})
    assert r.status_code == 200, r.text
    r = api.post(f"/runs/{run_id}/metrics", json={"metrics": {"b": wire}, "step": 0})
    assert r.status_code == 200, r.text
    assert _same_float(_history(api, run_id, "a")[0]["value"], want)
    latest = api.get(f"/runs/{run_id}").json()["metrics"]
    assert _same_float(latest["a"], want) and _same_float(latest["b"], want)


def test_json_nan_and_infinity_literals(api: httpx.Client) -> None:
    """Python's json module accepted the non-standard NaN/Infinity tokens; so does the new
    parser."""
    run_id = _run(api)
    body = b'{"points": [{"key": "a", "value": NaN}, {"key": "b", "value": Infinity},'
    body += b' {"key": "c", "value": -Infinity}]}'
    r = api.post(
        f"/runs/{run_id}/metrics", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 200 and r.json() == {"logged": 3}
    got = {k: _history(api, run_id, k)[0]["value"] for k in "abc"}
    assert got == {"a": "NaN", "b": "Infinity", "c": "-Infinity"}


def test_history_values_nan_inf_and_steps_round_trip(api: httpx.Client) -> None:
    run_id = _run(api)
    values = [0.1, math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 2**53 + 0.0]
    wire = [
        {"key": "v", "value": "NaN" if math.isnan(v) else v, "step": i}
        for i, v in enumerate(values)
    ]
    wire[2]["value"], wire[3]["value"] = "Infinity", "-Infinity"
    wire.append({"key": "v", "value": 7.0, "step": 2**62})
    assert api.post(f"/runs/{run_id}/metrics", json={"points": wire}).json() == {"logged": 9}
    hist = _history(api, run_id, "v")
    assert [p["step"] for p in hist] == [*range(len(values)), 2**62]
    for point, want in zip(hist, values, strict=False):
        assert _same_float(point["value"], want), (point, want)
    assert api.get(f"/runs/{run_id}").json()["metrics"] == {"v": 7.0}


def test_timestamps_round_trip_exactly(api: httpx.Client) -> None:
    """Explicit timestamps (microseconds, another offset, naive = UTC) read back as the same
    instant; points without one get the request's time, the same for all of them."""
    run_id = _run(api)
    plus2 = timezone(timedelta(hours=2))
    sent = [
        datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        datetime(2024, 5, 6, 9, 8, 9, 654321, tzinfo=plus2),
        datetime(1999, 12, 31, 23, 59, 59, 999999),  # naive: UTC
    ]
    points = [
        {"key": "t", "value": float(i), "step": i, "timestamp": ts.isoformat()}
        for i, ts in enumerate(sent)
    ]
    points += [{"key": "now", "value": 1.0, "step": i} for i in range(3)]
    before = datetime.now(UTC)
    assert api.post(f"/runs/{run_id}/metrics", json={"points": points}).status_code == 200
    after = datetime.now(UTC)
    got = [datetime.fromisoformat(p["timestamp"]) for p in _history(api, run_id, "t")]
    want = [ts if ts.tzinfo else ts.replace(tzinfo=UTC) for ts in sent]
    assert got == want
    assert all(g.utcoffset() == timedelta(0) for g in got)
    now_ts = {p["timestamp"] for p in _history(api, run_id, "now")}
    assert len(now_ts) == 1
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(now_ts.pop()) <= after


def test_stored_timestamp_matches_the_orm(api: httpx.Client, db: Database) -> None:
    """The fast insert converts timestamps with the column type's bind processor: the raw
    stored value is byte-for-byte what an ORM insert stores for the same datetime."""
    run_id = _run(api)
    ts = datetime(2024, 2, 29, 23, 0, 1, 5, tzinfo=timezone(timedelta(hours=-5)))
    with db.session() as s:
        repo.insert_metrics(s, [(run_id, "fast", 1.5, 3, ts)])
        s.add(Metric(run_id=run_id, key="orm", value=1.5, step=3, timestamp=ts))
    with db.session(readonly=True) as s:
        q = text("SELECT key, timestamp FROM metrics WHERE run_id = :r")
        raw = {key: stored for key, stored in s.execute(q, {"r": run_id})}
        orm = {m.key: m.timestamp for m in s.scalars(select(Metric).where(Metric.run_id == run_id))}
    assert raw["fast"] == raw["orm"]
    assert orm["fast"] == orm["orm"] == ts


def test_latest_is_highest_step_within_one_request(api: httpx.Client) -> None:
    run_id = _run(api)
    points = [
        {"key": "a", "value": 5.0, "step": 9},
        {"key": "a", "value": 1.0, "step": 2},  # a later backfill of an earlier step
        {"key": "b", "value": 1.0, "step": 4, "timestamp": "2024-01-01T00:00:00+00:00"},
        {"key": "b", "value": 2.0, "step": 4, "timestamp": "2024-01-01T00:00:01+00:00"},
        {"key": "b", "value": 3.0, "step": 4, "timestamp": "2024-01-01T00:00:00+00:00"},
    ]
    assert api.post(f"/runs/{run_id}/metrics", json={"points": points}).status_code == 200
    assert api.get(f"/runs/{run_id}").json()["metrics"] == {"a": 5.0, "b": 2.0}


def test_naive_and_aware_timestamps_in_one_request(api: httpx.Client) -> None:
    """A naive timestamp (UTC) next to a defaulted one for the same key and step used to be
    compared as naive vs aware: a 500."""
    run_id = _run(api)
    points = [
        {"key": "a", "value": 1.0, "step": 0, "timestamp": "2024-01-01T00:00:00"},
        {"key": "a", "value": 2.0, "step": 0},  # now: later than 2024
        {"key": "a", "value": 3.0, "step": 0, "timestamp": "2024-01-01T00:00:00+01:00"},
    ]
    r = api.post(f"/runs/{run_id}/metrics", json={"points": points})
    assert r.status_code == 200 and r.json() == {"logged": 3}
    assert api.get(f"/runs/{run_id}").json()["metrics"] == {"a": 2.0}


def test_unknown_point_fields_are_ignored(api: httpx.Client) -> None:
    """As before (points were a lenient model): only the body's own fields are strict."""
    run_id = _run(api)
    r = api.post(
        f"/runs/{run_id}/metrics", json={"points": [{"key": "a", "value": 1, "note": "x"}]}
    )
    assert r.status_code == 200, r.text
    body = _error(
        api.post(f"/runs/{run_id}/metrics", json={"points": [], "note": "x"}),
        422,
        "VALIDATION_ERROR",
    )
    assert "note" in body["message"] and "Extra inputs" in body["message"]


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("content", "headers", "status", "code", "says"),
    [
        (b'{"points": [{"key": "a", "value": 1}', JSON, 400, "BAD_REQUEST", "not valid JSON"),
        (b'{"metrics": {"\xff": 1}}', JSON, 400, "BAD_REQUEST", "not valid JSON"),
        (b"", JSON, 422, "VALIDATION_ERROR", "Invalid body: Field required"),
        (b"[1, 2]", JSON, 422, "VALIDATION_ERROR", "Invalid body: Input should be an object"),
        (b"null", JSON, 422, "VALIDATION_ERROR", "Invalid body"),
        (b'{"metrics": {"a": 1}}', {}, 422, "VALIDATION_ERROR", "Invalid body"),
        (
            b'{"metrics": {"a": 1}}',
            {"content-type": "text/plain"},
            422,
            "VALIDATION_ERROR",
            "valid dictionary or object",
        ),
        (
            b'{"points": [{"key": "a", "value": 1}, {"key": "b", "value": "lots"}]}',
            JSON,
            422,
            "VALIDATION_ERROR",
            "Invalid points.1.value: Input should be a valid number",
        ),
        (
            b'{"points": [{"key": "bad key!", "value": 1}]}',
            JSON,
            422,
            "VALIDATION_ERROR",
            "Invalid points.0.key: String should match pattern",
        ),
        (
            b'{"points": [{"value": 1}]}',
            JSON,
            422,
            "VALIDATION_ERROR",
            "Invalid points.0.key: Field required",
        ),
        (
            b'{"points": [{"key": "a", "value": 1, "step": -1}]}',
            JSON,
            422,
            "VALIDATION_ERROR",
            "Invalid points.0.step: Input should be greater than or equal to 0",
        ),
        (
            b'{"points": [{"key": "a", "value": 1, "step": 4611686018427387905}]}',
            JSON,
            422,
            "VALIDATION_ERROR",
            "Invalid points.0.step: Input should be less than or equal to",
        ),
        (
            b'{"points": [{"key": "a", "value": 1, "timestamp": "yesterday"}]}',
            JSON,
            422,
            "VALIDATION_ERROR",
            "Invalid points.0.timestamp",
        ),
        (b'{"points": [7]}', JSON, 422, "VALIDATION_ERROR", "Invalid points.0: Input should be"),
        (b'{"points": "a"}', JSON, 422, "VALIDATION_ERROR", "Invalid points: Input should be"),
        (b"{}", JSON, 422, "VALIDATION_ERROR", "No metrics given"),
        (b'{"points": []}', JSON, 422, "VALIDATION_ERROR", "No metrics given"),
    ],
)
def test_bad_metric_bodies(
    api: httpx.Client,
    content: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
    says: str,
) -> None:
    run_id = _run(api)
    r = api.post(f"/runs/{run_id}/metrics", content=content, headers=headers)
    body = _error(r, status, code)
    assert says in body["message"], body
    if status == 422 and "No metrics" not in says:
        fields = [e["field"] for e in body["details"]["errors"]]
        assert fields and all(f == "body" or f.startswith("body.") for f in fields)
    _nothing_logged(api, run_id)


def test_every_error_of_a_body_is_listed(api: httpx.Client) -> None:
    run_id = _run(api)
    points = [{"key": "a", "value": "x"}, {"key": "ok", "value": 1}, {"key": "", "value": 1}]
    body = _error(
        api.post(f"/runs/{run_id}/metrics", json={"points": points}), 422, "VALIDATION_ERROR"
    )
    fields = {e["field"] for e in body["details"]["errors"]}
    assert fields == {"body.points.0.value", "body.points.2.key"}
    _nothing_logged(api, run_id)


def test_unauthenticated_is_401_before_the_body_is_read(
    api: httpx.Client, anon: httpx.Client
) -> None:
    run_id = _run(api)
    for content in (b'{"metrics": ', b'{"metrics": {"a": "x"}}', b'{"metrics": {"a": 1}}'):
        r = anon.post(f"/runs/{run_id}/metrics", content=content, headers=JSON)
        _error(r, 401, "UNAUTHENTICATED")
    _nothing_logged(api, run_id)


def test_request_body_is_documented(api: httpx.Client) -> None:
    """The route parses its body itself; OpenAPI still describes it (self-contained: no
    dangling $defs references)."""
    op = api.get("/openapi.json").json()["paths"]["/api/v1/runs/{run_id}/metrics"]["post"]
    body = op["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"metrics", "step", "timestamp", "points"}
    point = schema["properties"]["points"]["anyOf"][0]["items"]
    assert point["required"] == ["key", "value"]
    assert set(point["properties"]) == {"key", "value", "step", "timestamp"}
    assert "$defs" not in str(schema)
    assert "422" in op["responses"]


def test_unknown_run_is_404_and_finished_run_409(api: httpx.Client) -> None:
    _error(api.post("/runs/run-nope/metrics", json={"metrics": {"a": 1}}), 404, "NOT_FOUND")
    run_id = _run(api)
    api.patch(f"/runs/{run_id}", json={"status": "KILLED"})
    r = api.post(f"/runs/{run_id}/metrics", json={"points": [{"key": "a", "value": 1}]})
    _error(r, 409, "CONFLICT")
    _nothing_logged(api, run_id)


# ------------------------------------------------------------- the repository's fast insert


def test_insert_is_in_the_session_transaction(api: httpx.Client, db: Database) -> None:
    """The driver-level insert (COPY on PostgreSQL) rides the session's transaction: a
    failure later in the request leaves no points behind."""
    run_id = _run(api)
    now = datetime.now(UTC)
    with pytest.raises(RuntimeError), db.session() as s:
        repo.insert_metrics(s, [(run_id, "a", 1.0, i, now) for i in range(50)])
        repo.upsert_latest(s, [(run_id, "a", 1.0, 49, now, 1.0, 1.0)])
        assert s.scalar(select(Metric.id).where(Metric.run_id == run_id).limit(1)) is not None
        raise RuntimeError("later step of the request failed")
    with db.session(readonly=True) as s:
        assert s.scalars(select(Metric).where(Metric.run_id == run_id)).all() == []
        assert s.scalars(select(LatestMetric).where(LatestMetric.run_id == run_id)).all() == []


def test_insert_for_unknown_run_raises_sqlalchemy_error(db: Database) -> None:
    """Driver errors surface as SQLAlchemy's exception classes (COPY bypasses SQLAlchemy, so
    the repository wraps them), which the request's error handling understands."""
    with pytest.raises(IntegrityError), db.session() as s:
        repo.insert_metrics(s, [("run-missing", "a", 1.0, 0, datetime.now(UTC))])


@pytest.mark.postgres_only
def test_copy_refused_value_is_422(api: httpx.Client, db: Database) -> None:
    """A value PostgreSQL refuses inside COPY becomes the same 422 as in an INSERT."""
    assert current_db_kind() == "postgresql"
    run_id = _run(api)
    with pytest.raises(ValidationFailed) as err, db.session() as s:
        repo.insert_metrics(s, [(run_id, "nul\x00key", 1.0, 0, datetime.now(UTC))])
    assert "database refused" in err.value.message
    with db.session(readonly=True) as s:
        assert s.scalars(select(Metric).where(Metric.run_id == run_id)).all() == []


def test_many_points_one_request(api: httpx.Client) -> None:
    run_id = _run(api)
    points = [
        {"key": f"metric_{k:02d}", "value": (s * 31 + k) % 1000 / 1000.0, "step": s}
        for s in range(250)
        for k in range(20)
    ]
    r = api.post(f"/runs/{run_id}/metrics", json={"points": points})
    assert r.json() == {"logged": 5000}
    hist = _history(api, run_id, "metric_07")
    assert [p["step"] for p in hist] == list(range(250))
    assert [p["value"] for p in hist] == [(s * 31 + 7) % 1000 / 1000.0 for s in range(250)]
    latest = api.get(f"/runs/{run_id}").json()["metrics"]
    assert latest == {f"metric_{k:02d}": (249 * 31 + k) % 1000 / 1000.0 for k in range(20)}

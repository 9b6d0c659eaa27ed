"""Large stores (issue 19, item 5): do the hot queries stay flat as the store grows?

    python -m benchmarks.run large_stores
    python -m benchmarks.run large_stores --quick       # 1/10 of the big sizes
    PODSTACK_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench \
        python -m benchmarks.run large_stores            # an empty PostgreSQL database

Each workload runs twice, on a *big* store and on one 1/100 of its size, with the same query,
and reports the p50 of each and their ratio (goal: big ≤ 2× small):

- ``metric_history``: one key's full history (10,000 steps) from a run holding 100 keys ×
  10,000 steps = 1,000,000 points, beside the same history in a run holding that one key
  only. The million points are logged through the API (batches of 10,000), so the logging
  rate is reported too.
- ``search_runs``: ``metrics.acc > 0.5`` ordered by ``metrics.acc`` descending, first page of
  100, in an experiment of 100,000 runs (each with a latest ``acc`` and a ``lr`` param)
  beside one of 1,000.
- ``runs_table_page`` / ``model_list_page``: server time of the experiment's runs table at
  100,000 runs, and of the model list at 100,000 registered models, beside 1,000.

Requests go in-process through the whole ASGI app (middleware, auth, validation,
serialisation, templates), so the times are the server's: no network, no client. Bulk rows
(runs, models) are inserted with SQL, since what is measured is reading them; the metric
points go through the API because logging them is part of the workload.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

TOKEN = "pst_bench-large-stores-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _p50(fn: Any, reps: int) -> float:
    fn()  # warm
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def _ok(r: Any) -> Any:
    if r.status_code >= 300:
        raise RuntimeError(f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:300]}")
    return r


def _app(tmp: Path, name: str) -> Any:
    from podstack.server.app import create_app
    from podstack.server.config import Settings

    # SQLite: a database per size in its own home. PostgreSQL: one database for both; the
    # small store is measured first, before the big rows exist.
    url = os.environ.get("PODSTACK_BENCH_DATABASE_URL", "")
    settings = Settings(
        home=tmp / name,
        database_url=url,
        admin_token=TOKEN,
        background_workers=False,
        session_secret="bench",
    )
    return create_app(settings)


def _client(app: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    return TestClient(app, base_url="http://bench")


# ---------------------------------------------------------------- metric history


def _log_points(c: Any, run_id: str, keys: int, steps: int, batch: int = 10_000) -> float:
    """Logs keys × steps points through the API; returns points per second."""
    points = [(f"m{k:03d}", s) for s in range(steps) for k in range(keys)]
    t0 = time.perf_counter()
    for lo in range(0, len(points), batch):
        body = {
            "points": [
                {"key": k, "value": (s % 97) / 97.0, "step": s, "timestamp": 1_700_000_000_000 + s}
                for k, s in points[lo : lo + batch]
            ]
        }
        _ok(c.post(f"/api/v1/runs/{run_id}/metrics", json=body, headers=HEADERS))
    return len(points) / (time.perf_counter() - t0)


def _metric_history(c: Any, keys: int, steps: int, reps: int) -> dict[str, Any]:
    run = _ok(
        c.post("/api/v1/runs", json={"experiment_id": f"hist-{keys}"}, headers=HEADERS)
    ).json()
    rate = _log_points(c, run["id"], keys, steps)
    url = f"/api/v1/runs/{run['id']}/metrics/m000/history?limit=100000"
    n = len(_ok(c.get(url, headers=HEADERS)).json()["items"])
    if n != steps:
        raise RuntimeError(f"history has {n} points, expected {steps}")
    return {
        "points": keys * steps,
        "log_points_per_s": round(rate),
        "history_p50_ms": _p50(lambda: _ok(c.get(url, headers=HEADERS)), reps),
    }


# ---------------------------------------------------------------- bulk runs and models


def _acc(i: int) -> float:
    return (i * 7919 % 1000) / 1000.0


def _bulk_runs(app: Any, experiment: str, n: int) -> str:
    from sqlalchemy import insert

    from podstack.schemas import tracking as tsch
    from podstack.server.db.base import utcnow
    from podstack.server.tracking import service as tracking
    from podstack.server.tracking.models import LatestMetric, Param, Run

    db = app.state.db
    with db.session() as s:
        exp = tracking.create_experiment(s, "bench", tsch.ExperimentCreate(name=experiment))
        exp_id = exp.id
    base = utcnow()
    chunk = 5_000
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        ids = [f"run-{experiment[:6]}{i:010d}" for i in range(lo, hi)]
        with db.session() as s:
            s.execute(
                insert(Run),
                [
                    {
                        "id": rid,
                        "experiment_id": exp_id,
                        "name": f"trial-{lo + j}",
                        "status": "FINISHED",
                        "start_time": base + timedelta(seconds=lo + j),
                        "end_time": base + timedelta(seconds=lo + j + 60),
                        "user": "bench",
                        "updated_at": base,
                    }
                    for j, rid in enumerate(ids)
                ],
            )
            s.execute(
                insert(LatestMetric),
                [
                    {
                        "run_id": rid,
                        "key": "acc",
                        "value": ((lo + j) * 7919 % 1000) / 1000.0,
                        "step": 10,
                        "timestamp": base,
                    }
                    for j, rid in enumerate(ids)
                ],
            )
            s.execute(
                insert(Param),
                [
                    {"run_id": rid, "key": "lr", "value": str(0.001 * (1 + (lo + j) % 10))}
                    for j, rid in enumerate(ids)
                ],
            )
    return exp_id


def _bulk_models(app: Any, prefix: str, n: int) -> None:
    from sqlalchemy import insert

    from podstack.server.db.base import utcnow
    from podstack.server.registry.models import RegisteredModel

    base = utcnow()
    chunk = 5_000
    for lo in range(0, n, chunk):
        with app.state.db.session() as s:
            s.execute(
                insert(RegisteredModel),
                [
                    {
                        "name": f"{prefix}-{i:06d}",
                        "description": f"model {i}",
                        "created_by": "bench",
                        "created_at": base + timedelta(microseconds=i),
                        "updated_at": base + timedelta(microseconds=i),
                        "next_version": 1,
                    }
                    for i in range(lo, min(n, lo + chunk))
                ],
            )


def _signed_in(c: Any) -> None:
    import re

    login = c.get("/login")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
    _ok(c.post("/login", data={"password": TOKEN, "csrf_token": csrf}))


def _store_workloads(c: Any, app: Any, runs: int, models: int, reps: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    exp_id = _bulk_runs(app, f"exp{runs}", runs)
    _bulk_models(app, f"m{models}", models)
    fill_s = time.perf_counter() - t0
    search = {
        "experiment_ids": [exp_id],
        "filter": "metrics.acc > 0.5",
        "order_by": {"kind": "metric", "key": "acc", "desc": True},
        "limit": 100,
    }
    page = _ok(c.post("/api/v1/runs/search", json=search, headers=HEADERS)).json()
    # The answer is checked, not only timed: the best runs first, all above the threshold.
    accs = sorted((_acc(i) for i in range(runs)), reverse=True)
    want = [a for a in accs if a > 0.5][:100]
    got = [r["metrics"]["acc"] for r in page["items"]]
    if got != want:
        raise RuntimeError(f"search_runs answered wrongly: {got[:5]} != {want[:5]}")
    _signed_in(c)
    return {
        "runs": runs,
        "models": models,
        "fill_s": round(fill_s, 1),
        "search_runs_p50_ms": _p50(
            lambda: _ok(c.post("/api/v1/runs/search", json=search, headers=HEADERS)), reps
        ),
        "runs_table_page_p50_ms": _p50(lambda: _ok(c.get(f"/experiments/{exp_id}")), reps),
        "model_list_page_p50_ms": _p50(lambda: _ok(c.get("/models")), reps),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False)) or os.environ.get("BENCH_QUICK") == "1"
    scale = 10 if quick else 1
    steps = 10_000 // scale
    big_runs = 100_000 // scale
    reps = 10 if quick else 30
    out: dict[str, Any] = {"quick": quick}
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="podstack-bench-large-") as tmp:
        for label, keys, runs in (("small", 1, big_runs // 100), ("big", 100, big_runs)):
            app = _app(Path(tmp), label)
            t0 = time.perf_counter()
            with _client(app) as c:
                hist = _metric_history(c, keys, steps, reps)
                store = _store_workloads(c, app, runs, runs, reps)
            timings[f"{label} store"] = round(time.perf_counter() - t0, 1)
            out[label] = {**hist, **store}
    ratios = {
        k: round(out["big"][k] / out["small"][k], 2)
        for k in (
            "history_p50_ms",
            "search_runs_p50_ms",
            "runs_table_page_p50_ms",
            "model_list_page_p50_ms",
        )
    }
    out["big_over_small"] = ratios
    out["within_2x"] = {k: v <= 2.0 for k, v in ratios.items()}
    out["database"] = (
        "postgresql"
        if os.environ.get("PODSTACK_BENCH_DATABASE_URL", "").startswith("postgres")
        else "sqlite"
    )
    out["timings"] = timings
    if not quick:
        _record(out)
    return out


def _record(out: dict[str, Any]) -> None:
    """The figures into RESULTS.md (issue 19's goal: 100x the data, at most 2x the time)."""
    from benchmarks.sections import record

    keys = list(out["big_over_small"])
    lines = [
        f"The same requests against a store and against one 100x larger ({out['database']}, "
        f"in-process, p50 of repeated requests; "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, load average "
        f"{os.getloadavg()[0]:.2f} at the end, 2 cores).",
        "",
        "| request | small p50 ms | 100x p50 ms | ratio | within 2x |",
        "|---|---|---|---|---|",
    ]
    for k in keys:
        lines.append(
            f"| {k.removesuffix('_p50_ms')} | {out['small'][k]} | {out['big'][k]} | "
            f"{out['big_over_small'][k]} | {'yes' if out['within_2x'][k] else 'NO'} |"
        )
    record("large-stores", "Stores 100x larger (`benchmarks/large_stores.py`)", lines)

"""Server time of the main UI pages with 10,000 registered models and, for the runs table and
run comparison (issue 20), an experiment with 10,000 runs.

    python -m benchmarks.run ui_pages
    python -m benchmarks.run ui_pages --quick          # 2,000 models
    PODSTACK_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench \
        python -m benchmarks.run ui_pages               # an empty PostgreSQL database

The store holds 10,000 models with labels, 2% of them with versions in every stage, and one
model with 60 versions from runs with metric curves. The plain models (name, description,
labels: the rows ``register_model`` writes, without its audit rows and events, which no measured
page reads) are bulk-inserted; everything with versions, runs, metrics and stage history goes
through the registry and tracking services. Registering 10,000 models one service call at a
time took most of this benchmark's time and measured nothing it reports. Pages are then
requested in-process through the whole ASGI app (middleware, session, CSRF, templates), signed
in as a user would be, so the time measured is the server's: no network, no browser.
Reported per page: median, p95 and max over the repetitions.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

TOKEN = "pst_bench-ui-pages-0123456789abcdef"
LABELS = ("nlp", "vision", "tabular", "speech", "recsys", "fraud", "churn", "ranking")
STAGES = ("None", "Staging", "Production", "Archived")
BIG = "big-model"


def _fill(db: Any, store: Any, n_models: int, n_versions: int) -> dict[str, Any]:
    from podstack.schemas import tracking as tsch
    from podstack.server.artifacts import service as artifacts
    from podstack.server.registry import service as registry
    from podstack.server.tracking import service as tracking

    actor = "bench"
    t0 = time.perf_counter()
    with db.session() as s:
        run = tracking.create_run(s, actor, tsch.RunCreate(experiment_id="bench-exp"))
        blob = store.put_iter([b"weights" * 1000])
        artifacts.record_upload(s, actor, run.id, "model.pt", blob)
        tracking.log_params(s, actor, run.id, {"lr": "0.001", "epochs": "10"})
        tracking.log_metrics(
            s,
            actor,
            run.id,
            tsch.LogMetrics(
                # Plain dicts: valid for ``points`` whether it is typed as a model or a
                # TypedDict (the schema moved to the latter for speed).
                points=[
                    {"key": k, "value": v, "step": i}
                    for i in range(200)
                    for k, v in (("accuracy", 0.5 + i / 450), ("loss", 1 / (i + 1)))
                ]
            ),
        )
        source = run.id
    _bulk_models(db, actor, n_models)
    with db.session() as s:
        for i in range(0, n_models, 50):  # 2% of models have versions, in every stage
            name = f"model-{i:05d}"
            for k in range(4):
                registry.add_version(s, actor, name, source, "model.pt")
                if STAGES[k] != "None":
                    registry.transition_stage(s, actor, name, k + 1, STAGES[k])
    models_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    with db.session() as s:
        registry.register_model(s, actor, BIG, "The model the model/version pages load", ["nlp"])
        for v in range(1, n_versions + 1):
            run = tracking.create_run(s, actor, tsch.RunCreate(experiment_id="bench-exp"))
            artifacts.record_upload(s, actor, run.id, "model.pt", blob)
            tracking.log_params(s, actor, run.id, {"lr": str(0.001 * v), "epochs": "10"})
            tracking.log_metrics(
                s,
                actor,
                run.id,
                tsch.LogMetrics(
                    points=[
                        {"key": k, "value": val, "step": i}
                        for i in range(100)
                        for k, val in (
                            ("accuracy", 0.5 + i / 250 + v / 1000),
                            ("loss", 1 / (i + v)),
                        )
                    ]
                ),
            )
            tracking.update_run(s, actor, run.id, tsch.RunUpdate(status=tsch.RunStatus.FINISHED))
            registry.add_version(s, actor, BIG, run.id, "model.pt", description=f"v{v}")
        registry.transition_stage(s, actor, BIG, n_versions - 1, "Production")
        registry.transition_stage(s, actor, BIG, n_versions, "Staging")
    return {
        "fill_models_s": round(models_s, 1),
        "fill_big_model_s": round(time.perf_counter() - t1, 1),
    }


def _description(i: int) -> str:
    return f"Benchmark model {i} for the {LABELS[i % len(LABELS)]} team"


def _bulk_models(db: Any, actor: str, n_models: int, chunk: int = 5000) -> None:
    """Models ``model-00000``.. with a description and two labels each: the same rows
    ``registry.register_model`` would write (labels validated and de-duplicated by the same
    rule), inserted a chunk at a time."""
    from datetime import timedelta

    from sqlalchemy import insert, select

    from podstack.server.db.base import utcnow
    from podstack.server.registry.models import ModelLabel, RegisteredModel
    from podstack.server.registry.rules import validate_labels

    base = utcnow()
    for lo in range(0, n_models, chunk):
        hi = min(n_models, lo + chunk)
        with db.session() as s:
            s.execute(
                insert(RegisteredModel),
                [
                    {
                        "name": f"model-{i:05d}",
                        "description": _description(i),
                        "created_by": actor,
                        # Registered one after the other, as the service calls did.
                        "created_at": base + timedelta(microseconds=i),
                        "updated_at": base + timedelta(microseconds=i),
                        "next_version": 1,
                    }
                    for i in range(lo, hi)
                ],
            )
            ids = s.execute(
                select(RegisteredModel.id, RegisteredModel.name).where(
                    RegisteredModel.name.between(f"model-{lo:05d}", f"model-{hi - 1:05d}")
                )
            ).all()
            rows = []
            for mid, name in ids:
                i = int(name.rsplit("-", 1)[1])
                labels = [LABELS[i % len(LABELS)], LABELS[(i // 8) % len(LABELS)]]
                rows += [
                    {"model_id": mid, "model_name": name, "label": lb}
                    for lb in validate_labels(labels)
                ]
            s.execute(insert(ModelLabel), rows)


RUNS_EXP = "bench-runs"
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


def _bulk_runs(db: Any, n_runs: int, points: int = 10, chunk: int = 2000) -> list[str]:
    """Issue 20: one experiment with ``n_runs`` finished runs, each with three params, two
    tags, two metrics of ``points`` steps and their latest values and extremes: the rows the
    tracking service writes (without audit rows, which no measured page reads), bulk-inserted."""
    import random
    from datetime import timedelta

    from sqlalchemy import insert

    from podstack.schemas import tracking as tsch
    from podstack.server.db.base import utcnow
    from podstack.server.tracking import service as tracking
    from podstack.server.tracking.models import LatestMetric, Metric, Param, Run, RunTag

    rng = random.Random(20)
    with db.session() as s:
        exp_id = tracking.create_experiment(s, "bench", tsch.ExperimentCreate(name=RUNS_EXP)).id
    base = utcnow() - timedelta(days=30)
    ids = [f"run-{i:032x}" for i in range(1, n_runs + 1)]
    for lo in range(0, n_runs, chunk):
        runs, params, tags, latest, history = [], [], [], [], []
        for i in range(lo, min(n_runs, lo + chunk)):
            rid, start = ids[i], base + timedelta(seconds=60 * i)
            runs.append(
                {
                    "id": rid,
                    "experiment_id": exp_id,
                    "name": f"trial-{i:05d}",
                    "status": "FINISHED",
                    "start_time": start,
                    "end_time": start + timedelta(minutes=30),
                    "user": "bench",
                    "updated_at": start,
                }
            )
            lr = 10 ** rng.uniform(-5, -1)
            params += [
                {"run_id": rid, "key": "lr", "value": f"{lr:.6f}"},
                {"run_id": rid, "key": "optimizer", "value": OPTIMIZERS[i % 4]},
                {"run_id": rid, "key": "batch_size", "value": str(2 ** (4 + i % 4))},
            ]
            tags += [
                {"run_id": rid, "key": "team", "value": ("nlp", "vision", "growth")[i % 3]},
                {"run_id": rid, "key": "seed", "value": str(i % 10)},
            ]
            final = rng.uniform(0.5, 0.99)
            for step in range(points):
                ts = start + timedelta(minutes=step)
                acc, loss = final * (step + 1) / points, 1.0 / (step + 1)
                history += [
                    {"run_id": rid, "key": "accuracy", "value": acc, "step": step, "timestamp": ts},
                    {"run_id": rid, "key": "loss", "value": loss, "step": step, "timestamp": ts},
                ]
            ts = start + timedelta(minutes=points - 1)
            latest += [
                {
                    "run_id": rid,
                    "key": "accuracy",
                    "value": final,
                    "step": points - 1,
                    "timestamp": ts,
                    "min_value": final / points,
                    "max_value": final,
                },
                {
                    "run_id": rid,
                    "key": "loss",
                    "value": 1.0 / points,
                    "step": points - 1,
                    "timestamp": ts,
                    "min_value": 1.0 / points,
                    "max_value": 1.0,
                },
            ]
        with db.session() as s:
            for model, rows in (
                (Run, runs),
                (Param, params),
                (RunTag, tags),
                (LatestMetric, latest),
                (Metric, history),
            ):
                s.execute(insert(model), rows)
    return ids


def _measure(client: Any, path: str, reps: int) -> dict[str, float]:
    client.get(path)  # warm: template compilation, connection pool
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:300]}")
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
        "max_ms": round(times[-1], 1),
        "bytes": len(r.content),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    import re

    from podstack.server.app import create_app
    from podstack.server.config import Settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's TestClient warns about its httpx backend
        from starlette.testclient import TestClient

    quick = bool(getattr(args, "quick", False)) or os.environ.get("BENCH_QUICK") == "1"
    n_models = 2_000 if quick else 10_000
    n_versions = 20 if quick else 60
    reps = 10 if quick else 30
    n_runs = 2_000 if quick else 10_000
    with tempfile.TemporaryDirectory(prefix="podstack-bench-ui-") as tmp:
        settings = Settings(
            home=Path(tmp),
            database_url=os.environ.get("PODSTACK_BENCH_DATABASE_URL", ""),
            admin_token=TOKEN,
            background_workers=False,
            session_secret="bench",
        )
        app = create_app(settings)
        with TestClient(app, base_url="http://bench") as client:
            fill = _fill(app.state.db, app.state.store, n_models, n_versions)
            t_runs = time.perf_counter()
            run_ids = _bulk_runs(app.state.db, n_runs)
            fill["fill_runs_s"] = round(time.perf_counter() - t_runs, 1)
            login = client.get("/login")
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
            client.post("/login", data={"password": TOKEN, "csrf_token": csrf})
            mid = n_versions // 2
            pages = {
                "model_list": "/models",
                "model_list_page_100": None,
                "model_list_search": "/models?q=model+0999",
                "model_list_stage_filter": "/models?stage=Production",
                "model_list_label_filter": "/models?label=vision&label=speech",
                "model_page": f"/models/{BIG}",
                "version_overview": f"/models/{BIG}/versions/{mid}",
                "version_artifacts": f"/models/{BIG}/versions/{mid}?tab=artifacts",
                "version_metrics": f"/models/{BIG}/versions/{mid}?tab=metrics",
                "version_lineage": f"/models/{BIG}/versions/{mid}?tab=lineage",
                "compare_3_versions": f"/models/{BIG}/compare?v=1&v={mid}&v={n_versions}",
            }
            # A deep page: follow "next" links (keyset pagination stays flat).
            path = "/models"
            for _ in range(min(100, n_models // 50 - 1)):
                html = client.get(path).text
                nxt = re.search(r'href="(/models\?page_token=[^"]+)" rel="next"', html)
                if nxt is None:
                    break
                path = nxt.group(1).replace("&amp;", "&")
            pages["model_list_page_100"] = path
            # Issue 20: the runs table of an experiment with n_runs runs, and run comparison.
            runs_url = f"/experiments/{RUNS_EXP}"
            pages.update(
                {
                    "runs_table": runs_url,
                    "runs_table_page_20": None,
                    "runs_table_filter": runs_url
                    + "?filter=metrics.accuracy+%3E%3D+0.9+and+params.optimizer+%3D+%27adam%27",
                    "runs_table_sort_metric": runs_url + "?sort=metric%3Aaccuracy&dir=desc",
                    "runs_table_sort_metric_max": runs_url + "?sort=metric_max%3Aloss&dir=asc",
                    "runs_table_sort_tag": runs_url + "?sort=tag%3Ateam&dir=asc",
                    "runs_group_by_param": runs_url + "?group=param%3Aoptimizer",
                    "runs_group_by_tag_filtered": runs_url
                    + "?group=tag%3Ateam&filter=metrics.accuracy+%3E%3D+0.8",
                    "compare_5_runs": "/runs/compare?runs=" + ",".join(run_ids[:: n_runs // 5]),
                    "compare_20_runs": "/runs/compare?runs=" + ",".join(run_ids[:: n_runs // 20]),
                }
            )
            path = runs_url
            for _ in range(20):
                html = client.get(path).text
                nxt = re.search(r'href="(/experiments/[^"]+page_token=[^"]+)" rel="next"', html)
                if nxt is None:
                    break
                path = nxt.group(1).replace("&amp;", "&")
            pages["runs_table_page_20"] = path
            t_pages = time.perf_counter()
            results = {name: _measure(client, p, reps) for name, p in pages.items() if p}
            pages_s = time.perf_counter() - t_pages
    out = {
        "models": n_models,
        "runs": n_runs,
        "big_model_versions": n_versions,
        "repetitions": reps,
        "database": "postgresql" if settings.database_url.startswith("postgresql") else "sqlite",
        "python": platform.python_version(),
        **fill,
        "pages": results,
        # benchmarks/run.py prints these under this benchmark
        "timings": {
            f"fill ({n_models:,} models)": fill["fill_models_s"] + fill["fill_big_model_s"],
            f"fill ({n_runs:,} runs)": fill["fill_runs_s"],
            f"pages ({reps} requests each)": round(pages_s, 1),
        },
    }
    if not quick:
        _record(out)
    return out


def _record(out: dict[str, Any]) -> None:
    """The figures into RESULTS.md (issue 20's target: each runs-table and compare page under
    100 ms at 10,000 runs, server side, in-process)."""
    from benchmarks.sections import record

    lines = [
        f"{out['models']:,} models ({out['big_model_versions']} versions on one), "
        f"{out['runs']:,} runs in one experiment; {out['database']}; {out['repetitions']} "
        f"requests per page through the app in-process (no socket), signed in; "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, load average "
        f"{os.getloadavg()[0]:.2f} at the end (2 cores).",
        "",
        "| page | median ms | p95 ms | max ms | KiB |",
        "|---|---|---|---|---|",
    ]
    for name, r in out["pages"].items():
        lines.append(
            f"| {name} | {r['median_ms']} | {r['p95_ms']} | {r['max_ms']} | "
            f"{r['bytes'] / 1024:.0f} |"
        )
    title = "UI pages at 10,000 models and 10,000 runs (`benchmarks/ui_pages.py`)"
    record("ui-pages", title, lines)

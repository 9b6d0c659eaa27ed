"""Registry search latency over 10,000 registered models, on SQLite and PostgreSQL.

Models (with labels, 1-3 versions each and versions in every stage) are bulk-inserted straight
through the database layer — registering 10,000 models one request at a time would measure
registration, not search. Then a real ``podstack server`` process answers searches over HTTP
and we report client-side p50/p95 per query kind:

- ``name_text``: free text matching a handful of names (``q=model-0042``);
- ``description_text``: a word from descriptions that matches ~1/8 of all models;
- ``label``: one label held by 1/40 of the models;
- ``labels_all``: two labels that must both match (~1/120 of the models);
- ``stage``: models with a version in Production (~1/10);
- ``label_and_stage``: a label and a stage together;
- ``sort_updated``: the first page ordered by last update.

Every search returns one page (limit 100) with each model's latest and Production version.
The same searches are also timed in-process through the service layer (database query and
page building, no HTTP/auth/JSON) to show where the time goes.

    python -m benchmarks.run registry_search            # 10,000 models
    python -m benchmarks.run registry_search --quick    # 2,000 models, fewer searches

PostgreSQL is the local server at 127.0.0.1:5432 (``PODSTACK_BENCH_PG_URL`` to change); it is
skipped with a note if unreachable.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TOKEN = "pst_bench-registry-0123456789abcdef"
PG_ADMIN_URL = os.environ.get(
    "PODSTACK_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TEAMS = 40
DOMAINS = ("nlp", "vision", "speech", "tabular", "recsys", "forecast", "search", "fraud")
STAGES = ("None", "Staging", "Production", "Archived")
CHUNK = 2000


# ---------------------------------------------------------------- data


def _name(i: int) -> str:
    return f"model-{i:05d}"


def seed(db_url: str, n_models: int, rnd: random.Random) -> dict[str, Any]:
    """Bulk-inserts ``n_models`` models with labels and versions; returns counts and time."""
    from sqlalchemy import insert, select, text

    from podstack.server.db import migrate
    from podstack.server.db.session import Database
    from podstack.server.registry.models import ModelLabel, ModelVersion, RegisteredModel
    from podstack.server.tracking.models import Experiment, Run

    t0 = time.perf_counter()
    db = Database(db_url, pool_size=1)
    migrate.upgrade(db.engine)
    base = datetime.now(UTC) - timedelta(days=30)
    counts = {"models": 0, "labels": 0, "versions": 0, "production_models": 0}
    try:
        with db.session() as s:
            s.execute(
                insert(Experiment),
                [
                    {
                        "id": "exp-bench",
                        "name": "bench",
                        "tags": {},
                        "archived": False,
                        "created_at": base,
                        "updated_at": base,
                    }
                ],
            )
            s.execute(
                insert(Run),
                [
                    {
                        "id": "run-bench",
                        "experiment_id": "exp-bench",
                        "status": "FINISHED",
                        "start_time": base,
                        "updated_at": base,
                    }
                ],
            )
        for lo in range(0, n_models, CHUNK):
            hi = min(n_models, lo + CHUNK)
            with db.session() as s:
                plan = {}
                rows = []
                for i in range(lo, hi):
                    n_versions = 1 + i % 3
                    domain = DOMAINS[i % len(DOMAINS)]
                    when = base + timedelta(seconds=i)
                    rows.append(
                        {
                            "name": _name(i),
                            "description": f"{domain} model number {i} for team {i % TEAMS}",
                            "created_by": "bench",
                            "created_at": when,
                            "updated_at": when + timedelta(seconds=rnd.randrange(86400)),
                            "next_version": n_versions + 1,
                        }
                    )
                    plan[_name(i)] = (i, n_versions, domain)
                s.execute(insert(RegisteredModel), rows)
                ids = s.execute(
                    select(RegisteredModel.id, RegisteredModel.name).where(
                        RegisteredModel.name.between(_name(lo), _name(hi - 1))
                    )
                ).all()
                labels, versions = [], []
                for mid, name in ids:
                    i, n_versions, domain = plan[name]
                    labels += [
                        {"model_id": mid, "model_name": name, "label": f"team-{i % TEAMS:02d}"},
                        {"model_id": mid, "model_name": name, "label": domain},
                        {"model_id": mid, "model_name": name, "label": f"tier-{(i // TEAMS) % 3}"},
                    ]
                    prod = i % 10 == 0
                    counts["production_models"] += prod
                    for v in range(1, n_versions + 1):
                        if v == n_versions:
                            stage = "Production" if prod else rnd.choice(("None", "Staging"))
                        else:
                            stage = "Archived"
                        when = base + timedelta(seconds=i, milliseconds=v)
                        versions.append(
                            {
                                "model_id": mid,
                                "version": v,
                                "source_run_id": "run-bench",
                                "artifact_path": "model.pt",
                                "stage": stage,
                                "stage_updated_at": when,
                                "created_by": "bench",
                                "created_at": when,
                                "updated_at": when,
                            }
                        )
                s.execute(insert(ModelLabel), labels)
                s.execute(insert(ModelVersion), versions)
                counts["models"] += len(rows)
                counts["labels"] += len(labels)
                counts["versions"] += len(versions)
        # Fresh planner statistics, as autovacuum (PostgreSQL) or `PRAGMA optimize` would
        # have after organic growth.
        with db.engine.connect() as c:
            c.execute(text("ANALYZE"))
            c.commit()
    finally:
        db.dispose()
    counts["seconds"] = round(time.perf_counter() - t0, 2)
    return counts


# ---------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(home: Path, db_url: str) -> Iterator[str]:
    """A real ``podstack server`` process (one worker) on a free port."""
    port = _free_port()
    script = Path(sys.executable).with_name("podstack")
    if script.exists():
        cmd = [
            str(script),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    else:  # not installed as a script: same app through uvicorn
        cmd = [
            sys.executable,
            "-c",
            "import uvicorn; from podstack.server.app import create_app; "
            f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')",
        ]
    env = {
        **os.environ,
        "PODSTACK_HOME": str(home),
        "PODSTACK_DATABASE_URL": db_url,
        "PODSTACK_ADMIN_TOKEN": TOKEN,
        "PODSTACK_BACKGROUND_WORKERS": "false",
        # One worker process: the figures are about one server process.
        "PODSTACK_WORKERS": "1",
    }
    env.pop("PODSTACK_URL", None)
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# ---------------------------------------------------------------- measuring


def _queries(n_models: int, rnd: random.Random, n: int) -> dict[str, list[dict[str, Any]]]:
    def some(fn: Any) -> list[dict[str, Any]]:
        return [fn() for _ in range(n)]

    return {
        # "model-0042" matches model-00420..00429 (and model-00042): a handful of names.
        "name_text": some(lambda: {"q": _name(rnd.randrange(n_models))[:-1]}),
        "description_text": some(lambda: {"q": rnd.choice(DOMAINS)}),
        "label": some(lambda: {"label": f"team-{rnd.randrange(TEAMS):02d}"}),
        "labels_all": some(
            lambda: {"label": [f"team-{rnd.randrange(TEAMS):02d}", f"tier-{rnd.randrange(3)}"]}
        ),
        "stage": some(lambda: {"stage": rnd.choice(("Production", "production", "Staging"))}),
        "label_and_stage": some(
            lambda: {"label": f"team-{rnd.randrange(TEAMS):02d}", "stage": "Production"}
        ),
        "sort_updated": some(lambda: {"order_by": "updated"}),
    }


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def measure(url: str, queries: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(
        base_url=url + "/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    ) as c:
        for _ in range(10):  # warm-up: connections, caches, the planner
            c.get("/registered-models", params={"limit": 100}).raise_for_status()
        for kind, params_list in queries.items():
            lat, hits = [], []
            for params in params_list:
                t = time.perf_counter()
                r = c.get("/registered-models", params={**params, "limit": 100})
                lat.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
                hits.append(len(r.json()["items"]))
            out[kind] = {
                "p50_ms": round(_pct(lat, 50), 2),
                "p95_ms": round(_pct(lat, 95), 2),
                "mean_ms": round(statistics.fmean(lat), 2),
                "searches": len(lat),
                "mean_hits": round(statistics.fmean(hits), 1),
            }
    return out


def measure_in_process(db_url: str, queries: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The same searches through the service layer directly (query + building the page),
    without HTTP, auth and JSON: how much of the latency is the database work."""
    from podstack.server.db.session import Database
    from podstack.server.registry import service, views

    db = Database(db_url, pool_size=1)
    out: dict[str, Any] = {}
    try:
        for kind, params_list in queries.items():
            lat = []
            for params in params_list:
                label = params.get("label")
                kw = {
                    "q": params.get("q"),
                    "stage": params.get("stage"),
                    "labels": [label] if isinstance(label, str) else list(label or []),
                    "order_by": params.get("order_by", "name"),
                    "limit": 100,
                }
                t = time.perf_counter()
                with db.session(readonly=True) as s:
                    items, _ = service.search_models(s, **kw)
                    views.model_views(s, items)
                lat.append((time.perf_counter() - t) * 1000)
            out[kind] = {"p50_ms": round(_pct(lat, 50), 2), "p95_ms": round(_pct(lat, 95), 2)}
    finally:
        db.dispose()
    return out


@contextmanager
def _database(kind: str, workdir: Path) -> Iterator[str | None]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text

    name = f"bench_registry_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL unavailable at {PG_ADMIN_URL}: {exc}", file=sys.stderr)
        admin.dispose()
        yield None
        return
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as c:
            c.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=:n"),
                {"n": name},
            )
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def main(args: Any = None) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False)) or os.environ.get("BENCH_QUICK") == "1"
    n_models = int(os.environ.get("PODSTACK_BENCH_MODELS", 2000 if quick else 10_000))
    n_searches = 30 if quick else 100
    summary: dict[str, Any] = {
        "models": n_models,
        "searches_per_kind": n_searches,
        "page_size": 100,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_start": os.getloadavg(),
        },
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    timings: dict[str, float] = {}
    summary["timings"] = timings  # benchmarks/run.py prints these under this benchmark
    for kind in ("sqlite", "postgresql"):
        workdir = Path(tempfile.mkdtemp(prefix=f"podstack-bench-registry-{kind}-"))
        try:
            with _database(kind, workdir) as url:
                if url is None:
                    summary[kind] = {"skipped": "PostgreSQL unavailable"}
                    continue
                rnd = random.Random(42)
                t0 = time.perf_counter()
                seeded = seed(url, n_models, rnd)
                print(f"{kind}: seeded {seeded}", file=sys.stderr, flush=True)
                queries = _queries(n_models, random.Random(7), n_searches)
                with server(workdir, url) as base:
                    results = measure(base, queries)
                direct = measure_in_process(url, queries)
                summary[kind] = {"seeded": seeded, "search": results, "in_process": direct}
                timings[f"{kind} ({n_models:,} models)"] = round(time.perf_counter() - t0, 1)
                for q, r in results.items():
                    print(
                        f"{kind:10s} {q:18s} HTTP p50 {r['p50_ms']:7.2f} ms  p95 "
                        f"{r['p95_ms']:7.2f} ms | service p50 {direct[q]['p50_ms']:6.2f} ms"
                        f"  ({r['mean_hits']} hits/page)",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    summary["machine"]["load_average_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for target in (
        RESULTS / f"registry_search-{stamp}.json",
        RESULTS / "registry_search-latest.json",
    ):
        target.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

"""A bounded mixed workload against a real ``podstack server`` process on loopback: many
concurrent clients (threads, one httpx client each) for a fixed time doing reads, searches,
metric logging, version creation and artifact transfers.

Asserted: zero failed requests (every answer is the expected 2xx), and server memory flat once
warmed up (RSS over the measured window grows less than a small threshold). Recorded: request
and client counts, p50/p99 latency (overall and per operation) and RSS over time, written to
``test-artifacts/reliability/load-<db>-<profile>.json`` for RELIABILITY.md.

``make test`` runs the short profile; ``make reliability`` the long one.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from podstack import MLOpsClient
from tests.conftest import ADMIN_TOKEN, current_db_kind
from tests.reliability.conftest import PROFILE, RESULTS_DIR
from tests.reliability.integrity import problems
from tests.reliability.servers import ServerProcess, ServerSpec


@dataclass(frozen=True)
class Profile:
    clients: int
    warmup_seconds: float
    measure_seconds: float
    # Allowed RSS growth over the measured window (after warm-up).
    rss_growth_limit_bytes: int


PROFILES = {
    "short": Profile(
        clients=8, warmup_seconds=4, measure_seconds=8, rss_growth_limit_bytes=24 << 20
    ),
    "long": Profile(
        clients=32, warmup_seconds=20, measure_seconds=90, rss_growth_limit_bytes=24 << 20
    ),
}
P = PROFILES[PROFILE]
pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

BLOB = os.urandom(1 << 20)  # the artifact every client downloads
UPLOAD = os.urandom(64 << 10)  # what clients upload


@dataclass
class World:
    experiment_id: str
    run_ids: list[str]
    download_run: str


def _seed(server: ServerProcess, tmp_path: Path) -> World:
    with MLOpsClient(api_token=ADMIN_TOKEN, url=server.url) as c:
        runs = []
        for i in range(5):
            with c.start_run("load", run_name=f"seed-{i}") as run:
                run.log_params({"lr": str(0.1 * (i + 1)), "layers": str(i)})
                for step in range(20):
                    run.log_metrics({"loss": 1 / (step + 1 + i), "acc": 0.5 + i / 10}, step=step)
            runs.append(run.id)
        blob = tmp_path / "weights.bin"
        blob.write_bytes(BLOB)
        holder = c.create_run("load", run_name="artifact-holder")
        c.log_artifact(holder.id, blob)
        c.create_model_version("load-model", holder.id, "weights.bin", description="seed")
        c.set_model_alias("load-model", "champion", 1)
        exp = c.get_experiment("load")
    return World(exp.id, runs, holder.id)


Op = Callable[[httpx.Client, random.Random, dict[str, object]], httpx.Response]


def _ops(world: World) -> dict[str, tuple[int, Op, tuple[int, ...]]]:
    """name -> (weight, call, accepted statuses)."""
    run_ids = world.run_ids

    def get_run(h: httpx.Client, r: random.Random, me: dict[str, object]) -> httpx.Response:
        return h.get(f"/runs/{r.choice(run_ids)}")

    def list_experiments(
        h: httpx.Client, r: random.Random, me: dict[str, object]
    ) -> httpx.Response:
        return h.get("/experiments", params={"limit": 20, "q": "loa"})

    def search_runs(h: httpx.Client, r: random.Random, me: dict[str, object]) -> httpx.Response:
        return h.post(
            "/runs/search",
            json={
                "experiment_ids": [world.experiment_id],
                "filter": f"metrics.acc >= {r.choice([0.5, 0.6, 0.7])} and params.layers != '9'",
                "order_by": "metrics.acc DESC",
                "limit": 20,
            },
        )

    def search_models(h: httpx.Client, r: random.Random, me: dict[str, object]) -> httpx.Response:
        return h.get("/registered-models", params={"q": "load", "limit": 20})

    def by_alias(h: httpx.Client, r: random.Random, me: dict[str, object]) -> httpx.Response:
        return h.get("/registered-models/load-model/aliases/champion")

    def metric_history(h: httpx.Client, r: random.Random, me: dict[str, object]) -> httpx.Response:
        return h.get(f"/runs/{r.choice(run_ids)}/metrics/loss/history")

    def log_metrics(h: httpx.Client, r: random.Random, me: dict[str, object]) -> httpx.Response:
        step = int(me["step"])  # type: ignore[call-overload]
        me["step"] = step + 1
        metrics = {f"m{k}": r.random() for k in range(10)}
        return h.post(f"/runs/{me['run']}/metrics", json={"metrics": metrics, "step": step})

    def create_version(h: httpx.Client, r: random.Random, me: dict[str, object]) -> httpx.Response:
        return h.post(
            "/registered-models/load-model/versions",
            json={"source_run_id": world.download_run, "artifact_path": "weights.bin"},
        )

    def upload(h: httpx.Client, r: random.Random, me: dict[str, object]) -> httpx.Response:
        n = int(me["uploads"])  # type: ignore[call-overload]
        me["uploads"] = n + 1
        return h.put(f"/runs/{me['run']}/artifacts/out/f-{n}.bin", content=UPLOAD)

    def download(h: httpx.Client, r: random.Random, me: dict[str, object]) -> httpx.Response:
        resp = h.get(f"/runs/{world.download_run}/artifacts/weights.bin")
        if resp.status_code == 200 and resp.content != BLOB:
            raise AssertionError("downloaded bytes differ from the uploaded artifact")
        return resp

    return {
        "get_run": (20, get_run, (200,)),
        "list_experiments": (8, list_experiments, (200,)),
        "search_runs": (10, search_runs, (200,)),
        "search_models": (8, search_models, (200,)),
        "get_alias": (6, by_alias, (200,)),
        "metric_history": (6, metric_history, (200,)),
        "log_metrics": (20, log_metrics, (200, 201, 204)),
        "create_version": (6, create_version, (201,)),
        "upload_artifact": (6, upload, (201,)),
        "download_artifact": (10, download, (200,)),
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_mixed_load_zero_failures_flat_memory(
    spec: ServerSpec, start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = start_server(spec)
    world = _seed(server, tmp_path)
    ops = _ops(world)
    names = list(ops)
    weights = [ops[n][0] for n in names]
    with MLOpsClient(api_token=ADMIN_TOKEN, url=server.url) as c:
        own_runs = [c.create_run("load", run_name=f"client-{i}").id for i in range(P.clients)]

    measuring = threading.Event()
    stop = threading.Event()
    lock = threading.Lock()
    latencies: dict[str, list[float]] = defaultdict(list)
    failures: list[str] = []
    counts = {"warmup": 0, "measured": 0}

    def client(i: int) -> None:
        r = random.Random(i)
        me: dict[str, object] = {"run": own_runs[i], "step": 0, "uploads": 0}
        with server.client(timeout=60) as h:
            while not stop.is_set():
                name = r.choices(names, weights)[0]
                _, call, ok = ops[name]
                t0 = time.perf_counter()
                try:
                    resp = call(h, r, me)
                    error = (
                        None if resp.status_code in ok else f"{resp.status_code} {resp.text[:200]}"
                    )
                except Exception as exc:  # transport errors, wrong bytes: all failures
                    error = repr(exc)
                elapsed = time.perf_counter() - t0
                with lock:
                    if error:
                        failures.append(f"{name}: {error}")
                    if measuring.is_set():
                        latencies[name].append(elapsed)
                        counts["measured"] += 1
                    else:
                        counts["warmup"] += 1

    rss: list[tuple[float, int]] = []

    def sampler() -> None:
        start = time.monotonic()
        while not stop.is_set():
            if measuring.is_set():
                rss.append((time.monotonic() - start, server.rss()))
            time.sleep(0.25)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(P.clients)]
    threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    time.sleep(P.warmup_seconds)
    measuring.set()
    started = time.monotonic()
    time.sleep(P.measure_seconds)
    stop.set()
    for t in threads:
        t.join(120)
    wall = time.monotonic() - started

    all_lat = [x for v in latencies.values() for x in v]
    # Flat memory: compare the first and last fifths of the measured window (medians, so one
    # sample taken mid-garbage-collection does not decide).
    fifth = max(1, len(rss) // 5)
    rss_first = statistics.median(v for _, v in rss[:fifth])
    rss_last = statistics.median(v for _, v in rss[-fifth:])
    figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "load_average_at_end": os.getloadavg(),
        "database": current_db_kind(),
        "profile": PROFILE,
        "clients": P.clients,
        "warmup_seconds": P.warmup_seconds,
        "measured_seconds": round(wall, 1),
        "requests_warmup": counts["warmup"],
        "requests_measured": counts["measured"],
        "throughput_rps": round(counts["measured"] / wall, 1),
        "failures": len(failures),
        "p50_ms": round(statistics.median(all_lat) * 1000, 1),
        "p99_ms": round(_percentile(all_lat, 0.99) * 1000, 1),
        "per_operation": {
            n: {
                "requests": len(v),
                "p50_ms": round(statistics.median(v) * 1000, 1),
                "p99_ms": round(_percentile(v, 0.99) * 1000, 1),
            }
            for n, v in sorted(latencies.items())
        },
        "rss_mib_first_fifth": round(rss_first / 2**20, 1),
        "rss_mib_last_fifth": round(rss_last / 2**20, 1),
        "rss_growth_mib": round((rss_last - rss_first) / 2**20, 1),
        "rss_mib_timeline": [
            (round(t, 1), round(v / 2**20, 1)) for t, v in rss[:: max(1, len(rss) // 40)]
        ],
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"load-{current_db_kind()}-{PROFILE}.json"
    out.write_text(json.dumps(figures, indent=2))

    assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:5]}"
    assert counts["measured"] > 10 * P.clients, figures
    assert rss_last - rss_first < P.rss_growth_limit_bytes, (
        f"server memory grew {figures['rss_growth_mib']} MiB after warm-up: {figures}"
    )
    # Every request the load made left a consistent deployment behind.
    assert problems(spec.database_url, spec.artifacts) == []
    with MLOpsClient(api_token=ADMIN_TOKEN, url=server.url) as c:
        numbers = sorted(v.version for v in c.list_model_versions("load-model"))
        assert numbers == list(range(1, len(numbers) + 1))

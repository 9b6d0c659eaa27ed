"""A bounded mixed workload against a real ``podstack server`` process on loopback: many
concurrent clients (threads, one httpx client each) for a fixed time doing reads, searches,
metric logging, version creation and artifact transfers.

The run has three phases: one client alone (the single-client rate, measured in the same run
on the same server, which also warms it up), then every client warming up, then every client
measured.

Asserted:
- zero failed requests (every answer is the expected 2xx);
- per operation, p99 latency under the profile's bound for that operation (``p99_limit_ms``:
  generous, 10x and more the p99 of a quiet machine, so a shared 2-core box does not flake,
  but a request stuck behind a lock or a timeout does fail);
- throughput with every client at least ``THROUGHPUT_FLOOR`` of the single-client rate
  (concurrency must not collapse the server; measured, not a constant);
- everything written is read back: each client's metric points (every step, every value),
  each upload (listed, downloaded, byte for byte), and the shared model's versions are exactly
  1..N with N = 1 + the creates that answered 201;
- server memory flat once warmed up: RSS is sampled over the whole run; over the measured window
  the last fifth's median is within ``rss_growth_limit_bytes`` of the first fifth's, and so is
  the growth a least-squares line through every sample predicts over the window (a slow leak
  shows as a slope even when GC noise hides it in the fifths).

Recorded only: p50 latencies, request counts, the RSS timeline, written to
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
    # One client alone (the single-client rate); it also warms the server up, so the warm-up
    # with every client is shorter by as much and the profile lasts as long as before.
    single_seconds: float
    warmup_seconds: float
    measure_seconds: float
    # Allowed RSS growth over the measured window (after warm-up).
    rss_growth_limit_bytes: int
    # p99 bound per operation class (see OP_CLASS), in ms.
    p99_limit_ms: dict[str, float]


# Measured p99s (RELIABILITY.md): short profile 85-415 ms per operation with the machine at a
# load average of 11-13 (150-165 ms overall when quiet); long profile 0.5-2.0 s per operation
# at a load average of 15-21, and up to 4.7 s for version creation on PostgreSQL in an earlier
# run (32 creators on one model's row lock). The bounds leave 4-10x of the worst of those for a
# shared 2-core machine; a request stuck behind a lock or a retry loop still fails them.
PROFILES = {
    "short": Profile(
        clients=8,
        single_seconds=3,
        warmup_seconds=1,
        measure_seconds=8,
        rss_growth_limit_bytes=24 << 20,
        p99_limit_ms={"read": 2_500, "write": 4_000, "version": 6_000, "transfer": 4_000},
    ),
    "long": Profile(
        clients=32,
        single_seconds=10,
        warmup_seconds=10,
        measure_seconds=90,
        rss_growth_limit_bytes=24 << 20,
        p99_limit_ms={"read": 5_000, "write": 8_000, "version": 20_000, "transfer": 8_000},
    ),
}
OP_CLASS = {
    "get_run": "read",
    "list_experiments": "read",
    "search_runs": "read",
    "search_models": "read",
    "get_alias": "read",
    "metric_history": "read",
    "log_metrics": "write",
    "create_version": "version",
    "upload_artifact": "transfer",
    "download_artifact": "transfer",
}
# Throughput with every client, as a fraction of one client's rate measured in the same run:
# on 2 cores the server is CPU-bound either way (8 clients gave 1.4x one client's rate on a
# quiet machine), so anything under half means concurrency made it collapse, not noise.
THROUGHPUT_FLOOR = 0.5
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
        resp = h.post(f"/runs/{me['run']}/metrics", json={"metrics": metrics, "step": step})
        if resp.status_code < 300:  # read back after the run
            me["metrics"][step] = metrics  # type: ignore[index]
        return resp

    def create_version(h: httpx.Client, r: random.Random, me: dict[str, object]) -> httpx.Response:
        resp = h.post(
            "/registered-models/load-model/versions",
            json={"source_run_id": world.download_run, "artifact_path": "weights.bin"},
        )
        if resp.status_code == 201:
            me["versions"] = int(me["versions"]) + 1  # type: ignore[call-overload]
        return resp

    def upload(h: httpx.Client, r: random.Random, me: dict[str, object]) -> httpx.Response:
        n = int(me["uploads"])  # type: ignore[call-overload]
        me["uploads"] = n + 1
        resp = h.put(f"/runs/{me['run']}/artifacts/out/f-{n}.bin", content=UPLOAD)
        if resp.status_code < 300:
            me["uploaded"].append(f"out/f-{n}.bin")  # type: ignore[attr-defined]
        return resp

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


def _rss_slope_growth(samples: list[tuple[float, int]]) -> float:
    """Growth over the samples' time span predicted by a least-squares line through them."""
    if len(samples) < 3:
        return 0.0
    ts = [t for t, _ in samples]
    vs = [float(v) for _, v in samples]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    slope = sum((t - mt) * (v - mv) for t, v in zip(ts, vs, strict=True)) / var
    return slope * (ts[-1] - ts[0])


def _read_back(server: ServerProcess, states: list[dict[str, object]], created: int) -> dict:
    """Everything the load wrote, read back through the API: every metric point of every
    client, every upload (listed and downloaded), the shared model's versions."""
    points = uploads = 0
    with MLOpsClient(api_token=ADMIN_TOKEN, url=server.url) as c, server.client() as h:
        for me in states:
            run = str(me["run"])
            written: dict[int, dict[str, float]] = me["metrics"]  # type: ignore[assignment]
            for k in range(10):
                key = f"m{k}"
                stored = {p.step: p.value for p in c.get_metric_history(run, key)}
                want = {step: m[key] for step, m in written.items()}
                assert stored == want, f"run {run} metric {key}: stored differs from written"
                points += len(want)
            names: list[str] = me["uploaded"]  # type: ignore[assignment]
            listed = {a.path: a for a in c.list_artifacts(run, "out", recursive=True)}
            assert sorted(listed) == sorted(names), f"run {run}: uploads listed != written"
            for name in names:
                assert listed[name].size == len(UPLOAD)
                r = h.get(f"/runs/{run}/artifacts/{name}")
                assert r.status_code == 200 and r.content == UPLOAD, f"run {run} {name}"
                uploads += 1
        numbers = sorted(v.version for v in c.list_model_versions("load-model"))
    assert numbers == list(range(1, 2 + created)), (
        f"versions {numbers[:3]}..{numbers[-3:]} ({len(numbers)}), {created} creates answered 201"
    )
    return {"metric_points": points, "uploads": uploads, "versions": len(numbers)}


def test_mixed_load_zero_failures_flat_memory(
    spec: ServerSpec, start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = start_server(spec)
    world = _seed(server, tmp_path)
    ops = _ops(world)
    names = list(ops)
    weights = [ops[n][0] for n in names]
    # One run per client, and one for the single client of the first phase.
    with MLOpsClient(api_token=ADMIN_TOKEN, url=server.url) as c:
        own_runs = [c.create_run("load", run_name=f"client-{i}").id for i in range(P.clients + 1)]
    states: list[dict[str, object]] = [
        {"run": run, "step": 0, "uploads": 0, "metrics": {}, "uploaded": [], "versions": 0}
        for run in own_runs
    ]

    measuring = threading.Event()
    stop = threading.Event()
    lock = threading.Lock()
    latencies: dict[str, list[float]] = defaultdict(list)
    single: dict[str, list[float]] = defaultdict(list)
    failures: list[str] = []
    counts = {"single": 0, "warmup": 0, "measured": 0}

    def drive(i: int, until: threading.Event, phase: Callable[[], str]) -> None:
        r = random.Random(i)
        me = states[i]
        with server.client(timeout=60) as h:
            while not until.is_set():
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
                where = phase()
                with lock:
                    if error:
                        failures.append(f"{name}: {error}")
                    counts[where] += 1
                    if where == "measured":
                        latencies[name].append(elapsed)
                    elif where == "single":
                        single[name].append(elapsed)

    rss: list[tuple[float, str, int]] = []
    t_start = time.monotonic()
    current = {"phase": "single"}

    def sampler() -> None:
        while not stop.is_set():
            rss.append((time.monotonic() - t_start, current["phase"], server.rss()))
            time.sleep(0.25)

    sampler_thread = threading.Thread(target=sampler)
    sampler_thread.start()
    # Phase 1: one client alone.
    alone = threading.Event()
    solo = threading.Thread(target=drive, args=(P.clients, alone, lambda: "single"))
    t_single = time.monotonic()
    solo.start()
    time.sleep(P.single_seconds)
    alone.set()
    solo.join(120)
    single_wall = time.monotonic() - t_single
    # Phases 2 and 3: every client, warming up, then measured.
    current["phase"] = "warmup"

    def phase() -> str:
        return "measured" if measuring.is_set() else "warmup"

    threads = [threading.Thread(target=drive, args=(i, stop, phase)) for i in range(P.clients)]
    for t in threads:
        t.start()
    time.sleep(P.warmup_seconds)
    measuring.set()
    current["phase"] = "measured"
    started = time.monotonic()
    time.sleep(P.measure_seconds)
    stop.set()
    for t in threads:
        t.join(120)
    wall = time.monotonic() - started
    sampler_thread.join(10)

    all_lat = [x for v in latencies.values() for x in v]
    single_rate = counts["single"] / single_wall
    throughput = counts["measured"] / wall
    measured_rss = [(t, v) for t, ph, v in rss if ph == "measured"]
    # Flat memory: compare the first and last fifths of the measured window (medians, so one
    # sample taken mid-garbage-collection does not decide), and the trend through all of it.
    fifth = max(1, len(measured_rss) // 5)
    rss_first = statistics.median(v for _, v in measured_rss[:fifth])
    rss_last = statistics.median(v for _, v in measured_rss[-fifth:])
    rss_trend = _rss_slope_growth(measured_rss)
    p99_ms = {n: _percentile(v, 0.99) * 1000 for n, v in latencies.items()}
    figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "load_average_at_end": os.getloadavg(),
        "database": current_db_kind(),
        "profile": PROFILE,
        "clients": P.clients,
        "single_client_seconds": round(single_wall, 1),
        "warmup_seconds": P.warmup_seconds,
        "measured_seconds": round(wall, 1),
        "requests_single_client": counts["single"],
        "requests_warmup": counts["warmup"],
        "requests_measured": counts["measured"],
        "single_client_rps": round(single_rate, 1),
        "throughput_rps": round(throughput, 1),
        "throughput_vs_single_client": round(throughput / single_rate, 2) if single_rate else None,
        "throughput_floor": f">= {THROUGHPUT_FLOOR} x single-client rate (asserted)",
        "failures": len(failures),
        "p50_ms": round(statistics.median(all_lat) * 1000, 1),
        "p99_ms": round(_percentile(all_lat, 0.99) * 1000, 1),
        "per_operation": {
            n: {
                "requests": len(v),
                "p50_ms": round(statistics.median(v) * 1000, 1),
                "p99_ms": round(p99_ms[n], 1),
                "p99_limit_ms": P.p99_limit_ms[OP_CLASS[n]],
                "single_client_p50_ms": (
                    round(statistics.median(single[n]) * 1000, 1) if single[n] else None
                ),
            }
            for n, v in sorted(latencies.items())
        },
        "rss_mib_first_fifth": round(rss_first / 2**20, 1),
        "rss_mib_last_fifth": round(rss_last / 2**20, 1),
        "rss_growth_mib": round((rss_last - rss_first) / 2**20, 1),
        "rss_trend_growth_mib": round(rss_trend / 2**20, 1),
        "rss_mib_peak_whole_run": round(max(v for _, _, v in rss) / 2**20, 1),
        "rss_mib_timeline": [
            (round(t, 1), ph, round(v / 2**20, 1)) for t, ph, v in rss[:: max(1, len(rss) // 60)]
        ],
    }
    out = RESULTS_DIR / f"load-{current_db_kind()}-{PROFILE}.json"

    def save() -> None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2))

    save()
    assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:5]}"
    slow = {
        n: f"{p99_ms[n]:.0f} ms > {P.p99_limit_ms[OP_CLASS[n]]} ms"
        for n in p99_ms
        if p99_ms[n] > P.p99_limit_ms[OP_CLASS[n]]
    }
    assert not slow, f"p99 over the bound: {slow}; {figures['per_operation']}"
    assert set(latencies) == set(ops), f"operations never measured: {set(ops) - set(latencies)}"
    assert throughput >= THROUGHPUT_FLOOR * single_rate, (
        f"{throughput:.0f} req/s with {P.clients} clients, under {THROUGHPUT_FLOOR} x the "
        f"{single_rate:.0f} req/s of one client alone"
    )
    assert rss_last - rss_first < P.rss_growth_limit_bytes, (
        f"server memory grew {figures['rss_growth_mib']} MiB after warm-up: {figures}"
    )
    assert rss_trend < P.rss_growth_limit_bytes, (
        f"server memory trends up {figures['rss_trend_growth_mib']} MiB over the window"
    )
    # Every request the load made left a consistent deployment behind...
    assert problems(spec.database_url, spec.artifacts) == []
    # ...and everything it wrote reads back as written.
    created = sum(int(me["versions"]) for me in states)  # type: ignore[call-overload]
    figures["read_back"] = _read_back(server, states, created)
    save()

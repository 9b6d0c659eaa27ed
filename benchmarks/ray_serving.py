"""The same model served on the local target and on Ray Serve with 1 and 2 replicas (issue 22):
requests/s and latency p50/p95 under a fixed concurrent load.

    python -m benchmarks.run ray_serving
    python -m benchmarks.run ray_serving --quick     # shorter windows, one repetition

A real ``podstack server`` process (SQLite, one worker) and a real single-node Ray cluster
(``tests/ray_cluster.py``: ``ray start --head`` on loopback, 2 CPUs, usage statistics off) run
on this machine. One scikit-learn version is deployed three ways, one at a time:

- ``local``: Podstack's own model server process (the ``local`` target);
- ``ray x1`` / ``ray x2``: the ``ray`` target with ``min_replicas = max_replicas`` = 1 or 2.

Each deployment is called through its Podstack endpoint (``/api/v1/endpoints/<name>``, the URL a
user calls, so both targets pay the same gateway hop) and, for Ray, also straight at Ray Serve's
proxy (what the gateway adds). The load is ``CONCURRENCY`` threads each sending one Open
Inference Protocol request at a time for ``WINDOW_S`` seconds, after a warm-up; the windows of
all configurations are interleaved and repeated ``REPEATS`` times, and the median is reported
with its range, because this 2-core machine is noisy and the load generator shares its cores
with the servers (which caps every figure here: they are relative, not absolute).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

TOKEN = "pst_bench-ray-serving-0123456789abcdef"
CONCURRENCY = 8
ROW = [[0.0, 1.0]]


def _body() -> dict[str, Any]:
    return {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": ROW}]}


def _load(base: str, model: str, headers: dict[str, str], seconds: float) -> dict[str, float]:
    """``CONCURRENCY`` threads calling ``/v2/models/<model>/infer`` for ``seconds``."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    body = _body()

    def worker() -> None:
        mine: list[float] = []
        bad = 0
        with httpx.Client(base_url=base, headers=headers, timeout=30, trust_env=False) as http:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    r = http.post(f"/v2/models/{model}/infer", json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    mine.append(time.perf_counter() - t0)
                else:
                    bad += 1
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    t_start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t_start
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / elapsed,
        "p50_ms": 1000 * latencies[n // 2] if n else float("nan"),
        "p95_ms": 1000 * latencies[min(n - 1, int(n * 0.95))] if n else float("nan"),
        "errors": errors[0],
    }


def _deploy(sdk: Any, model: str, version: int, endpoint: str, target: str, n: int) -> Any:
    dep = sdk.deploy_model(
        model, version, endpoint_name=endpoint, target=target, min_replicas=n, max_replicas=n
    )
    if dep.status != "ready":
        raise RuntimeError(f"{endpoint} on {target} did not become ready: {dep.status_reason}")
    return dep


def _wait_ray_replicas(cluster: Any, endpoint: str, n: int, timeout: float = 120) -> None:
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    from podstack.server.deployments.ray_serve import app_name

    serve = ServeSubmissionClient(cluster.address)
    deadline = time.monotonic() + timeout
    while True:
        app = serve.get_serve_details()["applications"].get(app_name(endpoint)) or {}
        replicas = ((app.get("deployments") or {}).get("model") or {}).get("replicas") or []
        if sum(1 for r in replicas if r.get("state") == "RUNNING") >= n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"Ray Serve did not reach {n} running replicas for {endpoint}")
        time.sleep(0.5)


def run(window_s: float, repeats: int, workdir: Path) -> dict[str, Any]:
    from tests.ray_cluster import start_cluster, stop_cluster
    from tests.server.deployments.conftest import X_TRAIN, log_and_register, make_sk_model

    from benchmarks.artifacts_transfer import running_server
    from podstack import MLOpsClient

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["PODSTACK_PROGRESS"] = "0"
    home = workdir / "home"
    home.mkdir()
    # Short path: Ray puts Unix sockets under its temp dir (107-byte limit).
    ray_dir = Path(tempfile.mkdtemp(prefix="psrb-", dir="/tmp"))
    cluster = start_cluster(ray_dir / "r")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    results: dict[str, list[dict[str, float]]] = {}
    try:
        with (
            running_server(
                home,
                admin_token=TOKEN,
                background=True,
                # The cluster runs on loopback, which the egress rules refuse by default.
                extra_env={"PODSTACK_OUTBOUND_ALLOW": "127.0.0.1"},
            ) as (url, _proc, how),
            MLOpsClient(api_token=TOKEN, url=url) as sdk,
        ):
            try:
                model = make_sk_model()
                v = log_and_register(sdk, "bench-ray", model)
                sdk.set_deployment_target(
                    "ray-bench",
                    "ray",
                    {"address": cluster.address, "serve_url": cluster.serve_url, "num_cpus": 0.25},
                )
                expected = model.predict(X_TRAIN[:4]).tolist()
                configs: list[tuple[str, str, dict[str, str]]] = []
                _deploy(sdk, "bench-ray", v.version, "bench-local", "local", 1)
                configs.append(("local", f"{url}/api/v1/endpoints/bench-local", auth))
                for n in (1, 2):
                    ep = f"bench-ray{n}"
                    _deploy(sdk, "bench-ray", v.version, ep, "ray-bench", n)
                    _wait_ray_replicas(cluster, ep, n)
                    configs.append((f"ray x{n}", f"{url}/api/v1/endpoints/{ep}", auth))
                    configs.append((f"ray x{n} (Serve direct)", f"{cluster.serve_url}/{ep}", {}))
                # Every deployment answers with the model's own predictions before it is timed.
                for ep in ("bench-local", "bench-ray1", "bench-ray2"):
                    got = sdk.predict(ep, X_TRAIN[:4].tolist()).as_dict()["label"].tolist()
                    if got != expected:
                        raise RuntimeError(f"{ep} answered {got}, the model says {expected}")
                for _label, base, headers in configs:  # warm-up: connections, caches, JIT of numpy
                    _load(base, base.rsplit("/", 1)[-1], headers, min(2.0, window_s))
                for _ in range(repeats):
                    for label, base, headers in configs:
                        results.setdefault(label, []).append(
                            _load(base, base.rsplit("/", 1)[-1], headers, window_s)
                        )
            finally:
                # Model servers outlive the Podstack server by design (they keep serving
                # through its restarts), so a benchmark that stops early must remove them.
                for dep in sdk.list_deployments():
                    sdk.delete_deployment(dep.endpoint_name)
    finally:
        stop_cluster(cluster)
    out: dict[str, Any] = {
        "server": how,
        "concurrency": CONCURRENCY,
        "window_s": window_s,
        "repeats": repeats,
        "configs": {},
    }
    for label, rs in results.items():
        rps = [r["rps"] for r in rs]
        out["configs"][label] = {
            "rps_median": round(statistics.median(rps), 1),
            "rps_range": [round(min(rps), 1), round(max(rps), 1)],
            "p50_ms": round(statistics.median(r["p50_ms"] for r in rs), 1),
            "p95_ms": round(statistics.median(r["p95_ms"] for r in rs), 1),
            "errors": sum(int(r["errors"]) for r in rs),
        }
    return out


def _record(out: dict[str, Any]) -> None:
    from benchmarks.sections import record

    lines = [
        f"One scikit-learn version, {out['concurrency']} concurrent clients, windows of "
        f"{out['window_s']} s interleaved across configurations, median of {out['repeats']} "
        f"(range); {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, load average "
        f"{os.getloadavg()[0]:.2f} at the end (2 cores shared by the server, the Ray cluster "
        "and the load generator: relative figures).",
        "",
        "| deployment | requests/s | p50 ms | p95 ms | failed requests |",
        "|---|---|---|---|---|",
    ]
    for label, r in out["configs"].items():
        lo, hi = r["rps_range"]
        lines.append(
            f"| {label} | {r['rps_median']} ({lo}-{hi}) | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['errors']} |"
        )
    record("ray-serving", "Serving on the local target and on Ray Serve", lines)


def main(args: argparse.Namespace | None = None) -> dict[str, Any]:
    quick = os.environ.get("BENCH_QUICK") == "1"
    window_s, repeats = (3.0, 1) if quick else (8.0, 3)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as d:
        out = run(window_s, repeats, Path(d))
    for label, r in out["configs"].items():
        print(
            f"{label:26} {r['rps_median']:8} req/s  p50 {r['p50_ms']:6} ms  "
            f"p95 {r['p95_ms']:6} ms  failed {r['errors']}"
        )
    if not quick:
        _record(out)
    return out


if __name__ == "__main__":
    main()

"""The plumbing both client scripts share: read the job from argv, run one workload, print
one JSON line. Standard library only (runs in the MLflow venv too)."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

Workload = Callable[[dict[str, Any]], dict[str, Any]]


def run_script(workloads: dict[str, Workload]) -> None:
    """``argv[1]`` is a JSON job: ``{"workload": "W1", "url": ..., "server_pid": ...,
    "sizes": {...}, "workdir": ...}``. Prints ``{"ok": true, "result": {...}}`` or
    ``{"ok": false, "error": "..."}`` as the last stdout line."""
    job = json.loads(sys.argv[1])
    name = job["workload"]
    try:
        result = workloads[name](job)
        out: dict[str, Any] = {"ok": True, "result": result}
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    sys.stdout.flush()


def metric_batches(keys: int, steps: int, batch: int) -> list[list[tuple[str, float, int]]]:
    """The W1 points, (key, value, step), in step order, cut into batches: identical for both
    products."""
    points = [
        (f"metric_{k:02d}", (s * 31 + k) % 1000 / 1000.0, s)
        for s in range(steps)
        for k in range(keys)
    ]
    return [points[i : i + batch] for i in range(0, len(points), batch)]


def in_parallel(
    n: int, make_client: Callable[[], Any], fn: Callable[[Any, int], Any], threads: int = 4
) -> float:
    """``fn(client, i)`` for i in 0..n-1 on ``threads`` threads (one client each); returns the
    seconds taken. For W4's set-up only: never inside a measured section."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()

    def call(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = make_client()
        fn(local.client, i)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(call, range(n)))
    return time.perf_counter() - t0


def search_loop(
    queries: list[str], search: Callable[[str], Any], max_s: float
) -> tuple[list[float], set[int], bool]:
    """Runs ``search(q)`` for each query, timing each; stops early once ``max_s`` is spent.
    Returns (latencies, page sizes seen, whether it stopped early)."""
    import time

    lat: list[float] = []
    sizes: set[int] = set()
    t_end = time.perf_counter() + max_s
    for q in queries:
        t0 = time.perf_counter()
        page = search(q)
        t1 = time.perf_counter()
        lat.append(t1 - t0)
        sizes.add(len(page))
        if t1 > t_end:
            return lat, sizes, len(lat) < len(queries)
    return lat, sizes, False


def model_name(i: int) -> str:
    # Six digits, so a four-digit prefix ("bench-model-0012") matches exactly 100 models
    # at every scale (2,000 / 20,000 / 100,000).
    return f"bench-model-{i:06d}"


def team_of(i: int, teams: int) -> str:
    return f"team-{i % teams:02d}"


def search_plan(models: int, teams: int, n: int, seed: int = 8) -> tuple[list[str], list[str]]:
    """Same query sequence for both products: ``n`` team labels and ``n`` name prefixes."""
    import random

    rnd = random.Random(seed)
    labels = [f"team-{rnd.randrange(teams):02d}" for _ in range(n)]
    prefixes = [f"bench-model-{rnd.randrange(max(1, models // 100)):04d}" for _ in range(n)]
    return labels, prefixes

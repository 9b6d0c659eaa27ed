"""The plumbing both client scripts share: read the job from argv, run one workload, print
one JSON line. Standard library only (runs in the MLflow venv too)."""

from __future__ import annotations

import hashlib
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


# W1's timestamps: fixed (not "now"), so both products store the very same points and their
# stored histories can be compared digest for digest.
W1_BASE_MS = 1_700_000_000_000


def metric_batches(keys: int, steps: int, batch: int) -> list[list[tuple[str, float, int, int]]]:
    """The W1 points, (key, value, step, timestamp ms), in step order, cut into batches:
    identical for both products. MLflow's client always sends a timestamp, so we do too."""
    points = [
        (f"metric_{k:02d}", (s * 31 + k) % 1000 / 1000.0, s, W1_BASE_MS + s)
        for s in range(steps)
        for k in range(keys)
    ]
    return [points[i : i + batch] for i in range(0, len(points), batch)]


def digest(obj: Any) -> str:
    """A short, order-independent-by-construction fingerprint of a JSON-able answer (callers
    sort first)."""
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()[:16]


def points_digest(points: Any) -> str:
    """Fingerprint of metric points given as (key, value, step, timestamp ms) tuples."""
    return digest(sorted((str(k), round(float(v), 9), int(s), int(t)) for k, v, s, t in points))


def check_w1(sent: list[tuple[str, float, int, int]], stored: list[tuple[Any, ...]] | None) -> dict:
    """W1's answer: every point sent is stored, with its value, step and timestamp."""
    if stored is None:
        return {"ok": None, "problems": ["not verified (profiling run)"]}
    want, got = points_digest(sent), points_digest(stored)
    problems = []
    if len(stored) != len(sent):
        problems.append(f"stored {len(stored)} points, sent {len(sent)}")
    if want != got:
        problems.append("stored points differ from the points sent (key/value/step/timestamp)")
    return {"ok": not problems, "problems": problems, "digest": got}


def check_versions(stored: list[int], expected_n: int) -> dict:
    """W2/W3's answer: versions exactly 1..N."""
    want = list(range(1, expected_n + 1))
    ok = sorted(stored) == want
    problems = [] if ok else [f"stored versions {_span(sorted(stored))}, expected 1..{expected_n}"]
    return {"ok": ok, "problems": problems, "digest": digest(sorted(stored))}


def _span(v: list[int]) -> str:
    return f"{len(v)} ({v[0]}..{v[-1]})" if v else "none"


def file_sha256(path: str, chunk: int = 8 * 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def expected_search(kind: str, query: str, models: int, teams: int, page: int = 100) -> list[str]:
    """What one W4 search must answer: the first ``page`` matching names in name order, for a
    label (team) or a name prefix, over the ``models`` deterministic models."""
    if kind == "label":
        t = int(query.rsplit("-", 1)[1])
        names = [model_name(i) for i in range(t, models, teams)]
    else:
        # "bench-model-" + k digits covers the indices that start with those digits when
        # written with six: a contiguous block, so no need to scan every model.
        digits = query.removeprefix("bench-model-")
        width = 10 ** (6 - len(digits))
        lo = int(digits) * width
        names = [model_name(i) for i in range(lo, min(models, lo + width))]
    return sorted(names)[:page]


def check_searches(
    kind: str, queries: list[str], answers: list[list[str]], models: int, teams: int
) -> dict:
    """Each answered search against its expected result set; ``digests`` (one per query, in
    query order) lets the runner compare the two products query by query."""
    cache: dict[str, list[str]] = {}

    def expected(q: str) -> list[str]:
        if q not in cache:
            cache[q] = expected_search(kind, q, models, teams)
        return cache[q]

    wrong = [q for q, got in zip(queries, answers, strict=False) if sorted(got) != expected(q)]
    problems = (
        [f"{len(wrong)} of {len(answers)} {kind} searches answered wrongly, e.g. {wrong[0]!r}"]
        if wrong
        else []
    )
    return {
        "ok": not wrong,
        "problems": problems,
        "digests": [digest(sorted(a)) for a in answers],
    }


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
    queries: list[str],
    search: Callable[[str], Any],
    max_s: float,
    names: Callable[[Any], list[str]] = lambda page: [m.name for m in page],
) -> tuple[list[float], set[int], bool, list[list[str]]]:
    """Runs ``search(q)`` for each query, timing each; stops early once ``max_s`` is spent.
    Returns (latencies, page sizes seen, whether it stopped early, the names each search
    answered; read after the clock stops)."""
    import time

    lat: list[float] = []
    sizes: set[int] = set()
    answers: list[list[str]] = []
    t_end = time.perf_counter() + max_s
    for q in queries:
        t0 = time.perf_counter()
        page = search(q)
        t1 = time.perf_counter()
        lat.append(t1 - t0)
        sizes.add(len(page))
        answers.append(names(page))
        if t1 > t_end:
            return lat, sizes, len(lat) < len(queries), answers
    return lat, sizes, False, answers


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

"""``make bench``: the unmodified MLflow client against MLflow's own server and against
Podstack's MLflow-compatible API, W1/W2/W5 (issue 17's figures; the workloads themselves are in
``mlflow_compare/mlflow_client_on_podstack.py``). Each server in turn, ``BENCH_MLFLOW_CLIENT_RUNS``
times (default 3; the order alternates, this machine is noisy); the medians go into the
"MLflow client" section of RESULTS.md on a full-size run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

GOAL = 3.0


def main(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.mlflow_compare.mlflow_client_on_podstack import WORKLOADS, compare

    quick = bool(getattr(args, "quick", False)) or os.environ.get("BENCH_QUICK") == "1"
    n = int(os.environ.get("BENCH_MLFLOW_CLIENT_RUNS", "1" if quick else "3"))
    runs: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    for i in range(n):
        t0 = time.perf_counter()
        runs.append(compare("sqlite", WORKLOADS))
        timings[f"run {i + 1}"] = round(time.perf_counter() - t0, 1)
        print(f"mlflow_client: run {i + 1}/{n} done", file=sys.stderr, flush=True)
    summary: dict[str, Any] = {"runs": n, "workloads": {}, "timings": timings}
    for w in WORKLOADS:
        per = [r["workloads"][w] for r in runs]
        ml = [p["rate_mlflow_server"] for p in per if p["rate_mlflow_server"]]
        ps = [p["rate_podstack_server"] for p in per if p["rate_podstack_server"]]
        ratios = [p["speedup"] for p in per if p["speedup"]]
        summary["workloads"][w] = {
            "rate_mlflow_server": round(statistics.median(ml), 1) if ml else None,
            "rate_podstack_server": round(statistics.median(ps), 1) if ps else None,
            "speedup_median": round(statistics.median(ratios), 2) if ratios else None,
            "speedup_range": [min(ratios), max(ratios)] if ratios else None,
            "checks_ok": all(p["checks_ok"] for p in per),
            "errors": [
                p[side]["error"]
                for p in per
                for side in ("mlflow_server", "podstack_server")
                if "error" in p[side]
            ],
        }
    if not quick:
        _record(summary)
    return summary


UNITS = {"W1": "metric points/s", "W2": "versions/s", "W5": "alias lookups/s (threads)"}


def _record(summary: dict[str, Any]) -> None:
    from benchmarks.sections import record

    lines = [
        f"The same `MlflowClient` (mlflow 3.17, its own venv, the workloads of "
        f"`mlflow_compare/mlflow_client_workloads.py`) against `mlflow server` and against "
        f"Podstack's `/api/2.0/mlflow` (SQLite, one worker each); median of {summary['runs']} "
        f"runs; {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, load average "
        f"{os.getloadavg()[0]:.2f} at the end (2 cores). Goal: {GOAL}x.",
        "",
        "| workload | unit | MLflow server | Podstack | speed-up (range) | goal | answers |",
        "|---|---|---|---|---|---|---|",
    ]
    for w, r in summary["workloads"].items():
        rng = r["speedup_range"]
        status = "PASS" if (r["speedup_median"] or 0) >= GOAL else "FAIL"
        lines.append(
            f"| {w} | {UNITS[w]} | {r['rate_mlflow_server']} | {r['rate_podstack_server']} | "
            f"{r['speedup_median']}x ({rng[0]}-{rng[1]}) | {GOAL}x {status} | "
            f"{'checked' if r['checks_ok'] and not r['errors'] else 'INVALID'} |"
            if rng
            else f"| {w} | {UNITS[w]} | - | - | - | - | INVALID: {r['errors'][:1]} |"
        )
    record("mlflow-client", "The MLflow client against MLflow and against Podstack", lines)

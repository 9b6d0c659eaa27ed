"""The whole comparison: MLflow venv, then for each backend each product's server and workloads,
then the report. ``main(args)`` is what ``make bench`` calls.

Environment knobs (defaults = the issue's full run):
  BENCH_QUICK=1                 small sizes for quick iterations (see sizes.py)
  BENCH_W1_STEPS=..., ...       any single size (sizes.py field names, upper-cased)
  BENCH_WORKLOADS=W1,W4         subset of workloads
  BENCH_BACKENDS=sqlite         subset of backends (sqlite, postgresql)
  BENCH_PRODUCTS=podstack       subset of products (mlflow, podstack)
  BENCH_W4_SCALE=20000,100000   our extra W4 levels ("" to skip)
  BENCH_WORKDIR=/path           where temp servers, databases and files go (default: system tmp)
  BENCH_WAIT_QUIET=5            max seconds to wait before each workload for a quiet machine
  BENCH_WAIT_QUIET_TOTAL=40     ... and in total for the run (shared evenly by the 4 suites)
  BENCH_REPEATS=3              runs of each suite; the products alternate which goes first
  BENCH_KEEP=1                  keep the work directory (server and client logs) afterwards
  BENCH_RESULTS_MD=1|0          force writing (or not) benchmarks/RESULTS.md; by default only a
                                full-size run of everything rewrites it
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.mlflow_compare import answers, databases, mlflow_env, report, sizes
from benchmarks.mlflow_compare.measure import make_file
from benchmarks.mlflow_compare.servers import machine_info
from benchmarks.mlflow_compare.workloads import (
    QUIET_WAIT_S,
    QUIET_WAIT_TOTAL_S,
    WORKLOADS,
    copy_limit,
    run_suite,
)

# Each suite (product x backend) runs this many times, the products taking turns to go first
# (MLflow used to run first every time, on the fresher machine); the report gives the median
# and the spread of the repeats.
REPEATS = max(1, int(os.environ.get("BENCH_REPEATS", "3")))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _flag(name: str) -> bool | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    return raw.lower() not in ("0", "false", "no", "off")


def _exit_on_sigterm() -> None:
    # A plain SIGTERM would skip the finally blocks that stop servers and drop databases.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def main(args: Any = None) -> dict[str, Any]:
    _exit_on_sigterm()
    t_start = time.perf_counter()
    sz = sizes.from_env()
    selected = [w for w in sizes.workloads() if w in WORKLOADS]
    kinds = sizes.backends()
    products = sizes.products()
    results: dict[str, Any] = {
        "benchmark": "mlflow_compare",
        "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "sizes": sz.as_dict(),
        "sizes_are_default": sz == sizes.Sizes(),
        "workloads": selected,
        "w4_scale_levels": sizes.scale_levels(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "quiet_wait_s": {
            "per_workload": QUIET_WAIT_S,
            "per_suite": round(
                QUIET_WAIT_TOTAL_S / max(1, len(kinds) * len(products) * REPEATS), 1
            ),
        },
        "runs": {},
        "errors": [],
    }
    timings: dict[str, float] = {}
    results["timings_s"] = timings
    if "mlflow" in products:
        t0 = time.perf_counter()
        mlflow_env.ensure_venv(log)
        results["mlflow_venv_s"] = timings["MLflow venv"] = round(time.perf_counter() - t0, 1)
    results["versions"] = {
        "mlflow": mlflow_env.installed_version() if "mlflow" in products else None,
        "podstack": importlib.metadata.version("podstack"),
        "sqlite": databases.sqlite_version(),
        "postgresql": databases.postgres_version(),
    }

    workdir = Path(tempfile.mkdtemp(prefix="podstack-bench-", dir=os.environ.get("BENCH_WORKDIR")))
    shared = workdir / "shared"
    shared.mkdir()
    log(f"mlflow_compare: sizes={sz.as_dict()} workloads={selected} backends={kinds}; in {workdir}")
    try:
        if "W6" in selected:
            t0 = time.perf_counter()
            payload = shared / "w6-payload.bin"
            make_file(str(payload), sz.w6_mib * 2**20)
            results["copy_limit"] = copy_limit(payload, shared)
            timings["W6 file + disk limit"] = round(time.perf_counter() - t0, 1)
        results["repeats"] = REPEATS
        results["order"] = {}
        results["validity"] = {}
        raw: dict[str, dict[str, list[Any]]] = {}
        for kind in kinds:
            if kind == "postgresql" and not databases.postgres_available():
                msg = (
                    f"PostgreSQL not reachable at {databases.PG_HOST}:{databases.PG_PORT} "
                    "(user postgres, trust auth); skipped"
                )
                results["errors"].append(msg)
                log(msg)
                continue
            raw[kind] = {p: [] for p in products}
            results["order"][kind] = []
            for rep in range(REPEATS):
                order = products if rep % 2 == 0 else list(reversed(products))
                results["order"][kind].append(order)
                for product in order:
                    t0 = time.perf_counter()
                    try:
                        res = run_suite(
                            product,
                            kind,
                            sz,
                            selected,
                            workdir / f"run{rep + 1}",
                            shared,
                            # Our 20k/100k W4 levels are ours only: measured once.
                            sizes.scale_levels() if rep == 0 else [],
                            log,
                            quiet_budget_s=QUIET_WAIT_TOTAL_S
                            / (len(kinds) * len(products) * REPEATS),
                        )
                    except Exception as exc:
                        msg = f"{product}/{kind} run {rep + 1}: {type(exc).__name__}: {exc}"
                        results["errors"].append(msg.splitlines()[0][:300])
                        res = {"error": msg}
                        log(msg)
                    raw[kind][product].append(res)
                    timings[f"{kind} {product} #{rep + 1}"] = round(time.perf_counter() - t0, 1)
            results["runs"][kind] = {p: answers.combine(raw[kind][p]) for p in products}
            results["validity"][kind] = {
                w: answers.validity(
                    w,
                    {
                        p: [r.get(w) if "error" not in r else r for r in raw[kind][p]]
                        for p in products
                    },
                )
                for w in selected
            }
            for w, v in results["validity"][kind].items():
                if not v["valid"]:
                    log(f"  {kind} {w}: INVALID, no ratio: {'; '.join(v['problems'])[:300]}")
        if "W6" in selected:
            # The disk limit again, after the suites: the fastest of both is the limit.
            t0 = time.perf_counter()
            results["copy_limit"] = copy_limit(payload, shared, results["copy_limit"])
            timings["W6 disk limit again"] = round(time.perf_counter() - t0, 1)
    finally:
        if _flag("BENCH_KEEP"):
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    results["duration_s"] = round(time.perf_counter() - t_start, 1)
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    # The raw results first: a failure in the report below must not lose a long run.
    json_path = report.write_json(results)
    rows = report.build_rows(results)
    results["table"] = [r.__dict__ for r in rows]
    results["status_counts"] = report.summary_counts(rows)
    print(report.text_table(rows))
    json_path = report.write_json(results)
    full = (
        results["sizes_are_default"]
        and set(selected) == set(WORKLOADS)
        and set(kinds) >= {"sqlite", "postgresql"}
        and set(products) >= {"mlflow", "podstack"}
    )
    write_md = _flag("BENCH_RESULTS_MD")
    md = None
    if write_md or (write_md is None and full):
        md = report.write_markdown(results, rows)
        log(f"wrote {md}")
    noise = report.machine_noise(results)
    log(
        f"wrote {json_path}; total {results['duration_s']} s; other processes used {noise} "
        "cores on average during the measured sections (0 = clean measurement)"
    )
    return {
        "json": str(json_path),
        "duration_s": results["duration_s"],
        "status_counts": results["status_counts"],
        "errors": results["errors"],
        "timings": timings,
        # benchmarks/run.py adds `make bench`'s timing table to the RESULTS.md written here.
        "results_md": str(md) if md else None,
    }


if __name__ == "__main__":
    main(sys.argv[1:])

"""``make bench``: discovers and runs every benchmark in this folder.

Contract: a module or package ``benchmarks/<name>`` that exposes ``def main(args) -> dict`` is a
benchmark. ``args`` is the parsed command line below (``args.names``, ``args.quick``); the
returned dict is a JSON-able summary, printed at the end.

    python -m benchmarks.run                  # all benchmarks
    python -m benchmarks.run mlflow_compare   # only those named
    python -m benchmarks.run --quick          # small sizes (sets BENCH_QUICK=1)
    python -m benchmarks.run --list

At the end it prints how long each benchmark (and each phase a benchmark reports under
``"timings"`` in its summary) took, and the total; when this run rewrote
``benchmarks/RESULTS.md`` the same timing table is recorded there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def discover() -> dict[str, Callable[[argparse.Namespace], dict[str, Any]]]:
    found: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {}
    for info in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda i: i.name):
        if info.name == "run" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        main = getattr(module, "main", None)
        if callable(main):
            found[info.name] = main
    return found


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--quick", action="store_true", help="small sizes for a fast check")
    p.add_argument("--list", action="store_true", help="list benchmarks and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # Run from anywhere: benchmarks/ is imported as a package of the repository root.
    sys.path.insert(0, str(HERE.parent))
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.quick:
        os.environ["BENCH_QUICK"] = "1"
    benches = discover()
    if args.list:
        print("\n".join(benches))
        return 0
    unknown = [n for n in args.names if n not in benches]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {sorted(benches)}", file=sys.stderr)
        return 2
    summary: dict[str, Any] = {}
    elapsed: dict[str, float] = {}
    failed = False
    t_start = time.perf_counter()
    for name in args.names or list(benches):
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            summary[name] = benches[name](args)
        except Exception as exc:
            traceback.print_exc()
            summary[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed = True
        elapsed[name] = time.perf_counter() - t0
        print(f"== {name}: {elapsed[name]:.0f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - t_start
    timing = timing_lines(summary, elapsed, total)
    summary["_timing"] = {"sections_s": {k: round(v, 1) for k, v in elapsed.items()}}
    summary["_timing"]["total_s"] = round(total, 1)
    print(json.dumps(summary, indent=2, default=str))
    print("\n".join(timing), file=sys.stderr, flush=True)
    _record_timing(summary, timing, total)
    return 1 if failed else 0


def _phases(result: Any) -> dict[str, float]:
    timings = result.get("timings") if isinstance(result, dict) else None
    return timings if isinstance(timings, dict) else {}


def timing_lines(summary: dict[str, Any], elapsed: dict[str, float], total: float) -> list[str]:
    """Per-benchmark elapsed time, each benchmark's own phases (``"timings"`` in its summary:
    name -> seconds) indented under it, then the total."""
    out = ["== elapsed time per section"]
    phase_names = [p for n in elapsed for p in _phases(summary.get(n))]
    width = max([len(n) for n in elapsed] + [len(p) + 2 for p in phase_names] + [24])
    for name, secs in elapsed.items():
        out.append(f"  {name:<{width}}  {secs:7.1f} s")
        for phase, p_secs in _phases(summary.get(name)).items():
            out.append(f"    {phase:<{width - 2}}  {p_secs:7.1f} s")
    out.append(f"  {'total':<{width}}  {total:7.1f} s  ({total / 60:.1f} min)")
    return out


def _record_timing(summary: dict[str, Any], lines: list[str], total: float) -> None:
    """Adds the timing table to benchmarks/RESULTS.md if a benchmark rewrote it in this run
    (it says so with ``"results_md"`` in its summary); a partial or quick run leaves the
    committed RESULTS.md alone."""
    md = next(
        (s["results_md"] for s in summary.values() if isinstance(s, dict) and s.get("results_md")),
        None,
    )
    if not md:
        return
    from benchmarks.mlflow_compare.report import record_bench_timing

    record_bench_timing(Path(md), lines[1:], total)


if __name__ == "__main__":
    raise SystemExit(main())

"""``make bench``: discovers and runs every benchmark in this folder.

Contract: a module or package ``benchmarks/<name>`` that exposes ``def main(args) -> dict`` is a
benchmark. ``args`` is the parsed command line below (``args.names``, ``args.quick``); the
returned dict is a JSON-able summary, printed at the end.

    python -m benchmarks.run                  # all benchmarks
    python -m benchmarks.run mlflow_compare   # only those named
    python -m benchmarks.run --quick          # small sizes (sets BENCH_QUICK=1)
    python -m benchmarks.run --list
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
    failed = False
    for name in args.names or list(benches):
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            summary[name] = benches[name](args)
        except Exception as exc:
            traceback.print_exc()
            summary[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed = True
        print(f"== {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(json.dumps(summary, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where does our server spend a workload's time? Samples ``podstack server`` with py-spy while
one workload's client runs, then prints the hottest frames (self and inclusive).

    .venv/bin/python -m benchmarks.mlflow_compare.profiling W1 [sqlite|postgresql] [out-dir]

Writes ``<out-dir>/<workload>-<backend>.speedscope.json`` (open at speedscope.app) and
``.collapsed.txt`` (flamegraph.pl input) next to the printed summary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.mlflow_compare import podstack_env, sizes
from benchmarks.mlflow_compare.databases import backend
from benchmarks.mlflow_compare.workloads import run_client


def py_spy() -> str:
    exe = Path(sys.executable).with_name("py-spy")
    if exe.exists():
        return str(exe)
    found = shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install -e '.[dev]'")
    return found


# Leaf frames of threads that wait rather than work: the event loop in epoll (shown as
# Runner.run without --native), parked pool threads.
IDLE_FRAMES = ("Runner.run (", "select (selectors", "wait (threading", "_worker (concurrent")


def summarize(collapsed: Path, top: int = 25) -> str:
    """Self and inclusive sample counts per frame from py-spy's collapsed output."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = stack.split(";")
        # Idle threads (the event loop waiting, pool threads parked) are not work.
        leaf = frames[-1]
        if any(w in leaf for w in IDLE_FRAMES):
            continue
        total += count
        self_c[leaf] += count
        for f in set(frames):
            incl[f] += count
    out = [f"busy samples: {total}", "", "self time (leaf frames):"]
    out += [f"  {c * 100 / total:5.1f}%  {f}" for f, c in self_c.most_common(top)]
    out += ["", "inclusive time (podstack, sqlalchemy, pydantic, starlette/fastapi frames):"]
    keep = (
        "podstack",
        "sqlalchemy",
        "pydantic",
        "fastapi",
        "starlette",
        "json",
        "sqlite",
        "psycopg",
    )
    ranked = [(f, c) for f, c in incl.most_common() if any(k in f for k in keep)]
    out += [f"  {c * 100 / total:5.1f}%  {f}" for f, c in ranked[:top]]
    return "\n".join(out)


def main() -> None:
    workload = (sys.argv[1] if len(sys.argv) > 1 else "W1").upper()
    kind = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
    out_dir = Path(sys.argv[3] if len(sys.argv) > 3 else tempfile.mkdtemp(prefix="bench-prof-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    sz = sizes.from_env()
    work = Path(tempfile.mkdtemp(prefix="podstack-prof-"))
    try:
        with backend(kind, work, "podstack") as be:
            server = podstack_env.start_server(be.podstack_url, work)
            try:
                base = out_dir / f"{workload}-{kind}"
                rate = os.environ.get("BENCH_PROFILE_RATE", "250")
                spies = [
                    subprocess.Popen(
                        [
                            py_spy(),
                            "record",
                            "--pid",
                            str(server.pid),
                            "--rate",
                            rate,
                            "--format",
                            fmt,
                            "--output",
                            str(path),
                            "--threads",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    for fmt, path in (
                        ("speedscope", base.with_suffix(".speedscope.json")),
                        ("raw", base.with_suffix(".collapsed.txt")),
                    )
                ]
                time.sleep(1.0)  # let py-spy attach before the workload starts
                res = run_client("podstack", server, workload, sz, work, work, {"verify": False})
                for p in spies:
                    p.send_signal(2)  # SIGINT: py-spy writes its output and exits
                for p in spies:
                    p.wait(30)
            finally:
                server.stop()
        print({k: v for k, v in res.items() if not isinstance(v, dict)})
        print(summarize(base.with_suffix(".collapsed.txt")))
        print(f"\nprofiles in {out_dir}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

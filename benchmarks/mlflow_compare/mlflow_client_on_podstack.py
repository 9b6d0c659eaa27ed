"""The same MLflow client against two servers: MLflow's own ``mlflow server`` and Podstack's
MLflow-compatible API (issue 17's figures). W1 (metric logging), W2 (sequential versions) and
W5 (alias lookup) from ``mlflow_client_workloads.py``, unchanged, run in MLflow's venv with
``MLFLOW_TRACKING_URI`` pointing at each server in turn (plus ``MLFLOW_TRACKING_TOKEN`` for
Podstack). Goal: the client is at least 3x faster against Podstack.

    .venv/bin/python -m benchmarks.mlflow_compare.mlflow_client_on_podstack [sqlite|postgresql]

Environment: ``BENCH_QUICK=1`` and the other size knobs of ``sizes.py``; ``BENCH_CLIENT_WORKLOADS``
(default ``W1,W2,W5``). Prints one JSON document (per workload: both results and the ratio).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.mlflow_compare import databases, mlflow_env, podstack_env, sizes
from benchmarks.mlflow_compare.servers import ServerProcess, wait_machine_quiet

HERE = Path(__file__).resolve().parent
WORKLOADS = ("W1", "W2", "W5")
GOAL = 3.0


def _rate(workload: str, result: dict[str, Any]) -> float | None:
    """The figure compared: points/s (W1), versions/s (W2), lookups/s with threads (W5)."""
    if "error" in result:
        return None
    rate = (result.get("threaded") or {}).get("rate") if workload == "W5" else result.get("rate")
    return float(rate) if rate else None


def run_workload(
    server: ServerProcess, token: str | None, workload: str, sz: sizes.Sizes, workdir: Path
) -> dict[str, Any]:
    """One workload of ``mlflow_client_workloads.py`` in a fresh MLflow-venv process."""
    wdir = workdir / workload.lower()
    wdir.mkdir(parents=True, exist_ok=True)
    job = {
        "workload": workload,
        "url": server.url,
        "token": token,
        "server_pid": server.pid,
        "sizes": sz.as_dict(),
        "workdir": str(wdir),
        "shared_dir": str(workdir),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PODSTACK_", "MLFLOW_"))}
    if token:
        # How an MLflow client authenticates to Podstack: a Podstack API token as bearer.
        env["MLFLOW_TRACKING_TOKEN"] = token
    wait_machine_quiet(5)
    argv = [
        str(mlflow_env.venv_python()),
        str(HERE / "mlflow_client_workloads.py"),
        json.dumps(job),
    ]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=wdir, timeout=900)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 900 s"}
    (wdir / "client-stderr.log").write_text(out.stderr)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = "\n".join(out.stderr.splitlines()[-15:])
        return {"error": f"client exited {out.returncode} without a result:\n{tail}"}
    payload = json.loads(lines[-1])
    return payload["result"] if payload["ok"] else {"error": payload["error"]}


def _run_both(
    kind: str,
    workloads: tuple[str, ...],
    sz: sizes.Sizes,
    work: Path,
    per_server: dict[str, dict[str, Any]],
) -> None:
    """Each server in turn on a fresh database, the same client workloads against each."""
    for target in ("mlflow", "podstack"):
        tdir = work / target
        tdir.mkdir()
        with databases.backend(kind, tdir, target) as be:
            if target == "mlflow":
                server = mlflow_env.start_server(be.mlflow_url, tdir)
                token = None
            else:
                server = podstack_env.start_server(be.podstack_url, tdir)
                token = podstack_env.ADMIN_TOKEN
            try:
                per_server[target] = {
                    w: run_workload(server, token, w, sz, tdir) for w in workloads
                }
            finally:
                server.stop()


def compare(kind: str = "sqlite", workloads: tuple[str, ...] = WORKLOADS) -> dict[str, Any]:
    mlflow_env.ensure_venv(lambda m: print(m, file=sys.stderr))
    sz = sizes.from_env()
    work = Path(tempfile.mkdtemp(prefix="podstack-mlflow-client-"))
    results: dict[str, Any] = {"kind": kind, "sizes": sz.as_dict(), "workloads": {}}
    per_server: dict[str, dict[str, Any]] = {}
    try:
        _run_both(kind, workloads, sz, work, per_server)
    finally:
        if os.environ.get("BENCH_KEEP", "") in ("", "0"):
            shutil.rmtree(work, ignore_errors=True)
    for w in workloads:
        a, b = per_server["mlflow"][w], per_server["podstack"][w]
        ra, rb = _rate(w, a), _rate(w, b)
        ratio = round(rb / ra, 2) if ra and rb else None
        results["workloads"][w] = {
            "mlflow_server": a,
            "podstack_server": b,
            "rate_mlflow_server": ra,
            "rate_podstack_server": rb,
            "speedup": ratio,
            "goal": GOAL,
            "meets_goal": ratio is not None and ratio >= GOAL,
            "checks_ok": all((r.get("check") or {}).get("ok", False) for r in (a, b)),
        }
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return results


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    kind = args[0] if args else "sqlite"
    chosen = os.environ.get("BENCH_CLIENT_WORKLOADS", ",".join(WORKLOADS))
    workloads = tuple(w.strip() for w in chosen.split(",") if w.strip() in WORKLOADS)
    out = compare(kind, workloads)
    print(json.dumps(out, indent=2, default=str))
    for w, r in out["workloads"].items():
        print(
            f"{w}: MLflow client -> mlflow server {r['rate_mlflow_server']}/s, -> Podstack "
            f"{r['rate_podstack_server']}/s: {r['speedup']}x (goal {GOAL}x); checks ok: "
            f"{r['checks_ok']}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()

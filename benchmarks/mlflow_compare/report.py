"""The comparison table: both products, our speed-up per metric, and each of the issue's
targets as pass/fail. Printed, written as JSON to benchmarks/results/ and as
benchmarks/RESULTS.md.

"Speed-up" is always "how many times better we are": rate ours/MLflow for throughputs,
MLflow/ours for latencies. Targets are judged on SQLite (the issue's setting); PostgreSQL rows
carry the same checks for information.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
RSS_LIMIT_MIB = 64


@dataclass
class Row:
    backend: str
    workload: str
    metric: str
    mlflow: str
    ours: str
    speedup: str
    target: str
    status: str  # PASS | FAIL | n/a | info
    cpu_mlflow: str = ""
    cpu_ours: str = ""


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        v = f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return f"{v}{unit}"


def _cpu(res: dict[str, Any] | None) -> str:
    if not isinstance(res, dict) or "client_cpu_s" not in res:
        return ""
    other = res.get("other_cpu_s")
    tail = "" if other is None else f" / {other:.2f}"
    return f"{res['client_cpu_s']:.2f} / {res['server_cpu_s']:.2f}{tail}"


def _err(res: Any) -> str | None:
    if isinstance(res, dict) and "error" in res:
        return "error: " + str(res["error"]).splitlines()[0][:80]
    return None


def _status(ok: bool | None, binding: bool) -> str:
    if ok is None:
        return "n/a"
    if not binding:
        return "info:" + ("pass" if ok else "fail")
    return "PASS" if ok else "FAIL"


def _cmp_row(
    backend: str,
    binding: bool,
    wl: str,
    metric: str,
    m_res: Any,
    o_res: Any,
    path: tuple[str, ...],
    higher_is_better: bool,
    need: float | None,
    unit: str = "",
    cpu_path: tuple[str, ...] = (),
) -> Row:
    mv, ov = _get(m_res, *path), _get(o_res, *path)
    speed: float | None = None
    if isinstance(mv, int | float) and isinstance(ov, int | float) and mv > 0 and ov > 0:
        speed = ov / mv if higher_is_better else mv / ov
    ok = None if speed is None or need is None else speed >= need
    return Row(
        backend,
        wl,
        metric,
        _err(m_res) or _fmt(mv, unit),
        _err(o_res) or _fmt(ov, unit),
        "-" if speed is None else f"{speed:.2f}x",
        "" if need is None else f">= {need:g}x",
        _status(ok, binding) if need is not None else "info",
        _cpu(_get(m_res, *cpu_path) if cpu_path else m_res),
        _cpu(_get(o_res, *cpu_path) if cpu_path else o_res),
    )


def machine_noise(results: dict[str, Any]) -> float | None:
    """Average cores used by *other* processes during the measured sections (0 = clean)."""
    other = wall = 0.0

    def walk(d: Any) -> None:
        nonlocal other, wall
        if isinstance(d, dict):
            if "other_cpu_s" in d and "wall_s" in d:
                other += d["other_cpu_s"]
                wall += d["wall_s"]
            for v in d.values():
                walk(v)

    walk(results.get("runs"))
    return round(other / wall, 2) if wall else None


def build_rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    cp_fsync = _get(results, "copy_limit", "cp_fsync", "rate")
    for backend, by_product in results.get("runs", {}).items():
        binding = backend == "sqlite"
        m, o = by_product.get("mlflow", {}), by_product.get("podstack", {})

        def add(
            wl: str,
            metric: str,
            path: tuple[str, ...],
            hib: bool,
            need: float | None,
            unit: str = "",
            cpu_path: tuple[str, ...] = (),
            m=m,
            o=o,
            backend=backend,
            binding=binding,
        ) -> None:
            if wl not in m and wl not in o:
                return
            rows.append(
                _cmp_row(
                    backend,
                    binding,
                    wl,
                    metric,
                    m.get(wl),
                    o.get(wl),
                    path,
                    hib,
                    need,
                    unit,
                    cpu_path,
                )
            )

        add("W1", "points/s", ("rate",), True, 10)
        add("W2", "versions/s", ("rate",), True, 5)
        add("W3", "versions/s", ("rate",), True, 5)
        if "W3" in o or "W3" in m:
            ow, mw = o.get("W3") or {}, m.get("W3") or {}

            def w3c(r: dict[str, Any]) -> str:
                if not r:
                    return "-"
                if "error" in r:
                    return _err(r) or ""
                return f"exact={_fmt(r.get('exact'))} errors={r.get('errors')}"

            ok = None if "error" in ow else bool(ow.get("exact")) and ow.get("errors") == 0
            rows.append(
                Row(
                    backend,
                    "W3",
                    "exactly 1..N, 0 errors",
                    w3c(mw),
                    w3c(ow),
                    "-",
                    "exact, 0 errors",
                    _status(ok, binding),
                )
            )
        first_w4 = len(rows)
        add("W4", "label search p50 ms", ("label", "p50_ms"), False, 10)
        add("W4", "label search p95 ms", ("label", "p95_ms"), False, None)
        add("W4", "name-prefix search p50 ms", ("prefix", "p50_ms"), False, 10)
        add("W4", "name-prefix search p95 ms", ("prefix", "p95_ms"), False, None)
        _mark_capped(rows[first_w4:], m.get("W4"), o.get("W4"))
        rows.extend(_scale_rows(backend, binding, o))
        add(
            "W5", "sequential p50 ms", ("sequential", "p50_ms"), False, 10, cpu_path=("sequential",)
        )
        add(
            "W5",
            "sequential p95 ms",
            ("sequential", "p95_ms"),
            False,
            None,
            cpu_path=("sequential",),
        )
        add("W5", "threads req/s", ("threaded", "rate"), True, 10, cpu_path=("threaded",))
        for leg in ("upload", "download"):
            add("W6", f"{leg} MiB/s", (leg, "rate"), True, 3, cpu_path=(leg,))
            if "W6" in o:
                orate = _get(o["W6"], leg, "rate")
                ok = None if orate is None or not cp_fsync else orate >= 0.5 * cp_fsync
                frac = "-" if orate is None or not cp_fsync else f"{orate / cp_fsync:.0%}"
                rows.append(
                    Row(
                        backend,
                        "W6",
                        f"{leg} vs cp+fsync ({_fmt(cp_fsync)} MiB/s)",
                        "-",
                        frac,
                        "-",
                        ">= 50%",
                        _status(ok, binding),
                    )
                )
                orss, mrss = (
                    _get(o["W6"], leg, "rss_growth_mib"),
                    _get(m.get("W6"), leg, "rss_growth_mib"),
                )
                ok = None if orss is None else orss < RSS_LIMIT_MIB
                rows.append(
                    Row(
                        backend,
                        "W6",
                        f"{leg} server RSS growth MiB",
                        _fmt(mrss),
                        _fmt(orss),
                        "-",
                        f"< {RSS_LIMIT_MIB}",
                        _status(ok, binding),
                    )
                )
    return rows


def _mark_capped(rows: list[Row], m_res: Any, o_res: Any) -> None:
    """A search loop stopped by its time cap reports fewer samples: say how many."""
    for r in rows:
        kind = "label" if r.metric.startswith("label") else "prefix"
        for attr, res in (("mlflow", m_res), ("ours", o_res)):
            if _get(res, "capped", kind):
                n = _get(res, kind, "n")
                setattr(r, attr, f"{getattr(r, attr)} (n={n}, time cap)")


def _scale_rows(backend: str, binding: bool, ours: dict[str, Any]) -> list[Row]:
    scale = ours.get("W4_scale") or {}
    base = ours.get("W4") or {}
    rows: list[Row] = []
    if not scale:
        return rows
    top = max(scale, key=int)
    for level in sorted(scale, key=int):
        res = scale[level]
        for kind, label in (("label", "label"), ("prefix", "name-prefix")):
            p50, b50 = _get(res, kind, "p50_ms"), _get(base, kind, "p50_ms")
            growth = p50 / b50 if p50 and b50 else None
            need = level == top
            ok = None if growth is None or not need else growth <= 2.0
            rows.append(
                Row(
                    backend,
                    f"W4@{int(level):,}",
                    f"{label} p50 ms (ours only)",
                    "-",
                    _err(res) or _fmt(p50),
                    "-" if growth is None else f"{growth:.2f}x of 2k",
                    "<= 2x own 2k" if need else "",
                    _status(ok, binding) if need else "info",
                    "",
                    _cpu(res),
                )
            )
    return rows


HEAD = (
    "backend",
    "workload",
    "metric",
    "MLflow",
    "Podstack",
    "speed-up",
    "target",
    "status",
    "CPU c/s/o MLflow",
    "CPU c/s/o ours",
)


def _cells(r: Row) -> tuple[str, ...]:
    if "p95" in r.metric:  # same measured section as the p50 row above it
        r = Row(**{**r.__dict__, "cpu_mlflow": "", "cpu_ours": ""})
    return (
        r.backend,
        r.workload,
        r.metric,
        r.mlflow,
        r.ours,
        r.speedup,
        r.target,
        r.status,
        r.cpu_mlflow,
        r.cpu_ours,
    )


def text_table(rows: list[Row]) -> str:
    data = [HEAD, *(_cells(r) for r in rows)]
    widths = [max(len(row[i]) for row in data) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in data]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(esc(c) for c in _cells(r)) + " |" for r in rows]
    return "\n".join(out)


def summary_counts(rows: list[Row]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def write_json(results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results["other_cores_busy"] = machine_noise(results)
    stamp = results["started_at"].replace(":", "").replace("-", "")[:15]
    path = RESULTS_DIR / f"mlflow_compare-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    (RESULTS_DIR / "mlflow_compare-latest.json").write_text(
        json.dumps(results, indent=2, default=str)
    )
    return path


def _machine_lines(results: dict[str, Any]) -> list[str]:
    m = results.get("machine", {})
    v = results.get("versions", {})
    noise = machine_noise(results)
    warn = []
    if noise is not None and noise > 0.3:
        warn = [
            f"- **The machine was busy**: other processes used {noise} cores on average during "
            "the measured sections (of 2). Ratios from this run are noisy: rerun on a quiet box."
        ]
    return [
        *warn,
        f"- Date: {results.get('started_at')} (took {results.get('duration_s')} s)",
        f"- Machine: {m.get('nproc')} cores, {m.get('memory_gib')} GiB RAM, {m.get('cpu_model')}, "
        f"{m.get('platform')}",
        f"- Python {m.get('python')}; SQLite {v.get('sqlite')}; PostgreSQL {v.get('postgresql')}",
        f"- Load average at start / end: {results.get('loadavg_start')} / "
        f"{results.get('loadavg_end')}",
        f"- MLflow {v.get('mlflow')} (own venv, `mlflow server`, 1 worker, proxied artifacts) vs "
        f"Podstack {v.get('podstack')} (`podstack server`, 1 worker)",
    ]


def _floor_notes(results: dict[str, Any]) -> list[str]:
    """The HTTP floor (benchmarks/http_floor.py, run just before this module by `make bench`),
    next to the latency targets it bounds."""
    path = RESULTS_DIR / "http_floor.json"
    try:
        floor = json.loads(path.read_text())["p50_ms"]
    except (OSError, ValueError, KeyError):
        return []
    lines = [
        "- HTTP floor (`benchmarks/http_floor.py`, same machine, just before this run): an empty "
        f"`GET /healthz` through the SDK's HTTP path p50 {floor['healthz_sdk_light_path']:.2f} "
        f"ms, an authenticated no-database `GET /api/v1/me` {floor['me_sdk_light_path']:.2f} ms, "
        f"an alias lookup {floor['alias_sdk']:.2f} ms."
    ]
    for backend, by_product in (results.get("runs") or {}).items():
        if backend != "sqlite":
            continue
        w5 = _get(by_product, "mlflow", "W5", "sequential", "p50_ms")
        if w5 and w5 / 10 < floor["me_sdk_light_path"]:
            lines.append(
                f"- W5 (sqlite): 1/10 of MLflow's p50 is {w5 / 10:.2f} ms, below the "
                f"{floor['me_sdk_light_path']:.2f} ms an authenticated request that does no "
                "work takes here: no lookup behind this HTTP stack can reach it."
            )
    return lines


def write_markdown(
    results: dict[str, Any], rows: list[Row], renderer: Callable[[list[Row]], str] = markdown_table
) -> Path:
    cp = results.get("copy_limit") or {}
    sizes = results.get("sizes", {})
    notes = [
        "- Each product runs through its own official Python client (MLflow's `MlflowClient` in "
        "its own venv; our `MLOpsClient`), in a separate client process per workload, against a "
        "fresh database and a freshly started server that is idle before each workload.",
        "- Before each workload the run waits for the machine to be quiet (other processes "
        f"under 0.3 cores), at most {_get(results, 'quiet_wait_s', 'per_workload')} s per "
        f"workload and {_get(results, 'quiet_wait_s', 'per_suite')} s per product and backend: "
        "the same allowance for both products (it used to be one pool for the whole run, which "
        "the first suite, MLflow on SQLite, used up). The JSON keeps how busy the machine was "
        "before each workload (`machine_busy_cores_before`).",
        "- Speed-up = how many times better Podstack is (throughput ours/MLflow; latency "
        "MLflow/ours). Targets are binding on SQLite; PostgreSQL results are informational.",
        "- CPU c/s/o = CPU seconds in the measured section of the client process / the server "
        "(its whole process tree) / every other process on the machine. On 2 cores the client "
        "competes with the server; a large 'other' means the machine was busy and that row is "
        "noisy.",
        "- W4 at 2,000 models: both products create the models through their clients. The "
        "20,000/100,000 levels (ours only) are bulk-inserted straight into our database "
        "through the SQLAlchemy models of server/registry; the searches still go through the SDK.",
    ]
    notes.append(
        f"- Each W4 search loop stops after {sizes.get('w4_search_max_s')} s; '(n=..., time "
        "cap)' marks a p50/p95 from fewer than the planned searches (MLflow's label search on "
        "PostgreSQL takes seconds per query). Where the time goes on our side: "
        "benchmarks/PROFILE.md."
    )
    if cp:
        notes.append(
            f"- W6 physical limit on the same disk, {cp.get('size_mib'):.0f} MiB: `cp` "
            f"{_get(cp, 'cp', 'rate') or 0:.0f} MiB/s, `dd conv=fsync` "
            f"{_get(cp, 'cp_fsync', 'rate') or 0:.0f} MiB/s."
        )
    fsync_rate = _get(cp, "cp_fsync", "rate")
    for backend, by_product in (results.get("runs") or {}).items():
        up = _get(by_product, "mlflow", "W6", "upload", "rate")
        down = _get(by_product, "mlflow", "W6", "download", "rate")
        if fsync_rate and up and up > fsync_rate:
            notes.append(
                f"- W6 ({backend}): MLflow uploads at {up:.0f} MiB/s, faster than `cp` + fsync "
                f"({fsync_rate:.0f} MiB/s), i.e. it does not make the file durable before "
                "answering; 3x that is beyond what the disk can write durably."
            )
        elif fsync_rate and up and 3 * up > fsync_rate:
            notes.append(
                f"- W6 ({backend}): 3x MLflow's upload ({3 * up:.0f} MiB/s) is above `cp` + "
                f"fsync ({fsync_rate:.0f} MiB/s): our server makes every upload durable before "
                "answering, so that target is beyond this disk."
            )
        if fsync_rate and down and 3 * down > fsync_rate:
            notes.append(
                f"- W6 ({backend}): 3x MLflow's download ({3 * down:.0f} MiB/s) is above `cp` + "
                f"fsync ({fsync_rate:.0f} MiB/s): our SDK fsyncs a downloaded file before "
                "renaming it into place (MLflow's client does not), so that target is beyond "
                "this disk."
            )
    notes.extend(_floor_notes(results))
    if results.get("sizes_are_default") is False:
        notes.append(f"- NOT the issue's sizes (quick run): `{json.dumps(sizes)}`")
    errors = results.get("errors") or []
    text = "\n".join(
        [
            "# Benchmark results: Podstack vs MLflow",
            "",
            "Latest run of `make bench` (`benchmarks/mlflow_compare/`). Regenerated by each run.",
            "",
            *_machine_lines(results),
            "",
            renderer(rows),
            "",
            "Notes:",
            "",
            *notes,
            *(["", "Errors:", "", *[f"- {e}" for e in errors]] if errors else []),
            "",
        ]
    )
    RESULTS_MD.write_text(text)
    return RESULTS_MD


TIMING_START = "<!-- make-bench-timing -->"
TIMING_END = "<!-- /make-bench-timing -->"


def record_bench_timing(md: Path, lines: list[str], total_s: float) -> None:
    """Puts ``make bench``'s elapsed time per section (printed by benchmarks/run.py at the end)
    into RESULTS.md, replacing the block a previous run left there."""
    text = md.read_text()
    if TIMING_START in text:
        head, _, rest = text.partition(TIMING_START)
        _, _, tail = rest.partition(TIMING_END)
        text = head.rstrip("\n") + "\n" + tail.lstrip("\n")
    block = [
        TIMING_START,
        "",
        f"## `make bench` elapsed time: {total_s / 60:.1f} min ({total_s:.0f} s)",
        "",
        "Every benchmark of this `make bench` run, with the phases each reports (the MLflow "
        "venv install included; the budget is 15 minutes on a fresh clone). The comparison "
        "above runs at the issue's sizes; `artifacts_transfer` moves a 256 MiB file by default "
        "(`PODSTACK_BENCH_ARTIFACT_MB=2048` for issue 2's 2 GiB figure), `registry_search` and "
        "`ui_pages` work on 10,000 bulk-inserted models.",
        "",
        "```",
        *lines,
        "```",
        "",
        TIMING_END,
    ]
    md.write_text(text.rstrip("\n") + "\n\n" + "\n".join(block) + "\n")

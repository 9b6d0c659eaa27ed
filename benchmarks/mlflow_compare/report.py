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

from benchmarks.mlflow_compare.answers import WHAT_IS_CHECKED, repeat_values

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
    status: str  # PASS | FAIL | n/a | info | INVALID
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


def _spread(res: Any, path: tuple[str, ...], unit: str = "") -> str:
    """`` (min-max)`` of the repeats behind a median, if there were several."""
    vals = repeat_values(res, path)
    if len(vals) < 2:
        return ""
    return f" ({_fmt(min(vals))}-{_fmt(max(vals), unit)})"


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
    valid: bool | None = None,
) -> Row:
    """One metric of both products: medians (with the repeats' min-max), and the speed-up
    (median of medians, with the range of the paired repeats' ratios) only if ``valid``: a
    workload whose answers were not equal and correct on both sides gets no ratio."""
    mv, ov = _get(m_res, *path), _get(o_res, *path)
    speed: float | None = None
    if isinstance(mv, int | float) and isinstance(ov, int | float) and mv > 0 and ov > 0:
        speed = ov / mv if higher_is_better else mv / ov
    ratios = [
        (o / m if higher_is_better else m / o)
        for m, o in zip(repeat_values(m_res, path), repeat_values(o_res, path), strict=False)
        if m > 0 and o > 0
    ]
    if valid is False:
        return Row(
            backend,
            wl,
            metric,
            _err(m_res) or _fmt(mv, unit) + _spread(m_res, path, unit),
            _err(o_res) or _fmt(ov, unit) + _spread(o_res, path, unit),
            "-",
            "" if need is None else f">= {need:g}x",
            "INVALID",
            _cpu(_get(m_res, *cpu_path) if cpu_path else m_res),
            _cpu(_get(o_res, *cpu_path) if cpu_path else o_res),
        )
    ok = None if speed is None or need is None else speed >= need
    spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
    return Row(
        backend,
        wl,
        metric,
        _err(m_res) or _fmt(mv, unit) + _spread(m_res, path, unit),
        _err(o_res) or _fmt(ov, unit) + _spread(o_res, path, unit),
        "-" if speed is None else f"{speed:.2f}x{spread}",
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
        if isinstance(d, list):
            for v in d:
                walk(v)
        if isinstance(d, dict):
            if "_repeats" in d:  # a median: count the repeats it summarises instead
                walk(d["_repeats"])
                return
            if "other_cpu_s" in d and "wall_s" in d:
                other += d["other_cpu_s"]
                wall += d["wall_s"]
            for v in d.values():
                walk(v)

    walk(results.get("runs"))
    return round(other / wall, 2) if wall else None


def disk_limit(results: dict[str, Any]) -> tuple[float | None, str]:
    """The W6 anchor: the fastest durable copy measured in this run, and how it was made."""
    cp = results.get("copy_limit") or {}
    limit = cp.get("limit") or {}
    return limit.get("rate"), str(limit.get("method", ""))


def _answers_row(backend: str, binding: bool, wl: str, v: dict[str, Any] | None) -> Row:
    if not v:
        return Row(backend, wl, "answers", "-", "-", "-", "checked", "n/a")
    runs = ", ".join(f"{p} x{n}" for p, n in (v.get("runs") or {}).items())
    if v.get("valid"):
        return Row(
            backend,
            wl,
            "answers",
            "equal and correct",
            f"runs: {runs}",
            "-",
            v.get("checked", ""),
            "PASS",
        )
    why = "; ".join(v.get("problems") or [])[:200]
    return Row(backend, wl, "answers", why, f"runs: {runs}", "-", v.get("checked", ""), "INVALID")


def build_rows(results: dict[str, Any]) -> list[Row]:
    """Every metric of every workload. A workload whose answers were not equal and correct on
    both sides in every repeat (``results["validity"]``) is INVALID: its rows show the medians
    but no speed-up and no PASS/FAIL."""
    rows: list[Row] = []
    limit, limit_how = disk_limit(results)
    validity = results.get("validity") or {}
    for backend, by_product in results.get("runs", {}).items():
        binding = backend == "sqlite"
        m, o = by_product.get("mlflow", {}), by_product.get("podstack", {})
        checks = validity.get(backend) or {}

        def valid(wl: str, checks: dict[str, Any] = checks) -> bool | None:
            v = checks.get(wl)
            return None if v is None else bool(v.get("valid"))

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
                    valid(wl),
                )
            )

        def answers(wl: str, m=m, o=o, backend=backend, binding=binding, checks=checks) -> None:
            if wl in m or wl in o:
                rows.append(_answers_row(backend, binding, wl, checks.get(wl)))

        add("W1", "points/s", ("rate",), True, 10)
        answers("W1")
        add("W2", "versions/s", ("rate",), True, 5)
        answers("W2")
        add("W3", "versions/s", ("rate",), True, 5)
        answers("W3")
        first_w4 = len(rows)
        add("W4", "label search p50 ms", ("label", "p50_ms"), False, 10)
        add("W4", "label search p95 ms", ("label", "p95_ms"), False, None)
        add("W4", "name-prefix search p50 ms", ("prefix", "p50_ms"), False, 10)
        add("W4", "name-prefix search p95 ms", ("prefix", "p95_ms"), False, None)
        _mark_capped(rows[first_w4:], m.get("W4"), o.get("W4"))
        answers("W4")
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
        answers("W5")
        for leg in ("upload", "download"):
            add("W6", f"{leg} MiB/s", (leg, "rate"), True, 3, cpu_path=(leg,))
            if "W6" in o:
                orate = _get(o["W6"], leg, "rate")
                ok = None if orate is None or not limit else orate >= 0.5 * limit
                frac = "-" if orate is None or not limit else f"{orate / limit:.0%}"
                rows.append(
                    Row(
                        backend,
                        "W6",
                        f"{leg} vs fastest durable copy ({_fmt(limit)} MiB/s, {limit_how})",
                        "-",
                        frac,
                        "-",
                        ">= 50%",
                        "INVALID" if valid("W6") is False else _status(ok, binding),
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
        answers("W6")
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
            wrong = _get(res, "check", "ok") is not True
            rows.append(
                Row(
                    backend,
                    f"W4@{int(level):,}",
                    f"{label} p50 ms (ours only)",
                    "-",
                    _err(res) or _fmt(p50),
                    "-" if growth is None else f"{growth:.2f}x of 2k",
                    "<= 2x own 2k" if need else "",
                    "INVALID" if wrong else (_status(ok, binding) if need else "info"),
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


def _w6_notes(results: dict[str, Any]) -> list[str]:
    """The W6 anchor as measured in this run, and only what was measured: how fast each way of
    making a durable copy of the same file on the same disk went, the fastest taken as the
    limit. Durability itself is not inferred from speed (see the last note)."""
    cp = results.get("copy_limit") or {}
    limit, how = disk_limit(results)
    if not limit:
        return []
    ways = ", ".join(
        f"{k} {v['rate']:.0f} MiB/s (runs: {', '.join(f'{x:.0f}' for x in v.get('runs', []))})"
        for k, v in (cp.get("durable") or {}).items()
    )
    plain = _get(cp, "cp", "rate")
    out = [
        f"- W6 disk limit, measured in this run before and after the suites on the same "
        f"filesystem with the same {cp.get('size_mib', 0):.0f} MiB file: {ways}. The fastest "
        f"durable copy, {limit:.0f} MiB/s ({how}), is the limit the '>= 50%' rows use; plain "
        f"`cp` (page cache only, not durable) {plain or 0:.0f} MiB/s."
    ]
    for backend, by_product in (results.get("runs") or {}).items():
        for leg in ("upload", "download"):
            mr = _get(by_product, "mlflow", "W6", leg, "rate")
            if mr and 3 * mr > limit:
                out.append(
                    f"- W6 ({backend}): 3x MLflow's {leg} ({3 * mr:.0f} MiB/s) is above the "
                    f"fastest durable copy measured here ({limit:.0f} MiB/s)."
                )
    out.append(
        "- Durability is established by reading the code, not by speed: our server fsyncs "
        "every upload (file and directory) before answering (`UploadSink.commit` in "
        "`src/podstack/server/artifacts/store.py`; `tests/reliability/test_crash_safety.py` "
        "SIGKILLs a server mid-upload and checks nothing half-written is visible), and our SDK "
        "fsyncs a download before renaming it into place (`src/podstack/client/transfer.py`). "
        "Whether MLflow makes a file durable before answering is not measured here and not "
        "claimed."
    )
    return out


def write_markdown(
    results: dict[str, Any], rows: list[Row], renderer: Callable[[list[Row]], str] = markdown_table
) -> Path:
    sizes = results.get("sizes", {})
    reps = results.get("repeats") or 1
    orders = results.get("order") or {}
    first = next(iter(orders.values()), [])
    notes = [
        f"- Every suite (fresh database, fresh server, all workloads) ran {reps} times per "
        "product and backend, the products taking turns to go first (order per backend: "
        + " / ".join(" then ".join(o) for o in first)
        + "). Each cell is the median of the runs, with their min-max in brackets; the "
        "speed-up is the ratio of the medians, with the range of the run-by-run ratios.",
        "- Answers are checked on both sides before any ratio is printed (the 'answers' row of "
        "each workload): "
        + "; ".join(f"{w} {what}" for w, what in WHAT_IS_CHECKED.items())
        + ". Both products' fingerprints of their answers must also be equal (per search query "
        "for W4, over the queries both ran). A workload that fails is marked INVALID and "
        "gets no speed-up and no PASS/FAIL.",
        "- W4 name prefix: MLflow runs `name LIKE 'bench-model-0012%'`; our API has no prefix "
        "filter, so we run `q=bench-model-0012` (name or description contains). With these "
        "names (`bench-model-` + six digits) and no descriptions both select the same 100 "
        "models, and the run checks it: every answer is compared with the expected set and "
        "with the other product's answer for the same query.",
        "- W1 sends the same points, timestamps included, from both clients (MLflow's client "
        "always sends one; ours now does too), and reads every point back.",
        "- Each product runs through its own official Python client (MLflow's `MlflowClient` in "
        "its own venv; our `MLOpsClient`), in a separate client process per workload, against a "
        "fresh database and a freshly started server that is idle before each workload.",
        "- Before each workload the run waits for the machine to be quiet (other processes "
        f"under 0.3 cores), at most {_get(results, 'quiet_wait_s', 'per_workload')} s per "
        f"workload and {_get(results, 'quiet_wait_s', 'per_suite')} s per suite run: "
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
    notes.extend(_w6_notes(results))
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
    # The other benchmarks' sections (benchmarks/sections.py) survive this rewrite.
    from benchmarks.sections import blocks

    kept = blocks(RESULTS_MD.read_text()) if RESULTS_MD.exists() else []
    RESULTS_MD.write_text(text + "".join(f"\n{b}\n" for b in kept))
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

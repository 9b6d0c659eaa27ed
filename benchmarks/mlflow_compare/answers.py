"""Repeats and answers: folds a workload's repeated runs into one result (medians, with the
repeats kept for the spread) and decides whether a workload's figures may be compared at all.

A speed-up only means something if both products did the same work and got it right. Each
client checks its own answers (``result["check"]``: W1 every point stored with its value, step
and timestamp; W2/W3 versions exactly 1..N; W4 every search's result set; W5 0 errors and
always the aliased version; W6 the downloaded file's sha256) and returns fingerprints of them;
here both products' fingerprints are compared across every repeat. A workload that fails any
of this is invalid and the report prints no ratio for it.
"""

from __future__ import annotations

import statistics
from typing import Any

# The fingerprint fields of each workload's ``check`` that must be equal on both sides.
SAME_ON_BOTH_SIDES: dict[str, tuple[str, ...]] = {
    "W1": ("digest",),
    "W2": ("digest",),
    "W3": ("digest",),
    "W4": ("label_digests", "prefix_digests"),
    "W5": ("version",),
    "W6": ("sha256",),
}
WHAT_IS_CHECKED: dict[str, str] = {
    "W1": "stored = points sent (values, steps, timestamps)",
    "W2": "versions exactly 1..N",
    "W3": "versions exactly 1..N, 0 errors",
    "W4": "identical, correct result set per query",
    "W5": "0 errors, always the aliased version",
    "W6": "sha256 of the download = the upload",
}


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def median_tree(values: list[Any]) -> Any:
    """Element-wise median of same-shaped results: numbers -> median, booleans -> all true,
    dicts -> recursively, anything else -> the first one's."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    first = present[0]
    if isinstance(first, dict):
        keys = list(first)
        for v in present[1:]:
            if isinstance(v, dict):
                keys += [k for k in v if k not in keys]
        return {k: median_tree([v.get(k) for v in present if isinstance(v, dict)]) for k in keys}
    if all(isinstance(v, bool) for v in present):
        return all(present)
    if all(_is_num(v) for v in present):
        return statistics.median(present)
    return first


def combine(repeats: list[dict[str, Any] | None]) -> dict[str, Any]:
    """One suite result (``run_suite``'s shape) from its repeats: per workload the medians, the
    repeats themselves under ``_repeats`` and, if any repeat failed, the first error."""
    out: dict[str, Any] = {}
    suites = [r for r in repeats if isinstance(r, dict)]
    if not suites:
        return {"error": "no run"}
    if all("error" in s and len(s) == 1 for s in suites):
        return suites[0]
    keys: list[str] = []
    for s in suites:
        keys += [k for k in s if k not in keys]
    for key in keys:
        runs = [s.get(key) for s in suites if key in s]
        if key == "W4_scale":  # ours only, measured in the first run only
            out[key] = next((r for r in runs if r), {})
            continue
        if not key.startswith("W"):
            out[key] = runs[0] if len(runs) == 1 else runs
            continue
        errors = [r for r in runs if isinstance(r, dict) and "error" in r]
        if errors:
            out[key] = {**errors[0], "_repeats": runs}
            continue
        merged = median_tree(runs)
        checks = [r.get("check") for r in runs if isinstance(r, dict)]
        if all(isinstance(c, dict) for c in checks) and checks:
            merged["check"] = {
                **checks[0],
                "ok": all(c.get("ok") is True for c in checks),
                "problems": sorted({p for c in checks for p in c.get("problems", [])}),
            }
        merged["_repeats"] = runs
        out[key] = merged
    return out


def repeat_values(res: Any, path: tuple[str, ...]) -> list[float]:
    """The value at ``path`` in each repeat of a combined workload result."""
    out: list[float] = []
    for r in (res or {}).get("_repeats", []) if isinstance(res, dict) else []:
        v: Any = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if _is_num(v):
            out.append(float(v))
    return out


def _prefix_equal(a: list[Any], b: list[Any]) -> bool:
    """Equal over the queries both ran (a time-capped search loop runs fewer)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def validity(workload: str, by_product: dict[str, list[Any]]) -> dict[str, Any]:
    """Whether ``workload``'s figures may be compared: every repeat of every product ran,
    passed its own answer check, and answered the same as every other (fingerprints in
    SAME_ON_BOTH_SIDES). Returns ``{"valid": bool, "checked": ..., "problems": [...]}``."""
    problems: list[str] = []
    seen: list[tuple[str, dict[str, Any]]] = []
    for product, runs in by_product.items():
        for i, res in enumerate(runs, 1):
            where = f"{product} run {i}"
            if not isinstance(res, dict):
                problems.append(f"{where}: did not run")
                continue
            if "error" in res:
                problems.append(f"{where}: error {str(res['error']).splitlines()[0][:100]}")
                continue
            check = res.get("check")
            if not isinstance(check, dict):
                problems.append(f"{where}: answers not checked")
                continue
            if check.get("ok") is not True:
                why = "; ".join(check.get("problems") or ["check did not pass"])
                problems.append(f"{where}: {why}")
            seen.append((where, check))
    for field in SAME_ON_BOTH_SIDES.get(workload, ()):
        if not seen:
            break
        ref_where, ref = seen[0]
        for where, check in seen[1:]:
            a, b = ref.get(field), check.get(field)
            same = _prefix_equal(a, b) if isinstance(a, list) and isinstance(b, list) else a == b
            if not same:
                problems.append(f"{where} answered differently from {ref_where} ({field})")
    return {
        "valid": not problems,
        "checked": WHAT_IS_CHECKED.get(workload, ""),
        "runs": {p: len(r) for p, r in by_product.items()},
        "problems": problems,
    }

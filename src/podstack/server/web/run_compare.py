"""Compare runs: overlaid metric charts (one line per run, the same colour on every chart),
a parallel-coordinates plot of params against a metric, a scatter plot, and the params /
final metrics / tags / datasets side by side with differences highlighted.

The selection lives in the URL (``/runs/compare?runs=<id>,<id>``), so a comparison can be
shared. The data comes from ``tracking.compare``; this module only lays it out (the two plots
are server-rendered SVG, readable without JavaScript, with tables beside them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import Response

from podstack.server.registry import service as registry
from podstack.server.tracking import compare as run_compare
from podstack.server.web.core import ViewerPage, WebRoute

router = APIRouter(route_class=WebRoute, include_in_schema=False)
# Twenty distinguishable colours: a run keeps its colour on every chart and plot of the page.
PALETTE = (
    "#4f46e5", "#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#ec4899", "#14b8a6",
    "#64748b", "#84cc16", "#1e3a8a", "#b45309", "#065f46", "#9d174d", "#7c2d12", "#0369a1",
    "#a16207", "#4d7c0f", "#6d28d9", "#be123c",
)  # fmt: skip
MAX_AXES = 8
# SVG geometry (user units; the SVG scales to its box).
W, H = 900, 380
PAD_L, PAD_R, PAD_T, PAD_B = 70, 40, 30, 50


@dataclass
class Axis:
    label: str
    values: list[Any]  # one per run, None when the run has none
    numeric: bool
    lo: float = 0.0
    hi: float = 1.0
    categories: tuple[str, ...] = ()

    def pos(self, v: Any) -> float | None:
        """0..1 along the axis (0 = bottom/left), None for a missing value."""
        if v is None:
            return None
        if self.numeric:
            return 0.5 if self.hi == self.lo else (float(v) - self.lo) / (self.hi - self.lo)
        if len(self.categories) == 1:
            return 0.5
        return self.categories.index(str(v)) / (len(self.categories) - 1)

    def ticks(self) -> list[tuple[float, str]]:
        if self.numeric:
            if self.hi == self.lo:
                return [(0.5, _fmt(self.lo))]
            return [(i / 4, _fmt(self.lo + (self.hi - self.lo) * i / 4)) for i in range(5)]
        return [(self.pos(c) or 0.0, c[:18]) for c in self.categories]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _axis(label: str, raw: list[Any]) -> Axis:
    present = [v for v in raw if v is not None]
    nums = [_number(v) for v in present]
    if present and all(n is not None for n in nums):
        vals = [_number(v) for v in raw]
        finite = [n for n in nums if n is not None]
        return Axis(label, vals, True, min(finite), max(finite))
    cats = tuple(sorted({str(v) for v in present}))
    return Axis(label, [None if v is None else str(v) for v in raw], False, categories=cats)


def _value(run: Any, spec: str) -> Any:
    kind, _, key = spec.partition(":")
    if kind == "param":
        return run.params.get(key)
    v = run.metrics.get(key)
    return None if v is None or not math.isfinite(v) else v


def _parallel(cmp: run_compare.RunComparison, keys: list[str], metric: str) -> dict[str, Any]:
    axes = [_axis(k, [r.params.get(k) for r in cmp.runs]) for k in keys]
    if metric:
        axes.append(_axis(metric, [_value(r, f"metric:{metric}") for r in cmp.runs]))
    if not axes:
        return {"axes": [], "lines": []}
    span = (W - PAD_L - PAD_R) / max(1, len(axes) - 1)
    xs = [PAD_L + i * span if len(axes) > 1 else W / 2 for i in range(len(axes))]

    def y(p: float) -> float:
        return H - PAD_B - p * (H - PAD_T - PAD_B)

    lines = []
    for i, run in enumerate(cmp.runs):
        pts = [
            (round(xs[j], 1), round(y(p), 1))
            for j, a in enumerate(axes)
            if (p := a.pos(a.values[i])) is not None
        ]
        lines.append({"run": run, "color": PALETTE[i], "points": pts})
    return {
        "axes": [
            {
                "x": round(xs[j], 1),
                "label": a.label,
                "ticks": [(round(y(p), 1), t) for p, t in a.ticks()],
                "is_metric": bool(metric) and j == len(axes) - 1,
            }
            for j, a in enumerate(axes)
        ],
        "lines": lines,
        "top": PAD_T,
        "bottom": H - PAD_B,
    }


def _scatter(cmp: run_compare.RunComparison, sx: str, sy: str) -> dict[str, Any]:
    if not sx or not sy:
        return {"points": []}
    ax = _axis(sx.partition(":")[2], [_value(r, sx) for r in cmp.runs])
    ay = _axis(sy.partition(":")[2], [_value(r, sy) for r in cmp.runs])

    def px(p: float) -> float:
        return PAD_L + 10 + p * (W - PAD_L - PAD_R - 20)

    def py(p: float) -> float:
        return H - PAD_B - 10 - p * (H - PAD_T - PAD_B - 20)

    points = []
    for i, run in enumerate(cmp.runs):
        p, q = ax.pos(ax.values[i]), ay.pos(ay.values[i])
        if p is not None and q is not None:
            points.append(
                {
                    "run": run,
                    "color": PALETTE[i],
                    "x": round(px(p), 1),
                    "y": round(py(q), 1),
                    "xv": ax.values[i],
                    "yv": ay.values[i],
                }
            )
    return {
        "points": points,
        "x_label": sx,
        "y_label": sy,
        "x_ticks": [(round(px(p), 1), t) for p, t in ax.ticks()],
        "y_ticks": [(round(py(p), 1), t) for p, t in ay.ticks()],
        "left": PAD_L,
        "right": W - PAD_R,
        "top": PAD_T,
        "bottom": H - PAD_B,
    }


def _charts(cmp: run_compare.RunComparison, colors: dict[str, str]) -> list[dict[str, Any]]:
    names = {r.id: r.name or r.id for r in cmp.runs}
    charts = []
    for key in cmp.metric_keys:
        series = [
            {
                "run_id": s.run_id,
                "label": names[s.run_id],
                "color": colors[s.run_id],
                "steps": s.steps,
                "seconds": s.seconds,
                "times": [int(t.timestamp() * 1000) for t in s.times],
                "values": s.values,
            }
            for s in cmp.histories.get(key, [])
        ]
        if series:
            charts.append({"key": key, "series": series})
    return charts


@router.get("/runs/compare")
def compare_runs_page(
    ctx: ViewerPage,
    runs: Annotated[list[str], Query()] = [],  # noqa: B006
    pc: Annotated[list[str], Query()] = [],  # noqa: B006
    pcm: str = "",
    sx: str = "",
    sy: str = "",
    diff: str = "",
) -> Response:
    with ctx.read() as s:
        cmp = run_compare.compare_runs(s, runs)
        produced = registry.versions_of_runs(s, [r.id for r in cmp.runs])
    # Versions these runs produced, by model: a link to compare them when there are several.
    by_model: dict[str, list[int]] = {}
    for model, version, _ in produced:
        by_model.setdefault(model, []).append(version)
    version_links = [
        (
            model,
            nums,
            f"/models/{quote(model, safe='')}/compare?" + "&".join(f"v={n}" for n in nums[:5])
            if len(nums) > 1
            else f"/models/{quote(model, safe='')}/versions/{nums[0]}",
        )
        for model, nums in sorted(by_model.items())
    ]
    colors = {r.id: PALETTE[i] for i, r in enumerate(cmp.runs)}
    # Defaults: the params that differ (they explain the metric), against the first metric.
    differing = [k for k in cmp.param_keys if k in cmp.differing["params"]]
    axes = [k for k in pc if k in cmp.param_keys][:MAX_AXES] or differing[:6] or cmp.param_keys[:6]
    metric_keys = sorted({k for r in cmp.runs for k in r.metrics})
    pc_metric = pcm if pcm in metric_keys else (metric_keys[0] if metric_keys else "")
    x_choices = [f"param:{k}" for k in cmp.param_keys] + [f"metric:{k}" for k in metric_keys]
    y_choices = [f"metric:{k}" for k in metric_keys]
    # Default x: the first differing numeric param (a trend reads best on a numeric axis).
    numeric = [k for k in axes if _axis(k, [r.params.get(k) for r in cmp.runs]).numeric]
    default_x = (numeric or axes or [""])[0]
    scatter_x = sx if sx in x_choices else (f"param:{default_x}" if default_x else "")
    if not scatter_x and x_choices:
        scatter_x = x_choices[0]
    scatter_y = sy if sy in y_choices else (y_choices[0] if y_choices else "")
    ids = ",".join(r.id for r in cmp.runs)
    return ctx.render(
        "experiments/compare_runs.html",
        section="experiments",
        cmp=cmp,
        runs=cmp.runs,
        colors=colors,
        ids=ids,
        charts=_charts(cmp, colors),
        parallel=_parallel(cmp, axes, pc_metric),
        pc_axes=axes,
        pc_metric=pc_metric,
        metric_keys=metric_keys,
        scatter=_scatter(cmp, scatter_x, scatter_y),
        scatter_x=scatter_x,
        scatter_y=scatter_y,
        x_choices=x_choices,
        y_choices=y_choices,
        only_diffs=diff == "1",
        version_links=version_links,
        svg_w=W,
        svg_h=H,
    )

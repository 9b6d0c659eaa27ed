"""Compare model versions: metric differences, parameter changes and overlaid metric charts.
The selection lives in the URL (``/models/<name>/compare?v=1&v=3``), so it can be shared."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from podstack.errors import ValidationFailed
from podstack.schemas import registry as rsch
from podstack.server.registry import service as registry
from podstack.server.registry import views as registry_views
from podstack.server.web.core import ViewerPage, WebRoute

router = APIRouter(route_class=WebRoute, include_in_schema=False)
MAX_POINTS = 500


def _charts(cmp: rsch.VersionComparison) -> list[dict[str, Any]]:
    charts = []
    for key, per_version in sorted(cmp.histories.items()):
        series = [
            {
                "label": f"v{n}",
                "points": [
                    [step, value if math.isfinite(value) else None]
                    for step, value in zip(s.steps, s.values, strict=False)
                ],
            }
            for n, s in sorted(per_version.items())
        ]
        if series:
            charts.append({"key": key, "series": series})
    return charts


@router.get("/models/{name}/compare")
def compare_page(
    ctx: ViewerPage,
    name: str,
    v: Annotated[list[str], Query()] = [],  # noqa: B006
) -> Response:
    refs = list(dict.fromkeys(x.strip() for x in v if x.strip()))
    # The oldest selected version is the baseline, so differences read as "what changed since".
    refs.sort(key=lambda r: (0, int(r)) if r.isdigit() else (1, 0))
    with ctx.read() as s:
        m = registry.get_model(s, name)
        _, all_versions, _ = registry.list_versions(s, name, limit=1000)
        numbers = sorted((mv.version for mv in all_versions), reverse=True)
        if len(refs) < 2:
            raise ValidationFailed(
                "Select at least two versions to compare (tick their boxes on the model page).",
                {"versions": refs},
            )
        model_name = m.name
        cmp = registry_views.compare_versions(s, model_name, refs, max_points=MAX_POINTS)
    return ctx.render(
        "registry/compare.html",
        section="registry",
        model_name=model_name,
        cmp=cmp,
        rows=cmp.metrics,
        cvs=cmp.versions,
        charts=_charts(cmp),
        numbers=numbers,
        selected={cv.version for cv in cmp.versions},
    )

"""Experiments: the list, and one experiment's runs table (sortable, filterable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import ValidationError

from podstack.errors import PodstackError
from podstack.schemas import tracking as sch
from podstack.server.tracking import service as tracking
from podstack.server.web.core import ViewerPage, WebRoute

router = APIRouter(route_class=WebRoute, include_in_schema=False)
EXPERIMENTS_PAGE = 50
RUNS_PAGE = 50
# Wide tables stay readable: beyond these, columns are left to the run page.
MAX_PARAM_COLUMNS = 8
MAX_METRIC_COLUMNS = 8
RUN_STATUSES = [s.value for s in sch.RunStatus]


@router.get("/experiments")
def experiments_page(ctx: ViewerPage, q: str = "", page_token: str | None = None) -> Response:
    with ctx.read() as s:
        items, token = tracking.list_experiments(
            s, q=q or None, limit=EXPERIMENTS_PAGE, page_token=page_token
        )
        experiments = [sch.Experiment.model_validate(e) for e in items]
    template = "experiments/_list_table.html" if ctx.htmx else "experiments/list.html"
    return ctx.render(
        template,
        section="experiments",
        experiments=experiments,
        q=q,
        next_token=token,
        page_token=page_token,
    )


@dataclass(frozen=True)
class Sort:
    kind: str  # attribute | metric | param
    key: str
    desc: bool

    @property
    def token(self) -> str:
        return f"{self.kind}:{self.key}"

    @classmethod
    def parse(cls, text: str, direction: str) -> Sort:
        kind, _, key = (text or "").partition(":")
        if kind not in ("attribute", "metric", "param") or not key:
            kind, key = "attribute", "start_time"
        return cls(kind, key, direction != "asc")


def _columns(runs: list[sch.Run]) -> tuple[list[str], list[str]]:
    params = sorted({k for r in runs for k in r.params})
    metrics = sorted({k for r in runs for k in r.metrics})
    return params[:MAX_PARAM_COLUMNS], metrics[:MAX_METRIC_COLUMNS]


@router.get("/experiments/{ref}")
def experiment_page(
    ctx: ViewerPage,
    ref: str,
    filter: str = "",
    status: str = "",
    sort: str = "",
    dir: str = "desc",
    page_token: str | None = None,
) -> Response:
    order = Sort.parse(sort, dir)
    filter_error: str | None = None
    runs: list[sch.Run] = []
    token: str | None = None
    with ctx.read() as s:
        exp = sch.Experiment.model_validate(tracking.get_experiment(s, ref))
        try:
            search = sch.RunSearch(
                experiment_ids=[exp.id],
                filter=filter or None,
                status=sch.RunStatus(status) if status in RUN_STATUSES else None,
                order_by=sch.OrderBy(kind=order.kind, key=order.key, desc=order.desc),  # type: ignore[arg-type]
                limit=RUNS_PAGE,
                page_token=page_token,
            )
            runs, token = tracking.search_runs(s, search)
        except PodstackError as exc:
            filter_error = exc.message
        except ValidationError as exc:
            filter_error = "Invalid search: " + "; ".join(e["msg"] for e in exc.errors())
    param_cols, metric_cols = _columns(runs)
    query: dict[str, Any] = {"filter": filter, "status": status}
    template = "experiments/_runs_table.html" if ctx.htmx else "experiments/detail.html"
    return ctx.render(
        template,
        section="experiments",
        exp=exp,
        runs=runs,
        param_cols=param_cols,
        metric_cols=metric_cols,
        statuses=RUN_STATUSES,
        order=order,
        query=query,
        filter=filter,
        status=status,
        filter_error=filter_error,
        next_token=token,
        page_token=page_token,
        base_url=f"/experiments/{exp.id}",
        partial=ctx.htmx,
    )

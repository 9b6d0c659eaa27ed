"""Experiments: the list, and one experiment's runs table: sortable, filterable (the run filter
language, errors shown inline), chosen columns (any param, tag, or a metric's last/min/max),
grouped by a param or tag, and run selection for the compare view (``run_compare.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from podstack.errors import PodstackError
from podstack.schemas import tracking as sch
from podstack.server.permissions.levels import EXPERIMENT
from podstack.server.tracking import compare as runs_table
from podstack.server.tracking import service as tracking
from podstack.server.web.core import ViewerPage, WebRoute
from podstack.server.web.permissions import can_manage

router = APIRouter(route_class=WebRoute, include_in_schema=False)
EXPERIMENTS_PAGE = 50
RUNS_PAGE = 50
# Wide tables stay readable: beyond these, columns are left to the run page (until the user
# chooses columns with the column chooser).
MAX_PARAM_COLUMNS = 8
MAX_METRIC_COLUMNS = 8
RUN_STATUSES = [s.value for s in sch.RunStatus]
SORT_KINDS = ("attribute", *runs_table.COLUMN_KINDS)
# The column choice is remembered per experiment in a cookie named after the experiment's id
# (the page answers at its id and at its name, so the name, not the cookie's Path, tells
# experiments apart); no server state is needed.
COLUMNS_COOKIE = "podstack_run_columns_"
COLUMNS_COOKIE_DAYS = 180
GROUP_KEYS_RUNS = 200
MAX_COOKIE_CHARS = 3500


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
    kind: str  # attribute | metric | param | tag | metric_min | metric_max
    key: str
    desc: bool

    @property
    def token(self) -> str:
        return f"{self.kind}:{self.key}"

    @classmethod
    def parse(cls, text: str, direction: str) -> Sort:
        kind, _, key = (text or "").partition(":")
        if kind not in SORT_KINDS or not key:
            kind, key = "attribute", "start_time"
        return cls(kind, key, direction != "asc")


def _default_columns(runs: list[sch.Run]) -> list[runs_table.Column]:
    params = sorted({k for r in runs for k in r.params})[:MAX_PARAM_COLUMNS]
    metrics = sorted({k for r in runs for k in r.metrics})[:MAX_METRIC_COLUMNS]
    return [runs_table.Column("metric", m) for m in metrics] + [
        runs_table.Column("param", p) for p in params
    ]


def _column_groups(columns: list[runs_table.Column]) -> list[tuple[str, int]]:
    """Header groups over consecutive columns of the same family (metrics, params, tags)."""
    names = {"param": "Parameters", "tag": "Tags"}
    groups: list[tuple[str, int]] = []
    for c in columns:
        name = names.get(c.kind, "Metrics")
        if c.kind == "metric" and not any(x.kind.startswith("metric_") for x in columns):
            name = "Metrics (latest)"
        if groups and groups[-1][0] == name:
            groups[-1] = (name, groups[-1][1] + 1)
        else:
            groups.append((name, 1))
    return groups


def _saved_columns(request: Request, exp_id: str) -> list[str] | None:
    raw = request.cookies.get(COLUMNS_COOKIE + exp_id)
    if raw is None:
        return None
    return [unquote(c) for c in raw.split(",") if c]


def _group_filter(current: str, group: str, value: str | None) -> str | None:
    """The filter showing one group's runs: the current filter and ``<kind>s.`key` = 'value'``
    (None for the runs without the key, which the filter language cannot select)."""
    if value is None:
        return None
    kind, _, key = group.partition(":")
    quoted = value.replace("\\", "\\\\").replace("'", "\\'")
    cond = f"{kind}s.`{key}` = '{quoted}'"
    return f"{current} and {cond}" if current.strip() else cond


@router.get("/experiments/{ref}")
def experiment_page(
    ctx: ViewerPage,
    ref: str,
    filter: str = "",
    status: str = "",
    sort: str = "",
    dir: str = "desc",
    page_token: str | None = None,
    col: Annotated[list[str], Query()] = [],  # noqa: B006
    choose: str = "",
    group: str = "",
) -> Response:
    order = Sort.parse(sort, dir)
    filter_error: str | None = None
    column_error: str | None = None
    runs: list[sch.Run] = []
    cells: dict[str, dict[str, Any]] = {}
    groups: list[runs_table.Group] = []
    token: str | None = None
    # The chooser's form says "choose=1": its ticked boxes (maybe none, meaning the default
    # columns) replace the remembered choice; otherwise the remembered choice applies.
    with ctx.read() as s:
        exp = sch.Experiment.model_validate(tracking.get_experiment(s, ref))
        # Only when the runs table is a whole page (its htmx swaps have no tabs).
        manage = not ctx.htmx and can_manage(s, EXPERIMENT, exp.id)
        chosen_tokens = col if choose else _saved_columns(ctx.request, exp.id)
        try:
            chosen = runs_table.parse_columns(chosen_tokens or [])
        except PodstackError as exc:
            column_error, chosen = exc.message, []
        # The group-by choices: keys of the latest runs (a bounded read); the column chooser
        # loads every key of the experiment only when opened (experiment_columns below).
        group_keys = runs_table.column_choices(s, [exp.id], recent_runs=GROUP_KEYS_RUNS)
        try:
            if group:
                metric_keys = [c.key for c in chosen if c.kind.startswith("metric")]
                groups = runs_table.group_runs(
                    s,
                    experiment_ids=[exp.id],
                    filter_text=filter or None,
                    status=status if status in RUN_STATUSES else None,
                    group_by=group,
                    metric_keys=list(dict.fromkeys(metric_keys))
                    or group_keys["metrics"][:MAX_METRIC_COLUMNS],
                )
            else:
                page = runs_table.runs_page(
                    s,
                    experiment_ids=[exp.id],
                    filter_text=filter or None,
                    status=status if status in RUN_STATUSES else None,
                    sort_kind=order.kind,
                    sort_key=order.key,
                    desc=order.desc,
                    columns=chosen,
                    limit=RUNS_PAGE,
                    page_token=page_token,
                )
                runs, token = page.runs, page.next_token
                if not chosen:
                    cells = runs_table.table_cells(s, runs, _default_columns(runs))
                else:
                    cells = page.cells
        except PodstackError as exc:
            filter_error = exc.message
        except ValidationError as exc:
            filter_error = "Invalid search: " + "; ".join(e["msg"] for e in exc.errors())
    columns = chosen or _default_columns(runs)
    group_metrics = sorted({k for g in groups for k in g.metrics})
    group_filters = {g.value: _group_filter(filter, group, g.value) for g in groups}
    query: dict[str, Any] = {"filter": filter, "status": status}
    template = "experiments/_runs_table.html" if ctx.htmx else "experiments/detail.html"
    base_url = f"/experiments/{quote(exp.id, safe='')}"
    headers: dict[str, str] = {}
    value = ",".join(quote(c.token, safe=":") for c in chosen)
    # Browsers drop cookies over 4 KB silently: a choice that long is shown, not remembered.
    if choose and column_error is None and len(value) <= MAX_COOKIE_CHARS:
        headers["Set-Cookie"] = (
            f"{COLUMNS_COOKIE}{exp.id}={value}; Path=/experiments; "
            f"Max-Age={COLUMNS_COOKIE_DAYS * 86400}; SameSite=Lax; HttpOnly"
        )
    return ctx.render(
        template,
        headers=headers,
        section="experiments",
        exp=exp,
        can_manage=manage,
        runs=runs,
        cells=cells,
        columns=columns,
        column_groups=_column_groups(columns),
        chosen={c.token for c in chosen},
        group_keys=group_keys,
        column_error=column_error,
        groups=groups,
        group=group,
        group_metrics=group_metrics,
        group_filters=group_filters,
        statuses=RUN_STATUSES,
        order=order,
        query=query,
        filter=filter,
        status=status,
        filter_error=filter_error,
        next_token=token,
        page_token=page_token,
        base_url=base_url,
        partial=ctx.htmx,
        max_compare=runs_table.MAX_RUNS,
    )


@router.get("/experiments/{ref}/columns")
def experiment_columns(
    ctx: ViewerPage, ref: str, filter: str = "", status: str = "", group: str = ""
) -> Response:
    """The column chooser: every param, metric and tag key of the experiment's runs, the
    remembered choice ticked. A fragment for the chooser's dropdown, a page without htmx."""
    with ctx.read() as s:
        exp = sch.Experiment.model_validate(tracking.get_experiment(s, ref))
        choices = runs_table.column_choices(s, [exp.id])
    try:
        chosen = runs_table.parse_columns(_saved_columns(ctx.request, exp.id) or [])
    except PodstackError:
        chosen = []  # a damaged cookie: start from nothing ticked
    template = "experiments/_column_menu.html" if ctx.htmx else "experiments/columns.html"
    return ctx.render(
        template,
        section="experiments",
        exp=exp,
        choices=choices,
        chosen={c.token for c in chosen},
        filter=filter,
        status=status,
        group=group,
        base_url=f"/experiments/{quote(exp.id, safe='')}",
    )

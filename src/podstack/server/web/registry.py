"""Model Registry pages: the model list (search, filters, pagination, Register Model) and a
model's page (versions, history, metrics across versions, aliases, lineage, delete)."""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from podstack.errors import PodstackError, ValidationFailed
from podstack.schemas import registry as rsch
from podstack.server.permissions.levels import MODEL
from podstack.server.permissions.protections import list_protections
from podstack.server.registry import aliases as alias_service
from podstack.server.registry import service as registry
from podstack.server.registry import views as registry_views
from podstack.server.registry.rules import normalize_stage
from podstack.server.tracking import service as tracking
from podstack.server.web.core import (
    EditorAction,
    ViewerPage,
    WebCtx,
    WebRoute,
    toast_header,
)
from podstack.server.web.permissions import can_manage
from podstack.server.web.views import lineage_data, register_errors

router = APIRouter(route_class=WebRoute, include_in_schema=False)
MODELS_PAGE = 50
VERSIONS_ON_MODEL_PAGE = 100
# The "metrics across versions" chart compares the most recent versions only.
CHART_VERSIONS = 20
HISTORY_ENTRIES = 30
MAX_VERSION_CHARTS = 12
STAGE_FILTERS = registry.STAGE_ORDER
SORTS = {"name": "Name (A→Z)", "updated": "Recently updated", "stage": "Stage (Production first)"}


def split_labels(text: str) -> list[str]:
    return [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]


def _schema_errors(exc: ValidationError, fields: dict[str, str]) -> dict[str, str]:
    """Pydantic errors of a wire schema, shown under the form field they concern."""
    out: dict[str, str] = {}
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        field = fields.get(loc[0], "_form") if loc else "_form"
        what = f"“{e['input']}”" if isinstance(e.get("input"), str) else "A value"
        if loc and loc[0] == "tags":
            msg = (
                f"{what} is not a valid label: labels are 1–64 characters of letters, digits, "
                "spaces and _ - . : /"
            )
        else:
            msg = e.get("msg", "Invalid value.")
        out.setdefault(field, msg)
    return out


# ---------------------------------------------------------------- model list


@router.get("/models")
def models_page(
    ctx: ViewerPage,
    q: str = "",
    stage: str = "",
    label: Annotated[list[str], Query()] = [],  # noqa: B006
    sort: str = "",
    order_by: str = "",
    page_token: str | None = None,
) -> Response:
    labels = [lab for text in label for lab in split_labels(text)]
    # ``order_by`` is the REST/SDK name of the same parameter; a URL may use either.
    sort = (sort or order_by or "name").strip()
    # A filter or sort the page does not know is said, not silently dropped (the list then
    # shows what it can: without that filter, in name order).
    problems: list[str] = []
    if sort.lower() in SORTS:
        sort = sort.lower()
    else:
        problems.append(
            f"Unknown sort {sort[:100]!r}: use one of {', '.join(SORTS)}. Sorted by name instead."
        )
        sort = "name"
    if stage:
        try:
            stage = normalize_stage(stage)
        except ValidationFailed:
            problems.append(
                f"Unknown stage {stage[:100]!r}: use one of {', '.join(STAGE_FILTERS)}. "
                "Showing every stage instead."
            )
            stage = ""
    with ctx.read() as s:
        items, token = registry.search_models(
            s,
            q=q or None,
            stage=stage or None,
            labels=labels,
            order_by=sort,
            limit=MODELS_PAGE,
            page_token=page_token,
        )
        models = registry_views.model_views(s, items)
    filtered = bool(q or stage or labels)
    template = "registry/_models_table.html" if ctx.htmx else "registry/list.html"
    return ctx.render(
        template,
        section="registry",
        models=models,
        q=q,
        stage=stage,
        labels=labels,
        label_text=", ".join(labels),
        sort=sort,
        sorts=SORTS,
        stage_filters=STAGE_FILTERS,
        filtered=filtered,
        next_token=token,
        page_token=page_token,
        form={},
        errors={},
        problems=problems,
        status_code=422 if problems else 200,
    )


@router.get("/models/suggest")
def suggest_models(ctx: ViewerPage, model_name: str = "") -> Response:
    """``<option>`` list for the model-name ``<datalist>`` of the register-from-run dialog."""
    with ctx.read() as s:
        items, _ = registry.search_models(s, q=model_name.strip() or None, limit=20)
        names = [m.name for m in items]
    return ctx.render("registry/_suggest.html", names=names)


@router.post("/models")
def register_model(
    ctx: EditorAction,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    labels: Annotated[str, Form()] = "",
) -> Response:
    form = {"name": name, "description": description, "labels": labels}
    errors: dict[str, str] = {}
    try:
        body = rsch.RegisteredModelCreate(
            name=name.strip(),
            description=description.strip() or None,
            tags=split_labels(labels),  # type: ignore[arg-type]
        )
        with ctx.write() as s:
            m = registry.register_model(s, ctx.actor, body.name, body.description, body.tags)
            created = m.name
    except ValidationError as exc:
        errors = _schema_errors(
            exc, {"name": "name", "description": "description", "tags": "labels"}
        )
    except PodstackError as exc:
        errors = register_errors(exc, ("model_name",))
        if "model_name" in errors:
            errors = {"name": errors["model_name"]}
    if errors:
        return ctx.render("registry/_register_form.html", status_code=422, form=form, errors=errors)
    return ctx.redirect(f"/models/{created}", f"Model {created} registered.")


# ---------------------------------------------------------------- model page


def _model_context(s: Session, name: str) -> dict[str, Any]:
    m = registry.get_model(s, name)
    model = registry_views.model_view(s, m)
    _, rows, more = registry.list_versions(s, name, limit=VERSIONS_ON_MODEL_PAGE)
    versions = registry_views.version_views(s, [(m, v) for v in rows])  # newest first
    history, _ = registry_views.model_history(s, name, HISTORY_ENTRIES)
    _, alias_rows = alias_service.list_aliases(s, name)
    charts = _versions_chart(s, versions)
    focus = model.production_version or model.latest_version
    # Every Production version (not only the newest page of versions): Delete Model names them.
    _, prod_rows, _ = registry.list_versions(s, name, stage="Production", limit=1000)
    graph = registry_views.lineage(s, name, focus.version) if focus else None
    protected = list_protections(s, m)
    return {
        "model": model,
        # Shown beside the alias, so whoever reads the page knows who may move it.
        "protected_aliases": {p.name: p.group_name for p in protected.aliases},
        "can_manage": can_manage(s, MODEL, m.id),
        "versions": versions,
        "more_versions": more is not None,
        "history": history,
        "aliases": [
            rsch.ModelAlias(
                alias=a.alias, version=n, updated_by=a.updated_by, updated_at=a.updated_at
            )
            for a, n in alias_rows
        ],
        "charts": charts,
        "production_numbers": sorted(v.version for v in prod_rows),
        "lineage_version": focus.version if focus else None,
        "lineage": lineage_data(graph) if graph else None,
    }


def _versions_chart(s: Session, versions: list[rsch.ModelVersion]) -> list[dict[str, Any]]:
    """One small bar chart per metric over the most recent versions: each version's final
    training metrics (from its run) and its validation metrics. Metrics have different
    scales, so they are not drawn on one axis. Only final values are read (no histories)."""
    recent = sorted(versions[:CHART_VERSIONS], key=lambda v: v.version)
    if not recent:
        return []
    runs = {
        r.id: r
        for r in tracking.run_views(
            s,
            [
                r
                for r in (tracking.find_run(s, rid) for rid in {v.source_run_id for v in recent})
                if r is not None  # unreadable source runs (permissions) add no points
            ],
        )
    }
    series: dict[tuple[str, str], dict[int, float]] = {}
    for v in recent:
        run = runs.get(v.source_run_id)
        for key, value in (run.metrics if run else {}).items():
            series.setdefault(("training", key), {})[v.version] = value
        for key, value in v.validation_metrics.items():
            series.setdefault(("validation", key), {})[v.version] = value
    charts = []
    for (source, key), by_version in sorted(series.items())[:MAX_VERSION_CHARTS]:
        finite = {n: x for n, x in by_version.items() if math.isfinite(x)}
        if not finite:
            continue
        pick = max if registry_views.higher_is_better(key) else min
        best = pick(finite, key=lambda n: finite[n])
        charts.append(
            {
                "key": key,
                "source": source,
                "best": best,
                "spec": {
                    "kind": "bar",
                    "highlight": [v.version for v in recent].index(best),
                    "labels": [f"v{v.version}" for v in recent],
                    "series": [{"label": key, "values": [finite.get(v.version) for v in recent]}],
                },
            }
        )
    return charts


def _model_page(ctx: WebCtx, name: str, **extra: Any) -> Response:
    with ctx.read() as s:
        data = _model_context(s, name)
    data.setdefault("errors", {})
    data.update(extra)
    return ctx.render("registry/model.html", section="registry", **data)


@router.get("/models/{name}")
def model_page(ctx: ViewerPage, name: str) -> Response:
    return _model_page(ctx, name)


@router.post("/models/{name}/edit")
def edit_model(
    ctx: EditorAction,
    name: str,
    description: Annotated[str, Form()] = "",
    labels: Annotated[str, Form()] = "",
) -> Response:
    try:
        body = rsch.RegisteredModelUpdate(
            description=description.strip(), tags=split_labels(labels)
        )  # type: ignore[arg-type]
        with ctx.write() as s:
            registry.update_model(s, ctx.actor, name, body.description, body.tags)
    except ValidationError as exc:
        errors = _schema_errors(exc, {"description": "description", "tags": "labels"})
        return _edit_error(ctx, name, errors, description, labels)
    return ctx.redirect(f"/models/{name}", "Model details saved.")


def _edit_error(
    ctx: WebCtx, name: str, errors: dict[str, str], description: str, labels: str
) -> Response:
    with ctx.read() as s:
        model = registry_views.model_view(s, registry.get_model(s, name))
    return ctx.render(
        "registry/_model_edit_form.html",
        status_code=422,
        model=model,
        errors=errors,
        form={"description": description, "labels": labels},
    )


@router.post("/models/{name}/delete")
def delete_model(
    ctx: EditorAction, name: str, confirm_name: Annotated[str, Form()] = ""
) -> Response:
    error: str | None = None
    if confirm_name != name:
        error = f"Type the model name “{name}” exactly to confirm."
    else:
        try:
            with ctx.write() as s:
                registry.delete_model(s, ctx.actor, name)
        except PodstackError as exc:
            error = exc.message
    if error is not None:
        with ctx.read() as s:
            _, prod_rows, _ = registry.list_versions(s, name, stage="Production", limit=1000)
            production = sorted(v.version for v in prod_rows)
        return ctx.render(
            "registry/_delete_model_form.html",
            status_code=409 if confirm_name == name else 422,
            model={"name": name},
            production_versions=production,
            error=error,
            typed=confirm_name,
        )
    return ctx.redirect("/models", f"Model {name} and all its versions were deleted.")


# ---------------------------------------------------------------- aliases


def _model_url(name: str) -> str:
    return "/models/" + quote(name, safe="")


def _aliases_panel(
    ctx: WebCtx,
    name: str,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
    message: str | None = None,
) -> Response:
    with ctx.read() as s:
        _, rows = alias_service.list_aliases(s, name)
        alias_views = [
            rsch.ModelAlias(
                alias=a.alias, version=n, updated_by=a.updated_by, updated_at=a.updated_at
            )
            for a, n in rows
        ]
        _, versions, _ = registry.list_versions(s, name, limit=1000)
        numbers = sorted((v.version for v in versions), reverse=True)
    return ctx.render(
        "registry/_aliases_panel.html",
        status_code=status,
        headers=toast_header(message) if message else None,
        model={"name": name},
        aliases=alias_views,
        version_numbers=numbers,
        errors=errors or {},
        form=form or {},
        message_dirty=bool(message),
    )


@router.post("/models/{name}/aliases")
def set_alias(
    ctx: EditorAction,
    name: str,
    alias: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "",
) -> Response:
    alias = alias.strip()
    form = {"alias": alias, "version": version}
    try:
        with ctx.write() as s:
            _, a, n = alias_service.set_alias(s, ctx.actor, name, alias, version)
            moved = f"Alias {a.alias} now points at version {n}."
    except PodstackError as exc:
        if not ctx.htmx:
            return ctx.redirect(_model_url(name), exc.message, "error")
        return _aliases_panel(
            ctx, name, errors=register_errors(exc, ("alias", "version")), form=form, status=422
        )
    if not ctx.htmx:
        return ctx.redirect(_model_url(name), moved)
    return _aliases_panel(ctx, name, message=moved)


@router.post("/models/{name}/aliases/{alias}/delete")
def delete_alias(ctx: EditorAction, name: str, alias: str) -> Response:
    try:
        with ctx.write() as s:
            alias_service.delete_alias(s, ctx.actor, name, alias)
    except PodstackError as exc:
        if not ctx.htmx:
            return ctx.redirect(_model_url(name), exc.message, "error")
        return _aliases_panel(ctx, name, errors={"_form": exc.message}, status=409)
    if not ctx.htmx:
        return ctx.redirect(_model_url(name), f"Alias {alias} deleted.")
    return _aliases_panel(ctx, name, message=f"Alias {alias} deleted.")

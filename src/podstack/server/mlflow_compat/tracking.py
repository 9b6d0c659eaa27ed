"""MLflow tracking endpoints for runs (``/api/2.0/mlflow/runs/*``, ``metrics/*``,
``artifacts/list``) on Podstack's runs; the experiment endpoints are in experiments.py.

Every write goes through ``podstack.server.tracking.service`` (its rules, its audit records):
what an MLflow client logs is what the UI, SDK and CLI show, and the other way round. Where
MLflow and Podstack differ (README "Using MLflow clients"):

- deleting a run is permanent (``restore`` answers RESOURCE_DOES_NOT_EXIST);
- nothing more may be logged to a finished run (params, metrics, artifacts, datasets:
  RESOURCE_CONFLICT); tags may still be set, as in MLflow;
- a param value cannot change once logged (MLflow's INVALID_PARAMETER_VALUE, same here);
- a run's ``user_id`` is the caller's Podstack user (MLflow's ``mlflow.user`` tag is kept);
- run status ``SCHEDULED`` does not exist here (RUNNING, FINISHED, FAILED, KILLED).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound
from podstack.schemas import tracking as sch
from podstack.server.artifacts import service as artifacts
from podstack.server.deps import EditorCtx, ViewerCtx
from podstack.server.mlflow_compat import ids, logged_models, views
from podstack.server.mlflow_compat.bodies import KeyValue, _Body, _pydantic, _view
from podstack.server.mlflow_compat.errors import MlflowRoute, invalid, not_found
from podstack.server.mlflow_compat.experiments import _experiment, _experiment_for_write
from podstack.server.mlflow_compat.paging import offset_token, read_offset
from podstack.server.mlflow_compat.search import parse_filter, parse_order_by
from podstack.server.tracking import mlflow_search
from podstack.server.tracking import service as tracking
from podstack.server.tracking.models import Run

router = APIRouter(route_class=MlflowRoute)

# MLflow's own limits (mlflow/utils/validation.py) for log-batch and search.
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_TOTAL = 1000
MAX_RUNS_PAGE = 50_000
DEFAULT_RUNS_PAGE = 1000


def _ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000.0, tz=UTC)


# ---------------------------------------------------------------- lookups


def _run(s: Session, run_id: str | None) -> Run:
    if not run_id:
        raise invalid("Missing value for required parameter 'run_id'.")
    run = tracking.find_run(s, ids.run_from_mlflow(run_id))
    if run is None:
        raise not_found(f"Run with id={run_id} not found")
    return run


def _run_doc(s: Session, run: Run) -> dict[str, Any]:
    return views.run_docs(s, [run], logged_models.outputs_of(s, [run.id]))[0]


# ---------------------------------------------------------------- runs


class CreateRun(_Body):
    experiment_id: str | None = None
    user_id: str | None = None
    run_name: str | None = None
    start_time: int | None = None
    tags: list[KeyValue] = Field(default_factory=list)


@router.post("/runs/create")
def create_run(body: CreateRun, ctx: EditorCtx) -> dict[str, Any]:
    tags = {t.key: t.value or "" for t in body.tags}
    name = body.run_name or tags.get("mlflow.runName") or None
    if name:
        # As MLflow's server: the name is also the mlflow.runName tag (clients read either).
        tags.setdefault("mlflow.runName", name)
    with ctx.write() as s:
        exp = _experiment_for_write(s, ctx.actor, body.experiment_id or ids.DEFAULT_EXPERIMENT_ID)
        if exp.archived:
            raise invalid(
                f"The experiment {exp.name!r} (id {ids.experiment_to_mlflow(exp.id)}) is deleted "
                "(archived in Podstack); restore it to add runs."
            )
        parent = tags.get("mlflow.parentRunId")
        if parent:
            # Nested runs: the parent must exist; stored under our id so the UI can link it.
            tags["mlflow.parentRunId"] = ids.run_to_mlflow(_run(s, parent).id)
        create = _pydantic(
            sch.RunCreate,
            experiment_id=exp.id,
            run_name=name,
            tags=tags,
            start_time=_ts(body.start_time),
        )
        run = tracking.create_run(s, ctx.actor, create)
        return {"run": _run_doc(s, run)}


@router.get("/runs/get")
def get_run(
    ctx: ViewerCtx,
    run_id: Annotated[str | None, Query()] = None,
    run_uuid: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    with ctx.read() as s:
        return {"run": _run_doc(s, _run(s, run_id or run_uuid))}


class UpdateRun(_Body):
    run_id: str | None = None
    run_uuid: str | None = None
    status: str | None = None
    end_time: int | None = None
    run_name: str | None = None


@router.post("/runs/update")
def update_run(body: UpdateRun, ctx: EditorCtx) -> dict[str, Any]:
    status = None
    if body.status is not None:
        try:
            status = sch.RunStatus(body.status.upper())
        except ValueError:
            raise invalid(
                f"Invalid run status {body.status!r}; valid: RUNNING, FINISHED, FAILED, KILLED "
                "(Podstack has no SCHEDULED)."
            )
    with ctx.write() as s:
        run = _run(s, body.run_id or body.run_uuid)
        update = _pydantic(
            sch.RunUpdate, status=status, end_time=_ts(body.end_time), name=body.run_name or None
        )
        run = tracking.update_run(s, ctx.actor, run.id, update)
        if body.run_name:
            # MLflow keeps the name in a tag as well; keep both in step.
            tracking.set_tags(s, ctx.actor, run.id, {"mlflow.runName": body.run_name})
        return {"run_info": views.run_info(run)}


class RunRef(_Body):
    run_id: str | None = None


@router.post("/runs/delete")
def delete_run(body: RunRef, ctx: EditorCtx) -> dict[str, Any]:
    with ctx.write() as s:
        run = _run(s, body.run_id)
        tracking.delete_run(s, ctx.actor, run.id)
    return {}


@router.post("/runs/restore")
def restore_run(body: RunRef, ctx: EditorCtx) -> dict[str, Any]:
    with ctx.read() as s:
        if tracking.find_run(s, ids.run_from_mlflow(body.run_id or "")) is not None:
            return {}  # never deleted: nothing to restore
    raise not_found(
        f"Run with id={body.run_id} not found: Podstack deletes runs permanently, so a "
        "deleted run cannot be restored."
    )


class LogParam(_Body):
    run_id: str | None = None
    run_uuid: str | None = None
    key: str | None = None
    value: str | None = None


def _log_params(s: Session, actor: str, run: Run, params: dict[str, str]) -> None:
    checked = _pydantic(sch.LogParams, params=params).params
    try:
        tracking.log_params(s, actor, run.id, checked)
    except Conflict as exc:
        if "conflicts" not in exc.details:
            raise
        # MLflow's answer (and message shape) for a changed param value.
        changes = "; ".join(
            f"key={k!r}, old value={c['logged']!r}, new value={c['new']!r}"
            for k, c in sorted(exc.details["conflicts"].items())
        )
        raise invalid(
            "Changing param values is not allowed. Params were already logged to run "
            f"ID={ids.run_to_mlflow(run.id)!r}. Attempted logging new param values: {changes}."
        ) from exc


@router.post("/runs/log-parameter")
def log_param(body: LogParam, ctx: EditorCtx) -> dict[str, Any]:
    if not body.key:
        raise invalid("Missing value for required parameter 'key'.")
    with ctx.write() as s:
        run = _run(s, body.run_id or body.run_uuid)
        _log_params(s, ctx.actor, run, {body.key: body.value or ""})
    return {}


class MetricIn(_Body):
    key: str
    value: float | str
    timestamp: int | None = None
    step: int | None = 0


class LogMetric(MetricIn):
    key: str = ""
    value: float | str = "NaN"
    run_id: str | None = None
    run_uuid: str | None = None


def _points(metrics: list[MetricIn]) -> list[dict[str, Any]]:
    points = []
    for m in metrics:
        point: dict[str, Any] = {"key": m.key, "value": m.value, "step": m.step or 0}
        if m.timestamp is not None:
            point["timestamp"] = _ts(m.timestamp)
        points.append(point)
    return points


@router.post("/runs/log-metric")
def log_metric(body: LogMetric, ctx: EditorCtx) -> dict[str, Any]:
    if not body.key:
        raise invalid("Missing value for required parameter 'key'.")
    points = _points([body])
    with ctx.write() as s:
        run = _run(s, body.run_id or body.run_uuid)
        tracking.log_metrics(s, ctx.actor, run.id, _pydantic(sch.LogMetrics, points=points))
    return {}


class SetTag(_Body):
    run_id: str | None = None
    run_uuid: str | None = None
    key: str | None = None
    value: str | None = None


def _set_tags(s: Session, actor: str, run: Run, tags: dict[str, str]) -> None:
    checked = _pydantic(sch.SetTags, tags=tags).tags
    tracking.set_tags(s, actor, run.id, checked)
    name = checked.get("mlflow.runName")
    if name and name != run.name:
        # MLflow renames a run by setting this tag.
        tracking.update_run(s, actor, run.id, _pydantic(sch.RunUpdate, name=name))


@router.post("/runs/set-tag")
def set_tag(body: SetTag, ctx: EditorCtx) -> dict[str, Any]:
    if not body.key:
        raise invalid("Missing value for required parameter 'key'.")
    with ctx.write() as s:
        run = _run(s, body.run_id or body.run_uuid)
        _set_tags(s, ctx.actor, run, {body.key: body.value or ""})
    return {}


class DeleteTag(_Body):
    run_id: str | None = None
    key: str | None = None


@router.post("/runs/delete-tag")
def delete_tag(body: DeleteTag, ctx: EditorCtx) -> dict[str, Any]:
    if not body.key:
        raise invalid("Missing value for required parameter 'key'.")
    with ctx.write() as s:
        run = _run(s, body.run_id)
        try:
            tracking.delete_tag(s, ctx.actor, run.id, body.key)
        except NotFound:
            raise not_found(f"No tag with name: {body.key} in run with id {body.run_id}")
    return {}


class LogBatch(_Body):
    run_id: str | None = None
    metrics: list[MetricIn] = Field(default_factory=list)
    params: list[KeyValue] = Field(default_factory=list)
    tags: list[KeyValue] = Field(default_factory=list)


@router.post("/runs/log-batch")
def log_batch(body: LogBatch, ctx: EditorCtx) -> dict[str, Any]:
    n_m, n_p, n_t = len(body.metrics), len(body.params), len(body.tags)
    if n_m > MAX_BATCH_METRICS or n_p > MAX_BATCH_PARAMS or n_t > MAX_BATCH_TAGS:
        raise invalid(
            f"A batch logging request can contain at most {MAX_BATCH_METRICS} metrics, "
            f"{MAX_BATCH_PARAMS} params and {MAX_BATCH_TAGS} tags; got {n_m} metrics, "
            f"{n_p} params and {n_t} tags."
        )
    if n_m + n_p + n_t > MAX_BATCH_TOTAL:
        raise invalid(
            f"A batch logging request can contain at most {MAX_BATCH_TOTAL} metrics, params "
            f"and tags in total; got {n_m + n_p + n_t}."
        )
    params: dict[str, str] = {}
    for p in body.params:
        value = p.value or ""
        if p.key in params and params[p.key] != value:
            raise invalid(
                f"Duplicate parameter keys have been submitted with different values: {p.key}."
            )
        params[p.key] = value
    tags = {t.key: t.value or "" for t in body.tags}
    points = _points(body.metrics)
    with ctx.write() as s:
        # One transaction: the batch is logged whole or not at all.
        run = _run(s, body.run_id)
        if params:
            _log_params(s, ctx.actor, run, params)
        if points:
            tracking.log_metrics(s, ctx.actor, run.id, _pydantic(sch.LogMetrics, points=points))
        if tags:
            _set_tags(s, ctx.actor, run, tags)
    return {}


class DatasetDoc(_Body):
    name: str
    digest: str | None = None
    source_type: str | None = None
    source: str | None = None


class DatasetInput(_Body):
    tags: list[KeyValue] = Field(default_factory=list)
    dataset: DatasetDoc


class LogInputs(_Body):
    run_id: str | None = None
    datasets: list[DatasetInput] = Field(default_factory=list)
    models: list[dict[str, Any]] = Field(default_factory=list)


@router.post("/runs/log-inputs")
def log_inputs(body: LogInputs, ctx: EditorCtx) -> dict[str, Any]:
    with ctx.write() as s:
        run = _run(s, body.run_id)
        for item in body.datasets:
            context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), None)
            ds = _pydantic(
                sch.DatasetIn,
                name=item.dataset.name,
                digest=item.dataset.digest,
                source_uri=item.dataset.source,
                context=context,
            )
            tracking.log_dataset(s, ctx.actor, run.id, ds)
    return {}


class LogOutputs(_Body):
    run_id: str | None = None
    models: list[dict[str, Any]] = Field(default_factory=list)


@router.post("/runs/outputs")
def log_outputs(body: LogOutputs, ctx: EditorCtx) -> dict[str, Any]:
    """MLflow 3 links the logged models a run produced; here a logged model records its run
    when it is created, so this only checks that the models exist."""
    with ctx.read() as s:
        _run(s, body.run_id)
        for m in body.models:
            logged_models.get(s, str(m.get("model_id", "")))
    return {}


class SearchRuns(_Body):
    experiment_ids: list[str] = Field(default_factory=list)
    filter: str | None = None
    run_view_type: str | int | None = None
    max_results: int = DEFAULT_RUNS_PAGE
    order_by: list[str] = Field(default_factory=list)
    page_token: str | None = None


def _translate_run_ids(conds: list[Any]) -> list[Any]:
    """Run ids in a filter are MLflow's: compare with ours."""
    out = []
    for c in conds:
        if c.kind == "attribute" and c.key == "run_id" and c.op in ("=", "!=", "IN", "NOT IN"):
            value = (
                tuple(ids.run_from_mlflow(v) for v in c.value)
                if isinstance(c.value, tuple)
                else ids.run_from_mlflow(str(c.value))
            )
            c = type(c)(c.kind, c.key, c.op, value)
        out.append(c)
    return out


@router.post("/runs/search")
def search_runs(body: SearchRuns, ctx: ViewerCtx) -> dict[str, Any]:
    if not 1 <= body.max_results <= MAX_RUNS_PAGE:
        raise invalid(f"max_results must be between 1 and {MAX_RUNS_PAGE}.")
    view = _view(body.run_view_type)
    conds = _translate_run_ids(parse_filter(body.filter))
    order = parse_order_by(body.order_by)
    offset = read_offset(body.page_token)
    with ctx.read() as s:
        exp_ids = [_experiment(s, e).id for e in body.experiment_ids]
        if view is True:
            rows: list[Run] = []  # runs are never soft-deleted here: none is "deleted"
        else:
            rows = mlflow_search.search_runs(
                s,
                experiment_ids=exp_ids,
                conditions=conds,
                order=order,
                limit=body.max_results,
                offset=offset,
            )
        page = rows[: body.max_results]
        docs = views.run_docs(s, page, logged_models.outputs_of(s, [r.id for r in page]))
    out: dict[str, Any] = {"runs": docs}
    if len(rows) > body.max_results:
        out["next_page_token"] = offset_token(offset + body.max_results)
    return out


@router.get("/metrics/get-history")
def get_metric_history(
    ctx: ViewerCtx,
    run_id: Annotated[str | None, Query()] = None,
    run_uuid: Annotated[str | None, Query()] = None,
    metric_key: Annotated[str | None, Query()] = None,
    max_results: Annotated[int | None, Query()] = None,
    page_token: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    if not metric_key:
        raise invalid("Missing value for required parameter 'metric_key'.")
    with ctx.read() as s:
        run = _run(s, run_id or run_uuid)
        try:
            rows, token = tracking.metric_history(
                s, run.id, metric_key, limit=max_results, page_token=page_token
            )
        except NotFound:
            rows, token = [], None  # MLflow: an unknown metric has an empty history
        metrics = [
            {
                "key": m.key,
                "value": views.number(m.value),
                "timestamp": views.millis(m.timestamp),
                "step": m.step,
            }
            for m in rows
        ]
    out: dict[str, Any] = {"metrics": metrics}
    if token:
        out["next_page_token"] = token
    return out


@router.get("/artifacts/list")
def list_artifacts(
    ctx: ViewerCtx,
    run_id: Annotated[str | None, Query()] = None,
    run_uuid: Annotated[str | None, Query()] = None,
    path: Annotated[str | None, Query()] = None,
    page_token: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """A run's artifacts at ``path`` (paths relative to the run's root), as MLflow lists
    them; an unknown directory lists empty, as in MLflow."""
    with ctx.read() as s:
        run = _run(s, run_id or run_uuid)
        try:
            entries, token = artifacts.list_artifacts(
                s, run.id, path or "", limit=1000, page_token=page_token
            )
        except NotFound:
            entries, token = [], None
        files = [
            {"path": e.path, "is_dir": e.is_dir, **({} if e.is_dir else {"file_size": e.size})}
            for e in entries
        ]
    out: dict[str, Any] = {
        "root_uri": ids.run_artifact_uri(run.experiment_id, run.id),
        "files": files,
    }
    if token:
        out["next_page_token"] = token
    return out

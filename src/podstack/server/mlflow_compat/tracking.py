"""MLflow tracking endpoints (``/api/2.0/mlflow/experiments/*``, ``runs/*``, ``metrics/*``,
``artifacts/list``) on Podstack's experiments and runs.

Every write goes through ``podstack.server.tracking.service`` (its rules, its audit records):
what an MLflow client logs is what the UI, SDK and CLI show, and the other way round. Where
MLflow and Podstack differ (README "Using MLflow clients"):

- deleting an experiment archives it (MLflow's ``deleted`` lifecycle; restore unarchives);
  deleting a run is permanent (``restore`` answers RESOURCE_DOES_NOT_EXIST);
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
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound
from podstack.schemas import tracking as sch
from podstack.server.artifacts import service as artifacts
from podstack.server.deps import EditorCtx, ViewerCtx
from podstack.server.mlflow_compat import ids, logged_models, views
from podstack.server.mlflow_compat.errors import MlflowRoute, invalid, not_found
from podstack.server.mlflow_compat.paging import offset_token, read_offset
from podstack.server.mlflow_compat.search import parse_filter, parse_order_by
from podstack.server.tracking import mlflow_search
from podstack.server.tracking import service as tracking
from podstack.server.tracking.models import Experiment, Run

router = APIRouter(route_class=MlflowRoute)

# MLflow's own limits (mlflow/utils/validation.py) for log-batch and search.
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_TOTAL = 1000
MAX_RUNS_PAGE = 50_000
DEFAULT_RUNS_PAGE = 1000
MAX_EXPERIMENTS_PAGE = 50_000


class _Body(BaseModel):
    # MLflow clients of other versions send fields we do not know: ignore them, as MLflow's
    # own server does (proto parsing with ignore_unknown_fields).
    model_config = ConfigDict(extra="ignore")


class KeyValue(_Body):
    key: str
    value: str | None = None


def _pydantic(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Builds a Podstack schema from MLflow's input, its validation error as MLflow's."""
    try:
        return fn(*args, **kwargs)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise invalid(f"Invalid value for {where or 'request'}: {first.get('msg')}") from exc


def _ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000.0, tz=UTC)


# ---------------------------------------------------------------- lookups


def _experiment(s: Session, experiment_id: str | None) -> Experiment:
    if not experiment_id:
        raise invalid("Missing value for required parameter 'experiment_id'.")
    exp = s.get(Experiment, ids.experiment_from_mlflow(experiment_id))
    if exp is None:
        raise not_found(f"No Experiment with id={experiment_id} exists")
    return exp


def _experiment_for_write(s: Session, actor: str, experiment_id: str | None) -> Experiment:
    """As ``_experiment``; MLflow's default experiment "0" is created on first use."""
    if experiment_id == ids.DEFAULT_EXPERIMENT_ID:
        return mlflow_search.ensure_default_experiment(s, actor)
    return _experiment(s, experiment_id)


def _run(s: Session, run_id: str | None) -> Run:
    if not run_id:
        raise invalid("Missing value for required parameter 'run_id'.")
    run = tracking.find_run(s, ids.run_from_mlflow(run_id))
    if run is None:
        raise not_found(f"Run with id={run_id} not found")
    return run


def _run_doc(s: Session, run: Run) -> dict[str, Any]:
    return views.run_docs(s, [run], logged_models.outputs_of(s, [run.id]))[0]


# ---------------------------------------------------------------- experiments


class CreateExperiment(_Body):
    name: str | None = None
    artifact_location: str | None = None
    tags: list[KeyValue] = Field(default_factory=list)


@router.post("/experiments/create")
def create_experiment(body: CreateExperiment, ctx: EditorCtx) -> dict[str, Any]:
    if not body.name:
        raise invalid("Missing value for required parameter 'name'.")
    if body.artifact_location:
        raise invalid(
            "artifact_location is not supported: Podstack stores every artifact in its own "
            "content-addressed store (leave it unset)."
        )
    tags = {t.key: t.value or "" for t in body.tags}
    description = tags.pop(mlflow_search.NOTE_TAG, None)
    with ctx.write() as s:
        if body.name == ids.DEFAULT_EXPERIMENT_NAME and s.get(Experiment, "0") is None:
            # MLflow always has "Default" as experiment "0": creating it by name gives it that id.
            exp = mlflow_search.ensure_default_experiment(s, ctx.actor)
        else:
            create = _pydantic(
                sch.ExperimentCreate, name=body.name, description=description, tags=tags
            )
            exp = tracking.create_experiment(s, ctx.actor, create)
        return {"experiment_id": ids.experiment_to_mlflow(exp.id)}


@router.get("/experiments/get")
def get_experiment(
    ctx: ViewerCtx, experiment_id: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    with ctx.read() as s:
        exp = s.get(Experiment, ids.experiment_from_mlflow(experiment_id or ""))
        if exp is not None:
            return {"experiment": views.experiment_doc(exp)}
    if experiment_id == ids.DEFAULT_EXPERIMENT_ID and ctx.principal.has_role("editor"):
        # MLflow always has its default experiment; here it is made on first use, by a
        # caller who may create experiments (a viewer's read changes nothing).
        with ctx.write() as s:
            exp = mlflow_search.ensure_default_experiment(s, ctx.actor)
            return {"experiment": views.experiment_doc(exp)}
    with ctx.read() as s:
        return {"experiment": views.experiment_doc(_experiment(s, experiment_id))}


@router.get("/experiments/get-by-name")
def get_experiment_by_name(
    ctx: ViewerCtx, experiment_name: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    if not experiment_name:
        raise invalid("Missing value for required parameter 'experiment_name'.")
    with ctx.read() as s:
        exp = mlflow_search.experiment_by_name(s, experiment_name)
        if exp is not None:
            return {"experiment": views.experiment_doc(exp)}
    if experiment_name == ids.DEFAULT_EXPERIMENT_NAME and ctx.principal.has_role("editor"):
        with ctx.write() as s:
            exp = mlflow_search.ensure_default_experiment(s, ctx.actor)
            return {"experiment": views.experiment_doc(exp)}
    raise not_found(f"Could not find experiment with name '{experiment_name}'")


class SearchExperiments(_Body):
    max_results: int = 1000
    page_token: str | None = None
    filter: str | None = None
    order_by: list[str] = Field(default_factory=list)
    view_type: str | int | None = None


_VIEW_TYPES = {"ACTIVE_ONLY": False, "DELETED_ONLY": True, "ALL": None, 1: False, 2: True, 3: None}


def _view(value: str | int | None) -> bool | None:
    if value is None:
        return False
    key: str | int = value.upper() if isinstance(value, str) else value
    if key not in _VIEW_TYPES:
        raise invalid(f"Invalid view_type {value!r}; valid: ACTIVE_ONLY, DELETED_ONLY, ALL.")
    return _VIEW_TYPES[key]


@router.post("/experiments/search")
def search_experiments(body: SearchExperiments, ctx: ViewerCtx) -> dict[str, Any]:
    if not 1 <= body.max_results <= MAX_EXPERIMENTS_PAGE:
        raise invalid(f"max_results must be between 1 and {MAX_EXPERIMENTS_PAGE}.")
    conds = parse_filter(body.filter, experiments=True)
    order = parse_order_by(body.order_by, experiments=True)
    offset = read_offset(body.page_token)
    with ctx.read() as s:
        rows = mlflow_search.search_experiments(
            s,
            view_archived=_view(body.view_type),
            conditions=conds,
            order=order,
            limit=body.max_results,
            offset=offset,
        )
        docs = [views.experiment_doc(e) for e in rows[: body.max_results]]
    out: dict[str, Any] = {"experiments": docs}
    if len(rows) > body.max_results:
        out["next_page_token"] = offset_token(offset + body.max_results)
    return out


class ExperimentRef(_Body):
    experiment_id: str | None = None
    new_name: str | None = None


@router.post("/experiments/update")
def update_experiment(body: ExperimentRef, ctx: EditorCtx) -> dict[str, Any]:
    if not body.new_name:
        raise invalid("Missing value for required parameter 'new_name'.")
    with ctx.write() as s:
        exp = _experiment(s, body.experiment_id)
        update = _pydantic(sch.ExperimentUpdate, name=body.new_name)
        tracking.update_experiment(s, ctx.actor, exp.id, update)
    return {}


def _set_archived(ctx: EditorCtx, experiment_id: str | None, archived: bool) -> dict[str, Any]:
    if archived and experiment_id == ids.DEFAULT_EXPERIMENT_ID:
        raise invalid("Cannot delete the default experiment '0'. This is an internal experiment.")
    with ctx.write() as s:
        exp = _experiment(s, experiment_id)
        tracking.update_experiment(s, ctx.actor, exp.id, sch.ExperimentUpdate(archived=archived))
    return {}


@router.post("/experiments/delete")
def delete_experiment(body: ExperimentRef, ctx: EditorCtx) -> dict[str, Any]:
    # MLflow deletes softly (restorable): here the experiment is archived.
    return _set_archived(ctx, body.experiment_id, True)


@router.post("/experiments/restore")
def restore_experiment(body: ExperimentRef, ctx: EditorCtx) -> dict[str, Any]:
    return _set_archived(ctx, body.experiment_id, False)


class ExperimentTag(_Body):
    experiment_id: str | None = None
    key: str | None = None
    value: str | None = None


def _change_experiment_tag(ctx: EditorCtx, body: ExperimentTag, delete: bool) -> dict[str, Any]:
    if not body.key:
        raise invalid("Missing value for required parameter 'key'.")
    with ctx.write() as s:
        exp = _experiment(s, body.experiment_id)
        if body.key == mlflow_search.NOTE_TAG:
            # MLflow keeps the description in this tag; here it is the description.
            update = _pydantic(
                sch.ExperimentUpdate, description="" if delete else (body.value or "")
            )
        else:
            tags = dict(exp.tags or {})
            if delete:
                if body.key not in tags:
                    raise not_found(
                        f"No tag with name: {body.key} in experiment with id {body.experiment_id}"
                    )
                tags.pop(body.key)
            else:
                tags[body.key] = body.value or ""
            update = _pydantic(sch.ExperimentUpdate, tags=tags)
        tracking.update_experiment(s, ctx.actor, exp.id, update)
    return {}


@router.post("/experiments/set-experiment-tag")
def set_experiment_tag(body: ExperimentTag, ctx: EditorCtx) -> dict[str, Any]:
    return _change_experiment_tag(ctx, body, delete=False)


@router.post("/experiments/delete-experiment-tag")
def delete_experiment_tag(body: ExperimentTag, ctx: EditorCtx) -> dict[str, Any]:
    return _change_experiment_tag(ctx, body, delete=True)


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

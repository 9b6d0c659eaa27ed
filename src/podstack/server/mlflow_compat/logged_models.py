"""MLflow 3 logged models (``/api/2.0/mlflow/logged-models…``): what ``log_model`` creates.

Storage (the contract the registry side relies on, ``files_location``): a logged model's files
are artifacts of a Podstack run, under one directory of that run's tree:

- a model logged in a run (``source_run_id``) lives in that run, at ``<name>/`` -- so
  ``runs:/<run>/model`` and our own ``runs/<id>/artifacts/model/...`` name the same files, and
  a version registered from either snapshots them; a second model of the same name in the
  same run gets ``<name>-<8 hex of its id>/``;
- a model logged outside any run gets a run of its own in the experiment ("logged model
  <name>", tag ``mlflow.loggedModel.holder``), RUNNING until the client finalizes the model.

The client uploads to the model's ``artifact_uri``, MLflow's own form
``mlflow-artifacts:/<experiment>/models/<model id>/artifacts``; the proxy (``artifacts.py``)
writes those files into the run's directory. Through the MLflow API that directory is shown
only as the model's (listing the run's artifacts leaves it out, as MLflow 3 keeps model files
outside the run): ``runs:/<run>/model`` lists it once. Podstack's UI and SDK show it as a run
directory. A model's params and tags are its own (JSON columns); metrics linked to a model
are logged to its run only (``data.metrics`` is empty).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy.orm import Session

from podstack.errors import NotFound
from podstack.schemas import tracking as sch
from podstack.schemas.artifact_paths import validate_artifact_path
from podstack.server.audit import service as audit
from podstack.server.db.base import utcnow
from podstack.server.deps import EditorCtx, ViewerCtx
from podstack.server.mlflow_compat import ids
from podstack.server.mlflow_compat import repository as repo
from podstack.server.mlflow_compat.bodies import KeyValue, _Body
from podstack.server.mlflow_compat.errors import MlflowRoute, invalid, not_found
from podstack.server.mlflow_compat.models import LoggedModel
from podstack.server.mlflow_compat.paging import offset_token, read_offset
from podstack.server.mlflow_compat.search import parse_filter
from podstack.server.permissions import service as permissions
from podstack.server.tracking import mlflow_search
from podstack.server.tracking import service as tracking
from podstack.server.tracking.models import Experiment

router = APIRouter(route_class=MlflowRoute)

HOLDER_TAG = "mlflow.loggedModel.holder"
STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")
_FIELDS = ["name", "run_id", "artifact_path", "status"]


# ---------------------------------------------------------------- rules


def get(s: Session, model_id: str) -> LoggedModel:
    model = repo.get(s, model_id) if model_id else None
    if model is None:
        raise not_found(f"Logged model with ID '{model_id}' not found.")
    return model


def get_for_change(s: Session, model_id: str) -> LoggedModel:
    """The logged model, for a change: needs EDIT on its experiment."""
    model = get(s, model_id)
    permissions.require_experiment_id(s, model.experiment_id, permissions.EDIT)
    return model


def files_location(s: Session, model_id: str) -> tuple[str, str]:
    """(our run id, directory in that run's artifacts) holding a logged model's files."""
    model = get(s, model_id)
    return model.run_id, model.artifact_path


def artifact_uri(model: LoggedModel) -> str:
    exp = ids.experiment_to_mlflow(model.experiment_id)
    return f"{ids.ARTIFACT_SCHEME}/{exp}/models/{model.id}/artifacts"


def model_dirs(s: Session, run_id: str) -> set[str]:
    """The directories of a run's tree that hold logged models (hidden from MLflow's listing
    of the run, shown as the models')."""
    return repo.paths_in_run(s, run_id)


def outputs_of(s: Session, run_ids: Sequence[str]) -> dict[str, list[str]]:
    """Per run: the ids of the logged models it produced (a run's ``outputs``)."""
    return repo.of_source_runs(s, run_ids)


def create(
    s: Session,
    actor: str,
    exp: Experiment,
    name: str,
    source_run_id: str | None,
    model_type: str | None,
    params: dict[str, str],
    tags: dict[str, str],
) -> LoggedModel:
    if exp.archived:
        raise invalid(f"The experiment {exp.name!r} is deleted (archived); restore it first.")
    model_id = ids.LOGGED_MODEL_PREFIX + secrets.token_hex(16)
    if source_run_id:
        run = tracking.find_run(s, ids.run_from_mlflow(source_run_id))
        if run is None:
            raise not_found(f"Run with id={source_run_id} not found")
        # Its files will be artifacts of this run: refuse now rather than at the first upload.
        tracking.require_active_run(s, run.id)
        taken = repo.paths_in_run(s, run.id)
        path = name if name not in taken else f"{name}-{model_id[2:10]}"
    else:
        holder = sch.RunCreate(
            experiment_id=exp.id, run_name=f"logged model {name}", tags={HOLDER_TAG: model_id}
        )
        run = tracking.create_run(s, actor, holder)
        path = name
    validate_artifact_path(path)
    now = utcnow()
    model = LoggedModel(
        id=model_id,
        experiment_id=exp.id,
        run_id=run.id,
        source_run_id=run.id if source_run_id else None,
        artifact_path=path,
        name=name,
        model_type=model_type,
        status="LOGGED_MODEL_PENDING",
        params=params,
        tags=tags,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    repo.add(s, model)
    audit.record(s, actor, "mlflow.logged_model.create", "run", run.id, None, _snapshot(model))
    return model


def _snapshot(model: LoggedModel) -> dict[str, Any]:
    return {"model_id": model.id, **{f: getattr(model, f) for f in _FIELDS}}


def finalize(s: Session, actor: str, model: LoggedModel, status: str) -> LoggedModel:
    if status not in ("LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED"):
        raise invalid(
            f"Invalid status {status!r}: a logged model is finalized as LOGGED_MODEL_READY or "
            "LOGGED_MODEL_UPLOAD_FAILED."
        )
    before = _snapshot(model)
    model.status = status
    model.updated_at = utcnow()
    if model.source_run_id is None:
        # The run created to hold the files ends with the upload.
        run = tracking.get_run(s, model.run_id)
        if run.status not in tracking.TERMINAL:
            end = sch.RunStatus.FINISHED if status.endswith("READY") else sch.RunStatus.FAILED
            tracking.update_run(s, actor, run.id, sch.RunUpdate(status=end))
    audit.record(
        s, actor, "mlflow.logged_model.finalize", "run", model.run_id, before, _snapshot(model)
    )
    return model


def doc(model: LoggedModel) -> dict[str, Any]:
    return {
        "info": {
            "model_id": model.id,
            "experiment_id": ids.experiment_to_mlflow(model.experiment_id),
            "name": model.name,
            "creation_timestamp_ms": int(model.created_at.timestamp() * 1000),
            "last_updated_timestamp_ms": int(model.updated_at.timestamp() * 1000),
            "artifact_uri": artifact_uri(model),
            "status": model.status,
            "model_type": model.model_type or "",
            "source_run_id": ids.run_to_mlflow(model.source_run_id) if model.source_run_id else "",
            "status_message": model.status_message or "",
            "tags": [{"key": k, "value": v} for k, v in sorted((model.tags or {}).items())],
        },
        "data": {
            "params": [{"key": k, "value": v} for k, v in sorted((model.params or {}).items())],
            "metrics": [],
        },
    }


# ---------------------------------------------------------------- endpoints


class CreateLoggedModel(_Body):
    experiment_id: str | None = None
    name: str | None = None
    model_type: str | None = None
    source_run_id: str | None = None
    params: list[KeyValue] = Field(default_factory=list)
    tags: list[KeyValue] = Field(default_factory=list)


def _kv(items: list[KeyValue]) -> dict[str, str]:
    return {i.key: i.value or "" for i in items}


@router.post("/logged-models")
def create_logged_model(body: CreateLoggedModel, ctx: EditorCtx) -> dict[str, Any]:
    if not body.experiment_id:
        raise invalid("Missing value for required parameter 'experiment_id'.")
    name = body.name or "model"
    with ctx.write() as s:
        if body.experiment_id == ids.DEFAULT_EXPERIMENT_ID:
            exp = mlflow_search.ensure_default_experiment(s, ctx.actor)
        else:
            exp = s.get(Experiment, ids.experiment_from_mlflow(body.experiment_id))
            if exp is None:
                raise not_found(f"No Experiment with id={body.experiment_id} exists")
        model = create(
            s,
            ctx.actor,
            exp,
            name,
            body.source_run_id or None,
            body.model_type,
            _kv(body.params),
            _kv(body.tags),
        )
        return {"model": doc(model)}


@router.get("/logged-models/{model_id}")
def get_logged_model(model_id: str, ctx: ViewerCtx) -> dict[str, Any]:
    with ctx.read() as s:
        return {"model": doc(get(s, model_id))}


class Finalize(_Body):
    status: str | int | None = None


_STATUS_NUMBERS = dict(enumerate(STATUSES, start=1))  # the proto enum's numbers


@router.patch("/logged-models/{model_id}")
def finalize_logged_model(model_id: str, body: Finalize, ctx: EditorCtx) -> dict[str, Any]:
    status = _STATUS_NUMBERS.get(body.status, "") if isinstance(body.status, int) else body.status
    with ctx.write() as s:
        model = finalize(s, ctx.actor, get_for_change(s, model_id), status or "")
        return {"model": doc(model)}


@router.delete("/logged-models/{model_id}")
def delete_logged_model(model_id: str, ctx: EditorCtx) -> dict[str, Any]:
    """Forgets the logged model; its files stay artifacts of its run (registered versions
    may hold snapshots of them)."""
    with ctx.write() as s:
        model = get_for_change(s, model_id)
        before = _snapshot(model)
        repo.delete(s, model)
        audit.record(s, ctx.actor, "mlflow.logged_model.delete", "run", model.run_id, before, None)
    return {}


class SetTags(_Body):
    tags: list[KeyValue] = Field(default_factory=list)


@router.patch("/logged-models/{model_id}/tags")
def set_logged_model_tags(model_id: str, body: SetTags, ctx: EditorCtx) -> dict[str, Any]:
    tags = _pydantic_tags(_kv(body.tags))
    with ctx.write() as s:
        model = get_for_change(s, model_id)
        before = dict(model.tags or {})
        model.tags = {**before, **tags}
        model.updated_at = utcnow()
        audit.record(
            s, ctx.actor, "mlflow.logged_model.set_tags", "run", model.run_id, None, {"tags": tags}
        )
    return {}


def _pydantic_tags(tags: dict[str, str]) -> dict[str, str]:
    try:
        return sch.SetTags(tags=tags).tags
    except ValueError as exc:
        raise invalid(f"Invalid tags: {str(exc).splitlines()[-1]}") from exc


@router.delete("/logged-models/{model_id}/tags/{tag_key:path}")
def delete_logged_model_tag(model_id: str, tag_key: str, ctx: EditorCtx) -> dict[str, Any]:
    with ctx.write() as s:
        model = get_for_change(s, model_id)
        tags = dict(model.tags or {})
        if tag_key not in tags:
            raise not_found(f"No tag with key {tag_key!r} on logged model {model_id}.")
        tags.pop(tag_key)
        model.tags = tags
        model.updated_at = utcnow()
        audit.record(
            s,
            ctx.actor,
            "mlflow.logged_model.delete_tag",
            "run",
            model.run_id,
            {"key": tag_key},
            None,
        )
    return {}


class LogParams(_Body):
    params: list[KeyValue] = Field(default_factory=list)


@router.post("/logged-models/{model_id}/params")
def log_logged_model_params(model_id: str, body: LogParams, ctx: EditorCtx) -> dict[str, Any]:
    params = _kv(body.params)
    with ctx.write() as s:
        model = get_for_change(s, model_id)
        current = dict(model.params or {})
        changed = sorted(k for k, v in params.items() if k in current and current[k] != v)
        if changed:
            raise invalid(f"Changing param values is not allowed: {', '.join(changed)}.")
        model.params = {**current, **params}
        model.updated_at = utcnow()
        audit.record(
            s,
            ctx.actor,
            "mlflow.logged_model.log_params",
            "run",
            model.run_id,
            None,
            {"params": params},
        )
    return {}


class OrderBy(_Body):
    field_name: str
    ascending: bool = True


class SearchLoggedModels(_Body):
    experiment_ids: list[str] = Field(default_factory=list)
    filter: str | None = None
    max_results: int = 100
    order_by: list[OrderBy] = Field(default_factory=list)
    page_token: str | None = None


_COLUMNS: dict[str, Any] = {
    "name": LoggedModel.name,
    "model_id": LoggedModel.id,
    "source_run_id": LoggedModel.source_run_id,
    "status": LoggedModel.status,
    "model_type": LoggedModel.model_type,
    "creation_timestamp": LoggedModel.created_at,
    "creation_time": LoggedModel.created_at,
    "last_updated_timestamp": LoggedModel.updated_at,
}


def _condition(c: Any, dialect: str) -> Any:
    if c.kind in ("tag", "param"):
        col = (LoggedModel.tags if c.kind == "tag" else LoggedModel.params)[c.key].as_string()
    else:
        col = _COLUMNS[c.key]
    value = c.value
    if c.kind == "attribute" and c.key == "source_run_id":
        value = (
            tuple(ids.run_from_mlflow(v) for v in value)
            if isinstance(value, tuple)
            else ids.run_from_mlflow(str(value))
        )
    if c.kind == "attribute" and c.key in ("creation_timestamp", "last_updated_timestamp"):
        from datetime import UTC, datetime

        value = datetime.fromtimestamp(float(value) / 1000.0, tz=UTC)
    if c.op in ("IS NULL", "IS NOT NULL"):
        return col.is_(None) if c.op == "IS NULL" else col.is_not(None)
    return mlflow_search.compare(col, c.op, value, dialect)


@router.post("/logged-models/search")
def search_logged_models(body: SearchLoggedModels, ctx: ViewerCtx) -> dict[str, Any]:
    if not 1 <= body.max_results <= 1000:
        raise invalid("max_results must be between 1 and 1000.")
    conds = parse_filter(body.filter, models=True)
    order: list[tuple[Any, bool]] = []
    for o in body.order_by:
        col = _COLUMNS.get(o.field_name)
        if col is None:
            raise invalid(
                f"Cannot order logged models by {o.field_name!r}; valid: {', '.join(_COLUMNS)}."
            )
        order.append((col, not o.ascending))
    if not order:
        order = [(LoggedModel.created_at, True)]
    offset = read_offset(body.page_token)
    with ctx.read() as s:
        dialect = s.get_bind().dialect.name
        rows = repo.search(
            s,
            experiment_ids=[ids.experiment_from_mlflow(e) for e in body.experiment_ids],
            where=[_condition(c, dialect) for c in conds],
            order_by=order,
            limit=body.max_results,
            offset=offset,
        )
        docs = [doc(m) for m in rows[: body.max_results]]
    out: dict[str, Any] = {"models": docs}
    if len(rows) > body.max_results:
        out["next_page_token"] = offset_token(offset + body.max_results)
    return out


@router.get("/logged-models/{model_id}/artifacts/directories")
def list_logged_model_artifacts(
    model_id: str, ctx: ViewerCtx, artifact_directory_path: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    """The files of a logged model's directory (paths relative to the model's root)."""
    from podstack.server.artifacts import service as artifacts

    with ctx.read() as s:
        model = get(s, model_id)
        inner = model.artifact_path
        if artifact_directory_path:
            inner = f"{inner}/{artifact_directory_path.strip('/')}"
        try:
            entries, _ = artifacts.list_artifacts(s, model.run_id, inner, limit=1000)
        except NotFound:
            entries = []  # nothing uploaded yet
        cut = len(model.artifact_path) + 1
        files = [
            {"path": e.path[cut:], "is_dir": e.is_dir} | ({} if e.is_dir else {"file_size": e.size})
            for e in entries
        ]
    return {"files": files}

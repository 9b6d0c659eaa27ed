"""MLflow experiment endpoints (``/api/2.0/mlflow/experiments/*``) on Podstack's experiments,
and the experiment lookup the run handlers (tracking.py) use too.

Every write goes through ``podstack.server.tracking.service`` (its rules, its audit records).
Where MLflow and Podstack differ (README "Using MLflow clients"): deleting an experiment
archives it (MLflow's ``deleted`` lifecycle; restore unarchives), and MLflow's description tag
(``mlflow.note.content``) is the experiment's description.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy.orm import Session

from podstack.schemas import tracking as sch
from podstack.server.deps import EditorCtx, ViewerCtx
from podstack.server.mlflow_compat import ids, views
from podstack.server.mlflow_compat.bodies import KeyValue, _Body, _pydantic, _view
from podstack.server.mlflow_compat.errors import MlflowRoute, invalid, not_found
from podstack.server.mlflow_compat.paging import offset_token, read_offset
from podstack.server.mlflow_compat.search import parse_filter, parse_order_by
from podstack.server.tracking import mlflow_search
from podstack.server.tracking import service as tracking
from podstack.server.tracking.models import Experiment

router = APIRouter(route_class=MlflowRoute)

# MLflow's own limit (mlflow/utils/validation.py) for a page of experiments.
MAX_EXPERIMENTS_PAGE = 50_000


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

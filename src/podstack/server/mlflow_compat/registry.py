"""MLflow's Model Registry REST API (``ModelRegistryService`` of
``mlflow/protos/model_registry.proto``) on Podstack's own registry.

Every write goes through the registry's services (``registry.service``, ``stages``,
``aliases``, ``model_tags``), so Podstack's rules hold for MLflow clients as for any other:
a gated stage transition opens an approval request and answers with an error naming it
(nothing moves until it is approved); a Production version cannot be deleted; the audit log
names the calling user. What MLflow's model has and ours does not is mapped in
``registry_views`` (answers) and ``registry_sources`` (a version's ``source`` URI and its
download URI), and in the README ("Using MLflow clients"). Searches are parsed here and
compiled to SQL by ``registry.filtered_search``; a rename is refused (see its endpoint).

Requests: GETs carry their fields as query parameters, the other methods as a JSON body (what
the MLflow client sends). Answers are MLflow's JSON shapes; errors become MLflow's error JSON
in ``mlflow_compat.errors``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.orm import Session

from podstack.errors import ApprovalPending, BadRequest
from podstack.schemas.common import Description, Key
from podstack.schemas.tracking import TagValue
from podstack.server.deps import EditorCtx, ViewerCtx
from podstack.server.mlflow_compat import ids
from podstack.server.mlflow_compat import registry_sources as sources
from podstack.server.mlflow_compat import registry_views as views
from podstack.server.mlflow_compat.errors import MlflowRoute, not_implemented
from podstack.server.mlflow_compat.registry_filters import (
    MODEL_FILTER,
    MODEL_ORDER,
    VERSION_FILTER,
    VERSION_ORDER,
    parse_filter,
    parse_order,
)
from podstack.server.pagination import decode_token, encode_token
from podstack.server.registry import aliases, filtered_search, lookup, model_tags, origins, stages
from podstack.server.registry import service as registry

router = APIRouter(route_class=MlflowRoute)

# MLflow's defaults and ceilings (mlflow.store.model_registry).
MODELS_DEFAULT_MAX = 100
MODELS_MAX = 1000
VERSIONS_DEFAULT_MAX = 10_000
VERSIONS_MAX = 200_000

# Fields a client may send as a list (repeated query parameters on a GET).
_LIST_FIELDS = frozenset({"order_by", "stages", "tags"})


async def _request_doc(request: Request) -> dict[str, Any]:
    """The request's fields: query parameters (GET, and DELETE sent without a body), merged
    with a JSON body when there is one."""
    doc: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        doc[key] = values if key in _LIST_FIELDS else values[-1]
    if request.method != "GET":
        raw = await request.body()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                raise BadRequest("The request body is not valid JSON.") from None
            if not isinstance(body, dict):
                raise BadRequest("The request body must be a JSON object.")
            doc.update(body)
    return doc


Doc = Annotated[dict[str, Any], Depends(_request_doc)]


def _str(doc: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        if required:
            raise BadRequest(f"Missing value for required parameter '{key}'.", {"field": key})
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise BadRequest(
            f"Invalid value {str(value)[:100]!r} for parameter '{key}': expected a string.",
            {"field": key},
        )
    return str(value)


# The wire rules of /api/v1 for version tags and descriptions, so both APIs store the same.
_KEY = TypeAdapter(Key)
_TAG_VALUE = TypeAdapter(TagValue)
_DESCRIPTION = TypeAdapter(Description)


def _checked(adapter: TypeAdapter[Any], value: Any, what: str) -> Any:
    try:
        return adapter.validate_python(value)
    except PydanticValidationError as exc:
        problem = exc.errors()[0].get("msg", "invalid")
        raise BadRequest(
            f"Invalid {what} {str(value)[:100]!r}: {problem}.", {"field": what}
        ) from None


def _version_tag(key: Any, value: Any) -> tuple[str, str]:
    return _checked(_KEY, key, "tag key"), _checked(_TAG_VALUE, value, "tag value")


def _description(doc: dict[str, Any]) -> str | None:
    value = doc.get("description")
    return None if value is None else _checked(_DESCRIPTION, value, "description")


def _name(doc: dict[str, Any], key: str = "name") -> str:
    return _str(doc, key)  # type: ignore[return-value]


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise BadRequest(f"Parameter '{key}' must be a list.", {"field": key})
    return value


def _tags(doc: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for t in _list(doc, "tags"):
        if isinstance(t, str):  # a GET cannot carry objects; only JSON bodies have tags
            raise BadRequest("Parameter 'tags' must be a list of {key, value} objects.")
        if not isinstance(t, dict) or not isinstance(t.get("key"), str):
            raise BadRequest(
                "Each tag must be an object with a string 'key' and a string 'value'.",
                {"field": "tags"},
            )
        out.append((t["key"], str(t.get("value") or "")))
    return out


def _max_results(doc: dict[str, Any], default: int, ceiling: int) -> int:
    raw = doc.get("max_results")
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except (TypeError, ValueError):
        n = 0
    if isinstance(raw, bool) or n < 1 or n > ceiling:
        raise BadRequest(
            f"Invalid value {raw!r} for max_results: it must be an integer from 1 to {ceiling}.",
            {"field": "max_results", "max": ceiling},
        )
    return n


def _offset(doc: dict[str, Any]) -> int:
    token = doc.get("page_token") or None
    after = decode_token(token, 1)
    if after is None:
        return 0
    if not isinstance(after[0], int) or isinstance(after[0], bool) or after[0] < 0:
        raise BadRequest("Invalid page_token.", {"page_token": token})
    return after[0]


_run_ids = ids.runs_to_mlflow


def _version_out(s: Session, m: Any, mv: Any) -> dict[str, Any]:
    return {"model_version": views.version_doc(s, m, mv, _run_ids)}


def _model_out(s: Session, m: Any) -> dict[str, Any]:
    return {"registered_model": views.model_doc(s, m, _run_ids)}


# ---------------------------------------------------------------- registered models


@router.post("/registered-models/create")
def create_registered_model(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    name = _name(doc)
    tags = _tags(doc)
    for k, v in tags:  # every refusal before anything is written
        model_tags.validate_tag(k, v)
    with ctx.write() as s:
        m = registry.register_model(s, ctx.actor, name, _description(doc))
        for k, v in tags:
            model_tags.set_model_tag(s, ctx.actor, name, k, v)
        return _model_out(s, m)


@router.get("/registered-models/get")
def get_registered_model(doc: Doc, ctx: ViewerCtx) -> dict[str, Any]:
    with ctx.read() as s:
        return _model_out(s, lookup.get_model(s, _name(doc)))


@router.post("/registered-models/rename")
def rename_registered_model(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    name, new_name = _name(doc), _name(doc, "new_name")
    with ctx.read() as s:
        lookup.get_model(s, name)  # a missing model is still RESOURCE_DOES_NOT_EXIST
    # Refused on purpose: approval policies, webhook filters, deployments and pending approval
    # requests name models; a rename would silently detach a model from its approval policy.
    raise not_implemented(
        f"Renaming registered models is not supported by Podstack ({name!r} -> {new_name!r}): "
        "approval policies, deployments and webhooks refer to a model by its name. Create "
        f"{new_name!r} and register the versions there instead."
    )


@router.patch("/registered-models/update")
def update_registered_model(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    name = _name(doc)
    description = _description(doc)
    with ctx.write() as s:
        m = registry.update_model(s, ctx.actor, name, description=description or "")
        return _model_out(s, m)


@router.delete("/registered-models/delete")
def delete_registered_model(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    with ctx.write() as s:
        registry.delete_model(s, ctx.actor, _name(doc))
    return {}


@router.get("/registered-models/search")
def search_registered_models(doc: Doc, ctx: ViewerCtx) -> dict[str, Any]:
    conds = parse_filter(_str(doc, "filter", required=False), MODEL_FILTER, frozenset())
    order = parse_order(_list(doc, "order_by"), MODEL_ORDER)
    limit = _max_results(doc, MODELS_DEFAULT_MAX, MODELS_MAX)
    offset = _offset(doc)
    with ctx.read() as s:
        rows, more = filtered_search.search_models(s, conds, order, limit=limit, offset=offset)
        out: dict[str, Any] = {"registered_models": views.model_docs(s, rows, _run_ids)}
    if more:
        out["next_page_token"] = encode_token([offset + limit])
    return out


@router.post("/registered-models/set-tag")
def set_registered_model_tag(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    name, key = _name(doc), _name(doc, "key")
    value = doc.get("value")
    with ctx.write() as s:
        model_tags.set_model_tag(s, ctx.actor, name, key, "" if value is None else value)
    return {}


@router.delete("/registered-models/delete-tag")
def delete_registered_model_tag(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    with ctx.write() as s:
        model_tags.delete_model_tag(s, ctx.actor, _name(doc), _name(doc, "key"))
    return {}


@router.post("/registered-models/alias")
def set_registered_model_alias(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    name, alias, version = _name(doc), _name(doc, "alias"), _name(doc, "version")
    with ctx.write() as s:
        aliases.set_alias(s, ctx.actor, name, alias, version)
    return {}


@router.delete("/registered-models/alias")
def delete_registered_model_alias(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    with ctx.write() as s:
        aliases.delete_alias(s, ctx.actor, _name(doc), _name(doc, "alias"))
    return {}


@router.get("/registered-models/alias")
def get_model_version_by_alias(doc: Doc, ctx: ViewerCtx) -> dict[str, Any]:
    name, alias = _name(doc), _name(doc, "alias")
    with ctx.read() as s:
        m, mv = lookup.version_by_alias(s, name, alias)
        return _version_out(s, m, mv)


@router.api_route("/registered-models/get-latest-versions", methods=["GET", "POST"])
def get_latest_versions(doc: Doc, ctx: ViewerCtx) -> dict[str, Any]:
    name = _name(doc)
    wanted = [registry.normalize_stage(x) for x in _list(doc, "stages")]
    with ctx.read() as s:
        m = lookup.get_model(s, name)
        latest = filtered_search.latest_per_stage(s, [m.id])[m.id]
        picked = [v for v in latest if not wanted or v.stage in wanted]
        return {"model_versions": views.version_docs(s, [(m, v) for v in picked], _run_ids)}


# ---------------------------------------------------------------- model versions


@router.post("/model-versions/create")
def create_model_version(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    name, source = _name(doc), _name(doc, "source")
    run_id = _str(doc, "run_id", required=False)
    logged_model_id = _str(doc, "model_id", required=False)
    description = _description(doc)
    tags = dict(_version_tag(k, v) for k, v in _tags(doc))
    with ctx.write() as s:
        where = sources.resolve_source(s, source, run_id, logged_model_id)
        new = registry.add_version(
            s,
            ctx.actor,
            name,
            where.run_id,
            where.artifact_path,
            description=description,
            tags=tags,
        )
        origins.record_origin(s, new.version, source, where.logged_model_id)
        run = ids.run_to_mlflow(new.version.source_run_id)
        return {"model_version": views.new_version_doc(new, source, where.logged_model_id, run)}


def _version_of(doc: Doc) -> tuple[str, str]:
    return _name(doc), _name(doc, "version")


@router.get("/model-versions/get")
def get_model_version(doc: Doc, ctx: ViewerCtx) -> dict[str, Any]:
    name, version = _version_of(doc)
    with ctx.read() as s:
        m, mv = lookup.get_version(s, name, version)
        return _version_out(s, m, mv)


@router.patch("/model-versions/update")
def update_model_version(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    name, version = _version_of(doc)
    description = _description(doc)
    with ctx.write() as s:
        m, mv = registry.update_version(s, ctx.actor, name, version, description or "")
        return _version_out(s, m, mv)


@router.delete("/model-versions/delete")
def delete_model_version(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    name, version = _version_of(doc)
    with ctx.write() as s:
        registry.delete_version(s, ctx.actor, name, version)
    return {}


@router.post("/model-versions/transition-stage")
def transition_model_version_stage(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    name, version = _version_of(doc)
    stage = _name(doc, "stage")
    archive = doc.get("archive_existing_versions", False)
    if isinstance(archive, str):
        archive = archive.lower() == "true"
    if not isinstance(archive, bool):
        raise BadRequest("archive_existing_versions must be true or false.")
    with ctx.write() as s:
        outcome = stages.transition_stage(
            s, ctx.actor, name, version, stage, archive_existing=archive
        )
        if outcome.interception is not None:
            # The approval request is kept (ApprovalPending commits what was written); the
            # client gets an error, so a script never carries on as if the move happened.
            it = outcome.interception
            raise ApprovalPending(
                f"Stage not changed: {it.message} Follow it at /approvals/{it.request_id}.",
                it.details,
            )
        m = lookup.get_model(s, name)
        return _version_out(s, m, outcome.version)


@router.get("/model-versions/search")
def search_model_versions(doc: Doc, ctx: ViewerCtx) -> dict[str, Any]:
    conds = parse_filter(
        _str(doc, "filter", required=False), VERSION_FILTER, frozenset({"version"})
    )
    order = parse_order(_list(doc, "order_by"), VERSION_ORDER)
    limit = _max_results(doc, VERSIONS_DEFAULT_MAX, VERSIONS_MAX)
    offset = _offset(doc)
    with ctx.read() as s:
        conds = [sources.run_condition(c) if c.field == "run_id" else c for c in conds]
        rows, more = filtered_search.search_versions(s, conds, order, limit=limit, offset=offset)
        out: dict[str, Any] = {"model_versions": views.version_docs(s, rows, _run_ids)}
    if more:
        out["next_page_token"] = encode_token([offset + limit])
    return out


@router.get("/model-versions/get-download-uri")
def get_model_version_download_uri(doc: Doc, ctx: ViewerCtx) -> dict[str, Any]:
    name, version = _version_of(doc)
    with ctx.read() as s:
        m, mv = lookup.get_version(s, name, version)
        return {"artifact_uri": sources.download_uri(s, m, mv)}


@router.post("/model-versions/set-tag")
def set_model_version_tag(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    name, version = _version_of(doc)
    key, value = _version_tag(doc.get("key"), doc.get("value") or "")
    with ctx.write() as s:
        registry.set_version_tag(s, ctx.actor, name, version, key, value)
    return {}


@router.delete("/model-versions/delete-tag")
def delete_model_version_tag(doc: Doc, ctx: EditorCtx) -> dict[str, Any]:
    name, version = _version_of(doc)
    with ctx.write() as s:
        registry.delete_version_tag(s, ctx.actor, name, version, _name(doc, "key"))
    return {}

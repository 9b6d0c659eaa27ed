"""MLflow's proxied artifact API (``/api/2.0/mlflow-artifacts/artifacts/...``) on run artifacts.

The MLflow client writes to a run's ``artifact_uri`` (``mlflow-artifacts:/<experiment>/<run>/
artifacts``, see ``ids.py``) through these endpoints: ``PUT .../artifacts/<experiment>/<run>/
artifacts/<path>`` uploads one file, ``GET`` of the same path downloads it, and
``GET .../artifacts?path=<experiment>/<run>/artifacts/<dir>`` lists a directory. A logged model
(MLflow 3) has its ``artifact_location`` inside its run's tree (``logged_models.py``), so its
files arrive here too.

Bytes go to the same content-addressed blob store as ``/api/v1`` artifact uploads: streamed
to disk while their sha256 is computed (one chunk in memory), stored once per content, and
recorded through ``artifacts.service`` (its path rules, the active-run rule, the audit log).
A client may send ``X-Content-SHA256``; a mismatch stores nothing. Deleting artifacts is not
served (a run's artifacts are kept as logged; registered versions may point at them).
Downloads are verified against the recorded sha256 as they stream (a damaged blob cuts the
transfer).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from sqlalchemy.orm import Session

from podstack.errors import ChecksumMismatch, IntegrityError, NotFound
from podstack.schemas.artifact_paths import validate_artifact_path
from podstack.server.artifacts import service as artifacts
from podstack.server.artifacts.responses import blob_download
from podstack.server.artifacts.store import StoredBlob
from podstack.server.deps import Ctx, EditorCtx, ViewerCtx
from podstack.server.mlflow_compat import ids, logged_models
from podstack.server.mlflow_compat.errors import MlflowRoute, invalid, not_found
from podstack.server.tracking import service as tracking

log = logging.getLogger("podstack.server.mlflow")
router = APIRouter(route_class=MlflowRoute)

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
T = TypeVar("T")


async def _in_thread(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)


@dataclass(frozen=True)
class Target:
    run_id: str  # ours
    inner: str  # path inside the run's artifact tree ("" = its root)
    via_model: bool  # named through a logged model's artifact_uri


_FORMS = (
    "<experiment id>/<run id>/artifacts/<path> (a run's artifact_uri) or "
    "<experiment id>/models/<logged model id>/artifacts/<path> (a logged model's)"
)


def _target(s: Session, path: str, *, file: bool) -> Target:
    """Where a proxied artifact path points in our run artifacts (404 for an unknown run or
    model, or one not in the experiment the path names)."""
    as_model = ids.parse_model_artifact_path(path)
    if as_model is not None:
        exp_id, model_id, rest = as_model
        model = logged_models.get(s, model_id)
        if model.experiment_id != exp_id:
            raise not_found(f"Logged model with ID '{model_id}' not found in experiment {exp_id}.")
        run_id, inner, via_model = model.run_id, model.artifact_path, True
        if rest:
            inner = f"{inner}/{rest}"
        elif file:
            raise invalid(f"Artifact path {path!r} names a logged model's root, not a file.")
    else:
        parsed = ids.parse_artifact_path(path)
        if parsed is None:
            raise invalid(f"Artifact path {path!r} is not inside a run: expected {_FORMS}.")
        exp_id, run_id, inner = parsed
        via_model = False
        if file and not inner:
            raise invalid(f"Artifact path {path!r} names a run's artifact root, not a file.")
        run = tracking.find_run(s, run_id)
        if run is None or run.experiment_id != exp_id:
            shown = path.strip("/").split("/")[1]
            raise not_found(f"Run with id={shown} not found in experiment {exp_id}")
    if inner:
        validate_artifact_path(inner, directory=not file)
    return Target(run_id, inner, via_model)


def _check(ctx: Ctx, path: str) -> Target:
    with ctx.read() as s:
        target = _target(s, path, file=True)
        artifacts.check_upload(s, target.run_id, target.inner)
        return target


def _record(ctx: Ctx, target: Target, blob: StoredBlob) -> None:
    with ctx.write() as s:
        artifacts.record_upload(s, ctx.actor, target.run_id, target.inner, blob)


@router.put("/artifacts/{path:path}")
async def upload(
    path: str,
    request: Request,
    ctx: EditorCtx,
    x_content_sha256: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    if x_content_sha256 is not None and not _SHA256.match(x_content_sha256):
        raise invalid("X-Content-SHA256 must be 64 hexadecimal characters (the body's sha256).")
    # Everything that can refuse the upload, before a byte of the body is read.
    target = await _in_thread(partial(_check, ctx, path))
    ctx.principal.require_run_access(target.run_id)
    try:
        blob = await ctx.state.store.put_async(
            request.stream(),
            expected_sha256=x_content_sha256,
            max_bytes=ctx.settings.max_artifact_bytes,
        )
    except IntegrityError as exc:
        raise ChecksumMismatch(
            f"The uploaded bytes for {target.inner!r} do not match X-Content-SHA256; nothing "
            "was stored. Retry the upload.",
            {**exc.details, "path": target.inner},
        ) from exc
    # The run may have finished while the body streamed: record_upload checks again.
    await _in_thread(partial(_record, ctx, target, blob))
    return {}


@router.get("/artifacts/{path:path}")
def download(
    path: str,
    ctx: ViewerCtx,
    if_none_match: Annotated[str | None, Header()] = None,
    range: Annotated[str | None, Header()] = None,
) -> Response:
    with ctx.read() as s:
        target = _target(s, path, file=True)
        run_id, inner = target.run_id, target.inner
        row = artifacts.get_file(s, run_id, inner)
        size, sha256 = row.size, row.sha256
    where = f"{inner!r} in run {run_id}"
    details = {"run_id": run_id, "path": inner, "sha256": sha256}
    return blob_download(
        ctx.state.store, sha256, size, inner, (if_none_match, range), log, where, details
    )


@router.get("/artifacts")
def list_directory(ctx: ViewerCtx, path: Annotated[str | None, Query()] = None) -> dict[str, Any]:
    """The entries directly under ``path`` by name, as MLflow's server lists them. A missing
    directory lists empty; a file lists itself (the client reads that as "not a directory")."""
    files: list[dict[str, Any]] = []
    with ctx.read() as s:
        target = _target(s, path or "", file=False)
        run_id, inner = target.run_id, target.inner
        # Logged models' directories are listed as the models', not as the run's (MLflow 3
        # keeps model files outside the run; its client lists runs:/<run>/<model> from both).
        hidden = set() if target.via_model else logged_models.model_dirs(s, run_id)
        if any(inner == d or inner.startswith(d + "/") for d in hidden):
            return {"files": []}
        token = None
        while True:
            try:
                entries, token = artifacts.list_artifacts(
                    s, run_id, inner, limit=1000, page_token=token
                )
            except NotFound:
                break
            for e in entries:
                if e.is_dir and e.path in hidden:
                    continue
                entry: dict[str, Any] = {"path": e.path.rsplit("/", 1)[-1], "is_dir": e.is_dir}
                if not e.is_dir:
                    entry["file_size"] = e.size
                files.append(entry)
            if not token:
                break
    return {"files": files}

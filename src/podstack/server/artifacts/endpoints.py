"""REST adapter for run artifacts: streamed uploads, listings, streamed (and ranged) downloads.

The upload endpoint is ``async`` on purpose: it pulls the raw body chunk by chunk from
``request.stream()`` into the blob store, so memory stays at one chunk whatever the size
(a sync endpoint would need the body materialised first). Its database work is short and runs
in a worker thread so the event loop never blocks on the database.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import partial
from typing import Annotated, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from podstack.errors import ChecksumMismatch, IntegrityError, ValidationFailed
from podstack.schemas.artifact_paths import validate_artifact_path
from podstack.schemas.artifacts import ArtifactEntry, ArtifactFile
from podstack.schemas.common import Page
from podstack.server.artifacts import service
from podstack.server.artifacts.responses import DOWNLOAD_RESPONSES, OCTET_STREAM, blob_download
from podstack.server.artifacts.store import BlobStore, StoredBlob
from podstack.server.deps import Ctx, EditorCtx, ViewerCtx

log = logging.getLogger("podstack.server.artifacts")
router = APIRouter(tags=["artifacts"])

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
T = TypeVar("T")


async def _in_thread(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)


def _check(ctx: Ctx, run_id: str, path: str) -> None:
    with ctx.read() as s:
        service.check_upload(s, run_id, path)


def _record(ctx: Ctx, run_id: str, path: str, blob: StoredBlob) -> ArtifactFile:
    with ctx.write() as s:
        return service.record_upload(s, ctx.actor, run_id, path, blob)


@router.put(
    "/runs/{run_id}/artifacts/{path:path}",
    status_code=201,
    response_model=ArtifactFile,
    openapi_extra={"requestBody": {"required": True, **OCTET_STREAM}},
    summary="Upload one artifact file (raw request body)",
)
async def upload_artifact(
    run_id: str,
    path: str,
    request: Request,
    ctx: EditorCtx,
    x_content_sha256: Annotated[
        str | None,
        Header(description="Hex sha256 of the body; the upload is refused if it differs."),
    ] = None,
) -> ArtifactFile:
    validate_artifact_path(path)
    ctx.principal.require_run_access(run_id)
    if x_content_sha256 is not None and not _SHA256.match(x_content_sha256):
        raise ValidationFailed(
            "X-Content-SHA256 must be 64 hexadecimal characters (the sha256 of the body).",
            {"header": "X-Content-SHA256", "value": x_content_sha256[:100]},
        )
    # Refuse before reading the body: no point storing gigabytes for a finished run.
    await _in_thread(partial(_check, ctx, run_id, path))
    store: BlobStore = ctx.state.store
    try:
        blob = await store.put_async(
            request.stream(),
            expected_sha256=x_content_sha256,
            max_bytes=ctx.settings.max_artifact_bytes,
        )
    except IntegrityError as exc:
        raise ChecksumMismatch(
            f"The uploaded bytes for {path!r} do not match X-Content-SHA256 (expected "
            f"{exc.details.get('expected')}, received content hashing to "
            f"{exc.details.get('actual')}). Nothing was stored; the file may have changed "
            "while it was being sent. Retry the upload.",
            {**exc.details, "path": path},
        ) from exc
    # The run may have finished while the body streamed; record_upload re-checks in the same
    # transaction. If it refuses, the blob stays unreferenced until garbage collection.
    return await _in_thread(partial(_record, ctx, run_id, path, blob))


@router.get("/runs/{run_id}/artifacts", response_model=Page[ArtifactEntry])
def list_artifacts(
    run_id: str,
    ctx: ViewerCtx,
    path: Annotated[str, Query(description="Directory (or file) to list; empty = root.")] = "",
    recursive: Annotated[
        bool, Query(description="List every file below instead of collapsing sub-directories.")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_token: str | None = None,
) -> Page[ArtifactEntry]:
    with ctx.read() as s:
        items, token = service.list_artifacts(
            s, run_id, path, recursive=recursive, limit=limit, page_token=page_token
        )
        return Page(items=items, next_page_token=token)


@router.get(
    "/runs/{run_id}/artifacts/{path:path}",
    response_class=StreamingResponse,
    responses=DOWNLOAD_RESPONSES,
    summary="Download one artifact file (streamed, verified against its sha256)",
)
def download_artifact(
    run_id: str,
    path: str,
    ctx: ViewerCtx,
    if_none_match: Annotated[str | None, Header()] = None,
    range: Annotated[str | None, Header(description="bytes=N- to resume a download")] = None,
) -> Response:
    with ctx.read() as s:
        row = service.get_file(s, run_id, path)
        size, sha256 = row.size, row.sha256
    where = f"{path!r} in run {run_id}"
    details = {"run_id": run_id, "path": path, "sha256": sha256}
    conditional = (if_none_match, range)
    return blob_download(ctx.state.store, sha256, size, path, conditional, log, where, details)

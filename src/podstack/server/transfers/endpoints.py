"""REST adapter for direct transfers (grants for presigned bucket URLs).

Upload routes live under ``/runs/{run_id}/`` so a scheduled job's run-scoped token reaches
them for its own run only, as it reaches ``PUT /runs/{run_id}/artifacts/{path}``; they need
the editor role, like that route. Download grants need the viewer role, like the streamed
downloads they stand in for.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Response

from podstack.schemas import transfers as sch
from podstack.schemas.artifacts import ArtifactFile
from podstack.server.deps import EditorCtx, ViewerCtx
from podstack.server.transfers import service

router = APIRouter(tags=["transfers"])

U = "/runs/{run_id}/uploads"
Proxy = Annotated[
    bool, Query(description="Answer 'proxy' (use the streamed route) even if direct is possible.")
]


@router.post(U, response_model=sch.UploadGrant, summary="Ask how to upload one artifact file")
def request_upload(run_id: str, body: sch.UploadGrantIn, ctx: EditorCtx) -> sch.UploadGrant:
    ctx.principal.require_run_access(run_id)
    with ctx.write() as s:
        return service.request_upload(s, ctx.actor, ctx.state.store, ctx.settings, run_id, body)


@router.get(U + "/{upload_id}", response_model=sch.UploadStatus)
def upload_status(run_id: str, upload_id: str, ctx: EditorCtx) -> sch.UploadStatus:
    ctx.principal.require_run_access(run_id)
    with ctx.read() as s:
        return service.upload_status(s, ctx.actor, ctx.state.store, run_id, upload_id)


@router.post(U + "/{upload_id}/parts", response_model=sch.PartUrls)
def part_urls(run_id: str, upload_id: str, body: sch.PartUrlsIn, ctx: EditorCtx) -> sch.PartUrls:
    ctx.principal.require_run_access(run_id)
    with ctx.read() as s:
        return service.presign_parts(
            s, ctx.actor, ctx.state.store, ctx.settings, run_id, upload_id, body
        )


@router.post(U + "/{upload_id}/complete", status_code=201, response_model=ArtifactFile)
async def complete_upload(
    run_id: str, upload_id: str, body: sch.CompleteIn, ctx: EditorCtx
) -> ArtifactFile:
    """Verifies the uploaded object and records the artifact. Three steps so that reading
    the object back (a multipart upload is hashed by the server) holds no transaction."""
    ctx.principal.require_run_access(run_id)

    def prepare() -> service.PendingUpload:
        with ctx.read() as s:
            return service.prepare_complete(s, ctx.actor, run_id, upload_id)

    up = await anyio.to_thread.run_sync(prepare)
    verdict = await anyio.to_thread.run_sync(service.verify_upload, ctx.state.store, up, body)

    def finish() -> ArtifactFile | None:
        with ctx.write() as s:
            if verdict.refusal is not None:
                service.forget_refused(s, ctx.actor, up, verdict.refusal)
                return None
            assert verdict.blob is not None
            return service.finish_upload(s, ctx.actor, up, verdict.blob)

    recorded = await anyio.to_thread.run_sync(finish)
    if verdict.refusal is not None:
        raise verdict.refusal  # after the commit that forgot the discarded upload
    assert recorded is not None
    return recorded


@router.delete(U + "/{upload_id}", status_code=204)
def abort_upload(run_id: str, upload_id: str, ctx: EditorCtx) -> Response:
    ctx.principal.require_run_access(run_id)
    with ctx.write() as s:
        service.abort_upload(s, ctx.actor, ctx.state.store, run_id, upload_id)
    return Response(status_code=204)


@router.get("/runs/{run_id}/downloads/{path:path}", response_model=sch.DownloadGrant)
def run_download(run_id: str, path: str, ctx: ViewerCtx, proxy: Proxy = False) -> sch.DownloadGrant:
    with ctx.read() as s:
        return service.run_download_grant(
            s, ctx.state.store, ctx.settings, run_id, path, proxy=proxy
        )


@router.get(
    "/registered-models/{name}/versions/{version}/downloads/{path:path}",
    response_model=sch.DownloadGrant,
)
def version_download(
    name: str, version: str, path: str, ctx: ViewerCtx, proxy: Proxy = False
) -> sch.DownloadGrant:
    with ctx.read() as s:
        return service.version_download_grant(
            s, ctx.state.store, ctx.settings, name, version, path, proxy=proxy
        )

"""REST: a version's signatures (checked), attaching one, and the signing keys."""

from __future__ import annotations

from fastapi import APIRouter

from podstack.schemas import provenance as sch
from podstack.server.deps import EditorCtx, ViewerCtx
from podstack.server.provenance import service

router = APIRouter(tags=["provenance"])


@router.get(
    "/registered-models/{name}/versions/{version}/signatures", response_model=sch.VersionSignatures
)
def list_signatures(name: str, version: str, ctx: ViewerCtx) -> sch.VersionSignatures:
    with ctx.read() as s:
        return service.check_version(s, name, version)


@router.post(
    "/registered-models/{name}/versions/{version}/signatures",
    status_code=201,
    response_model=sch.SignatureCheck,
)
def add_signature(
    name: str, version: str, body: sch.SignatureIn, ctx: EditorCtx
) -> sch.SignatureCheck:
    with ctx.write() as s:
        return service.attach_signature(s, ctx.actor, name, version, body)


@router.get("/signing-keys", response_model=list[sch.SigningKey])
def list_keys(ctx: ViewerCtx) -> list[sch.SigningKey]:
    key = getattr(ctx.state, "signing_key", None)
    with ctx.read() as s:
        return service.list_keys(s, key.key_id if key else None)

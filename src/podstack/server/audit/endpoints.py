"""REST for the audit log (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from podstack.errors import BadRequest
from podstack.schemas.audit import AuditEventOut
from podstack.schemas.common import Page
from podstack.server.audit import service
from podstack.server.db.base import as_utc
from podstack.server.deps import AdminCtx
from podstack.server.pagination import clamp_limit, decode_token, page_of

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=Page[AuditEventOut], summary="Audit log, newest first")
def list_audit_events(
    ctx: AdminCtx,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. user.create")] = None,
    target_type: Annotated[str | None, Query(max_length=64)] = None,
    target_id: Annotated[str | None, Query(max_length=300)] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601; naive means UTC.")] = None,
    limit: Annotated[int | None, Query()] = None,
    page_token: Annotated[str | None, Query()] = None,
) -> Page[AuditEventOut]:
    n = clamp_limit(limit)
    key = decode_token(page_token, 1)
    if key is not None and not (isinstance(key[0], int) and 0 <= key[0] < 2**63):
        raise BadRequest("Invalid page_token.", {"page_token": page_token})
    if since is not None:
        since = as_utc(since)
    with ctx.read() as s:
        rows = service.list_events(
            s,
            limit=n + 1,
            after_id=key[0] if key else None,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            since=since,
        )
        items, token = page_of(rows, n, lambda e: [e.id])
        return Page[AuditEventOut](
            items=[AuditEventOut.model_validate(e) for e in items], next_page_token=token
        )

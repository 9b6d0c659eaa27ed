"""Wire contract for the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from podstack.schemas.common import Schema


class AuditEventOut(Schema):
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

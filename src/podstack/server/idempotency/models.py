"""The stored idempotency keys (see service.py for how they are written and replayed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from podstack.server.db.base import Base, JSONType, UTCDateTime


class IdempotencyKey(Base):
    """One applied request per (principal, key). Inserted in the transaction of the request's
    own effects, so the row exists exactly when the effects do; the response is added just
    after, in a second small transaction (``status`` is NULL until then)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    principal: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    # sha256 of method, path, query and body: the same key with another request is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    # The request's audit rows, [[action, target_type, target_id], ...]: enough to answer a
    # repeat if the server died between the commit and storing the response.
    created: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True))
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # UTF-8 text (API answers are JSON); NULL when not stored. ``content_type`` WITHHELD: the
    # answer carried a secret (a new token, a webhook secret), which is never kept.
    body: Mapped[str | None] = mapped_column(Text, nullable=True)

"""Wire contract for in-app notifications, webhooks (with their deliveries) and email.

Webhook URLs and event filters arrive as plain strings; their rules and messages live in
``podstack.server.notifications.service``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from podstack.schemas.common import Input, Schema

_Url = Annotated[str, StringConstraints(max_length=2000)]
_EventType = Annotated[str, StringConstraints(max_length=100)]
_Text = Annotated[str, StringConstraints(max_length=2000)]
_Secret = Annotated[str, StringConstraints(min_length=16, max_length=200)]


# ---------------------------------------------------------------- in-app notifications


class Notification(Schema):
    id: int
    kind: str
    title: str
    body: str | None = None
    link: str | None = Field(default=None, description="Path in the web UI.")
    data: dict[str, Any] | None = None
    created_at: datetime
    read_at: datetime | None = None

    @property
    def read(self) -> bool:
        return self.read_at is not None


class UnreadCount(Schema):
    unread: int


class MarkRead(Input):
    """Either ``ids`` or ``all: true``."""

    # Bounded to the id column's range: an out-of-range id is a 422, not a database error.
    ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        default_factory=list, max_length=1000
    )
    all: bool = False


class MarkedRead(Schema):
    marked: int


# ---------------------------------------------------------------- webhooks


class WebhookCreate(Input):
    url: _Url
    events: list[_EventType] = Field(
        default_factory=lambda: ["*"],
        max_length=100,
        description="Event types to deliver; ['*'] (the default) means every event.",
    )
    model_names: list[Annotated[str, StringConstraints(max_length=128)]] = Field(
        default_factory=list,
        max_length=100,
        description="Only events about these models (empty: all events).",
    )
    description: _Text | None = None
    secret: _Secret | None = Field(
        default=None, description="HMAC secret; generated when omitted (returned once)."
    )
    enabled: bool = True


class WebhookUpdate(Input):
    url: _Url | None = None
    events: list[_EventType] | None = Field(default=None, max_length=100)
    model_names: list[Annotated[str, StringConstraints(max_length=128)]] | None = Field(
        default=None, max_length=100
    )
    description: _Text | None = None
    enabled: bool | None = None


class Webhook(Schema):
    id: str
    url: str
    events: list[str]
    model_names: list[str] = Field(default_factory=list)
    description: str | None = None
    enabled: bool
    created_by: str | None = None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(Webhook):
    """Returned once, at creation: ``secret`` signs every delivery (store it now)."""

    secret: str


class WebhookAttempt(Schema):
    attempt: int
    at: datetime
    duration_ms: int
    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None


class WebhookDelivery(Schema):
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: str = Field(description="pending | delivered | failed")
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    body: str | None = Field(default=None, description="The exact JSON sent (signed).")
    attempt_log: list[WebhookAttempt] = Field(default_factory=list)


class EmailDelivery(Schema):
    id: str
    to_address: str
    to_username: str | None = None
    subject: str
    status: str = Field(description="pending | sent | failed | skipped")
    attempts: int
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None

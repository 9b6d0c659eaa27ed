"""Deployment targets (configured by admins) and deployments (endpoint -> model version)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from podstack.server.db.base import Base, JSONType, UTCDateTime, utcnow


class DeploymentTarget(Base):
    __tablename__ = "deployment_targets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # local | kubernetes
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Deployment(Base):
    """Desired state (version_id, replicas, gpu, desired_state) and what actually runs
    (``runtime``, ``serving_version``). The manager converges the second onto the first."""

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The endpoint name: unique, DNS-label shaped (it names the InferenceService too).
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # RESTRICT backs the registry delete guard: a served model/version cannot disappear.
    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="RESTRICT"), index=True
    )
    alias: Mapped[str | None] = mapped_column(String(128))
    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    serving_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True
    )
    serving_version: Mapped[int | None] = mapped_column(Integer)
    previous_version: Mapped[int | None] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(64))
    # Serves only versions in Production or approved for it (approvals/service.py).
    production: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    gpu_type: Mapped[str | None] = mapped_column(String(64))
    min_replicas: Mapped[int] = mapped_column(Integer, default=1)
    max_replicas: Mapped[int] = mapped_column(Integer, default=1)
    format: Mapped[str] = mapped_column(String(32))
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    desired_state: Mapped[str] = mapped_column(String(16), default="running")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_reason: Mapped[str | None] = mapped_column(Text)
    # Last rollout: {from_version, to_version, status, reason, at}.
    rollout: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Target-specific facts about what runs (local: pid, port, instance; kubernetes: url).
    runtime: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Recent health checks, newest last: [{at, ok, latency_ms, message}].
    health: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # Cross-process mutual exclusion for rollouts (several server replicas, CLI, embedded).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

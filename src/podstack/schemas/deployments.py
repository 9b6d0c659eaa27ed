"""Wire schemas for deployments, deployment targets and inference."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import Field

from podstack.schemas.common import Input, Schema


class DeploymentCreate(Input):
    model_name: str = Field(max_length=128)
    version: int | None = Field(default=None, description="Version number (pinned).")
    alias: str | None = Field(
        default=None, max_length=128, description="Follow this alias: its moves roll the endpoint."
    )
    endpoint_name: str = Field(max_length=200)
    gpu_type: str | None = Field(default=None, max_length=64)
    min_replicas: int = 1
    max_replicas: int = 1
    target: str | None = Field(default=None, max_length=64, description="Default target if None.")
    production: bool = Field(
        default=False,
        description="Serves production traffic: only versions in Production or approved for "
        "this endpoint; other versions (and moves of an alias it follows) need approval.",
    )


class DeploymentUpdate(Input):
    version: int | None = None
    alias: str | None = Field(default=None, max_length=128)
    gpu_type: str | None = Field(default=None, max_length=64)
    min_replicas: int | None = None
    max_replicas: int | None = None
    production: bool | None = Field(
        default=None,
        description="Mark (editors) or unmark (admins only) the endpoint as production.",
    )


class HealthCheck(Schema):
    at: datetime
    ok: bool
    latency_ms: float | None = None
    message: str | None = None


class Rollout(Schema):
    from_version: int | None = None
    to_version: int | None = None
    status: str
    reason: str | None = None
    at: datetime | None = None


class Deployment(Schema):
    id: str
    endpoint_name: str
    model_name: str
    version: int | None = Field(description="The version being served (None until ready).")
    target_version: int = Field(description="The version the deployment should serve.")
    previous_version: int | None = None
    alias: str | None = None
    target: str
    target_kind: str
    production: bool = False
    gpu_type: str | None = None
    min_replicas: int
    max_replicas: int
    format: str
    status: str = Field(description="pending | starting | ready | failed | stopped")
    desired_state: str = Field(default="running", description="running | stopped")
    status_reason: str | None = None
    endpoint_url: str | None = None
    inference_url: str | None = Field(
        default=None, description="POST here: the Open Inference Protocol infer URL."
    )
    signature: dict[str, Any] | None = None
    health: HealthCheck | None = None
    health_history: list[HealthCheck] = Field(default_factory=list)
    rollout: Rollout | None = None
    created_by: str | None = None
    created_at: datetime
    updated_at: datetime


def is_settled(d: Deployment) -> bool:
    """True when nothing is under way: the deployment serves its target version (or that
    rollout failed), or it is stopped/failed as asked."""
    if d.rollout is not None and d.rollout.status == "in_progress":
        return False
    if d.desired_state == "stopped":
        return d.status == "stopped"
    if d.status in ("pending", "starting", "stopped"):
        return False
    if d.status == "ready" and d.version != d.target_version:
        return (
            d.rollout is not None
            and d.rollout.status == "failed"
            and (d.rollout.to_version == d.target_version)
        )
    return True


class TargetIn(Input):
    kind: str = Field(description="local | kubernetes")
    config: dict[str, Any] = Field(default_factory=dict)
    is_default: bool = False


class Target(Schema):
    name: str
    kind: str
    config: dict[str, Any]
    is_default: bool
    builtin: bool = False
    gpu_types: list[str] = Field(default_factory=list, description="What gpu_type may be.")
    trusted_formats: bool = False
    updated_by: str | None = None
    updated_at: datetime | None = None


class Tensor(Schema):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class InferRequest(Input):
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] | None = None
    id: str | None = None


class InferResponse(Schema):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[Tensor]

    def as_dict(self) -> dict[str, Any]:
        """Outputs by name as nested lists in their shapes (numpy arrays if numpy exists)."""
        out: dict[str, Any] = {}
        for t in self.outputs:
            try:
                import numpy as np

                out[t.name] = np.asarray(t.data).reshape(t.shape)
            except ImportError:  # pragma: no cover - numpy ships with every ML stack
                out[t.name] = t.data
        return out


def default_endpoint_name(model_name: str) -> str:
    """The endpoint name a deployment gets when none is given: the model name as a lowercase
    DNS-style slug (the SDK and the web form both offer it, so the rule lives here, once)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    slug = re.sub(r"^[^a-z]+", "", slug)[:45].rstrip("-")
    return slug or "model"

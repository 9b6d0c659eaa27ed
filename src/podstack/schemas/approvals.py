"""Wire contract for approval policies, reviewer groups and approval requests.

Stages, usernames, group names and gate expressions arrive as plain strings: their rules
(and the messages explaining them) live in ``podstack.server.approvals.service``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from podstack.schemas.common import Input, Schema
from podstack.schemas.tracking import MetricValue

_Name = Annotated[str, StringConstraints(max_length=200)]
_Stage = Annotated[str, StringConstraints(max_length=100)]
_Gate = Annotated[str, StringConstraints(max_length=500)]
_Comment = Annotated[str, StringConstraints(max_length=10_000)]

REQUEST_STATUSES = ("pending", "approved", "rejected", "cancelled", "stale")


# ---------------------------------------------------------------- policies


class ApprovalPolicyIn(Input):
    """A whole policy (PUT replaces it). The defaults gate nothing."""

    gated_stages: list[_Stage] = Field(
        default_factory=list,
        max_length=10,
        description="Target stages that need approval, e.g. ['Production'].",
    )
    reviewers: list[_Name] = Field(
        default_factory=list, max_length=500, description="Usernames of designated reviewers."
    )
    reviewer_groups: list[_Name] = Field(
        default_factory=list, max_length=100, description="Groups whose members may review."
    )
    required_approvals: int = Field(
        default=1, description="Approvals needed (N of the M reviewers)."
    )
    gates: list[_Gate] = Field(
        default_factory=list,
        max_length=50,
        description="Metric conditions, e.g. 'accuracy >= 0.9' or 'f1 > production'.",
    )
    gated_aliases: list[_Name] = Field(
        default_factory=list,
        max_length=100,
        description="Aliases whose set/move/delete needs approval, e.g. ['champion'].",
    )


class ApprovalPolicy(Schema):
    model_name: str | None = Field(default=None, description="None for the global default policy.")
    source: Literal["model", "default"] = Field(
        description="'model' when the model has its own policy, else 'default'."
    )
    gated_stages: list[str] = Field(default_factory=list)
    reviewers: list[str] = Field(default_factory=list)
    reviewer_groups: list[str] = Field(default_factory=list)
    required_approvals: int = 1
    gates: list[str] = Field(default_factory=list)
    gated_aliases: list[str] = Field(default_factory=list)
    updated_by: str | None = None
    updated_at: datetime | None = None


# ---------------------------------------------------------------- groups


class GroupCreate(Input):
    name: _Name
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    members: list[_Name] = Field(default_factory=list, max_length=1000)


class GroupMemberIn(Input):
    username: _Name


class Group(Schema):
    name: str
    description: str | None = None
    members: list[str] = Field(default_factory=list)
    created_by: str | None = None
    created_at: datetime


# ---------------------------------------------------------------- requests


class ApprovalRequestCreate(Input):
    model_name: _Name
    version: int | Annotated[str, StringConstraints(max_length=100)]
    stage: _Stage
    note: Annotated[str, StringConstraints(max_length=5000)] | None = None
    archive_existing: bool = False


class DecisionIn(Input):
    comment: _Comment | None = None


class CommentIn(Input):
    body: _Comment


class GateResult(Schema):
    expression: str
    metric: str
    passed: bool
    value: MetricValue | None = None
    compared_to: MetricValue | None = None
    production_version: int | None = None
    message: str


class ApprovalVote(Schema):
    reviewer: str
    decision: Literal["approve", "reject"]
    comment: str | None = None
    at: datetime


class ApprovalComment(Schema):
    id: int
    author: str
    kind: str = Field(description="request | comment | approve | reject | cancel | stale | applied")
    body: str | None = None
    at: datetime


class ApprovalRequest(Schema):
    id: str
    kind: Literal["stage", "deployment", "alias"] = Field(
        default="stage",
        description="stage (a stage transition), deployment (what a production endpoint "
        "serves) or alias (moving a gated alias, or one a production endpoint follows).",
    )
    subject: str | None = Field(
        default=None, description="What a deployment/alias request changes."
    )
    action: dict[str, Any] | None = Field(
        default=None, description="The change carried out once approved."
    )
    model_name: str
    version: int
    from_stage: str
    to_stage: str
    archive_existing: bool = False
    requester: str
    note: str | None = None
    status: Literal["pending", "approved", "rejected", "cancelled", "stale"]
    status_reason: str | None = None
    required_approvals: int
    approvals: int = Field(default=0, description="Approvals given so far.")
    approved_by: list[str] = Field(default_factory=list)
    reviewers: list[str] = Field(
        default_factory=list, description="Who may approve (the requester excluded)."
    )
    reviewer_groups: list[str] = Field(default_factory=list)
    gates: list[str] = Field(default_factory=list)
    gate_results: list[GateResult] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None

    @property
    def is_pending(self) -> bool:
        return self.status == "pending"


class MetricProvenance(Schema):
    """One metric value, where it came from, who logged it and when, and whether gates of
    this request read it (only an ended source run's metrics and validation metrics logged
    by someone other than the requester count)."""

    key: str
    value: MetricValue
    source: Literal["run", "validation"]
    logged_by: str | None = None
    logged_at: datetime | None = None
    counted: bool
    reason: str | None = Field(default=None, description="Why gates do not read it.")
    run_id: str | None = None


class MetricsComparison(Schema):
    """The version's metrics beside the current Production version's: the values gates read
    (``metrics``) and every logged value with its provenance."""

    version: int
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    production_version: int | None = None
    production_metrics: dict[str, MetricValue] = Field(default_factory=dict)
    provenance: list[MetricProvenance] = Field(default_factory=list)
    production_provenance: list[MetricProvenance] = Field(default_factory=list)


class ApprovalRequestDetail(ApprovalRequest):
    votes: list[ApprovalVote] = Field(default_factory=list)
    comments: list[ApprovalComment] = Field(default_factory=list)
    metrics: MetricsComparison | None = None
    current_gate_results: list[GateResult] = Field(
        default_factory=list, description="Gates evaluated now (pending requests only)."
    )
    blocked_reason: str | None = Field(
        default=None, description="Why a pending request cannot be approved right now."
    )
    allowed_actions: list[str] = Field(
        default_factory=list, description="What the caller may do: approve, reject, cancel."
    )

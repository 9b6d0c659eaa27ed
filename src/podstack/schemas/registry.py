"""Wire schemas for the model registry.

Model names, alias names and stages arrive as plain strings on purpose: their rules (and
the messages explaining them) live once, in ``podstack.server.registry.service``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, StringConstraints

from podstack.schemas.common import Description, Input, Key, Label, Schema
from podstack.schemas.tracking import Dataset, MetricValue, RunStatus, TagValue

# Generous outer bounds only (keeps absurd payloads out); the real rules are in the service.
NameIn = Annotated[str, StringConstraints(max_length=1000)]
StageIn = Annotated[str, StringConstraints(max_length=100)]
RefIn = Annotated[str, StringConstraints(max_length=2000)]
Note = Annotated[str, StringConstraints(max_length=5000)]
Labels = Annotated[list[Label], Field(max_length=100)]


# ---------------------------------------------------------------- registered models


class VersionSummary(Schema):
    version: int
    stage: str
    created_at: datetime


class RegisteredModelCreate(Input):
    name: NameIn
    description: Description | None = None
    tags: Labels = Field(default_factory=list, description="Labels, e.g. ['nlp', 'sentiment'].")


class RegisteredModelUpdate(Input):
    description: Description | None = None
    tags: Labels | None = Field(default=None, description="Replaces the model's labels.")


class RegisteredModel(Schema):
    name: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list, description="Labels.")
    created_by: str | None = None
    created_at: datetime
    updated_at: datetime
    latest_version: VersionSummary | None = None
    production_version: VersionSummary | None = Field(
        default=None, description="The version most recently moved to Production, if any."
    )
    aliases: dict[str, int] = Field(default_factory=dict, description="alias -> version")
    key_value_tags: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Key-value tags (MLflow's registered-model tags, set through the MLflow API). "
            "Filled, like aliases, when one model is read; empty in lists."
        ),
    )

    @property
    def labels(self) -> list[str]:
        return self.tags


# ---------------------------------------------------------------- versions


class ModelVersionCreate(Input):
    source_run_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    artifact_path: Annotated[str, StringConstraints(max_length=1024)]
    description: Description | None = None
    tags: dict[Key, TagValue] = Field(default_factory=dict, max_length=1000)
    parent: RefIn | None = Field(
        default=None,
        description="The version this one was fine-tuned from, as models:/name/<version>.",
    )


class ModelVersionUpdate(Input):
    description: Description | None = None


class VersionFile(Schema):
    path: str = Field(description="Relative to the version's artifact path.")
    size: int
    sha256: str


class ParentRef(Schema):
    model_name: str
    version: int


class SourceRun(Schema):
    """The training run a version came from: its params and final metrics."""

    id: str
    name: str | None = None
    experiment_id: str
    experiment_name: str | None = None
    status: RunStatus
    start_time: datetime
    end_time: datetime | None = None
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    datasets: list[Dataset] = Field(default_factory=list)


class PendingRequest(Schema):
    """Set when a transition was intercepted (e.g. it needs approval) instead of applied."""

    id: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ModelVersion(Schema):
    model_name: str
    version: int
    stage: str
    description: str | None = None
    source_run_id: str
    artifact_path: str
    created_by: str | None = None
    created_at: datetime
    updated_at: datetime
    stage_updated_at: datetime
    parent: ParentRef | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    validation_metrics: dict[str, MetricValue] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    # Only on detailed single-version responses (get_model_version; alias resolution and
    # version creation with detail=true), never in lists:
    source_run: SourceRun | None = None
    files: list[VersionFile] | None = None
    pending_request: PendingRequest | None = None

    @property
    def run_id(self) -> str:
        return self.source_run_id

    @property
    def uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


class StageTransitionIn(Input):
    stage: StageIn
    note: Note | None = None
    archive_existing: bool = False


class StageTransition(Schema):
    model_name: str
    version: int
    from_stage: str
    to_stage: str
    actor: str
    at: datetime
    note: str | None = None
    request_id: str | None = None


class VersionTagIn(Input):
    key: Key
    value: TagValue


class VersionMetricsIn(Input):
    metrics: dict[Key, MetricValue] = Field(min_length=1, max_length=1000)


# ---------------------------------------------------------------- aliases and history


class AliasSet(Input):
    version: StrictInt | RefIn = Field(
        description="A version number of this model, or a models:/ URI."
    )


class ModelAlias(Schema):
    alias: str
    version: int
    updated_by: str | None = None
    updated_at: datetime


class HistoryEntry(Schema):
    """One row of a model's history: a stage transition or an alias move."""

    type: Literal["stage", "alias"]
    at: datetime
    actor: str
    version: int | None = None
    from_stage: str | None = None
    to_stage: str | None = None
    note: str | None = None
    request_id: str | None = None
    alias: str | None = None
    alias_action: str | None = Field(default=None, description="set | rollback | delete")
    previous_version: int | None = None


# ---------------------------------------------------------------- compare


class MetricComparison(Schema):
    key: str
    source: Literal["training", "validation"]
    higher_is_better: bool
    values: dict[int, MetricValue | None] = Field(description="version -> value (null: absent)")
    differences: dict[int, MetricValue | None] = Field(
        description="version -> value minus the baseline's (the first version compared)"
    )
    best_version: int | None = None


class ParamComparison(Schema):
    key: str
    values: dict[int, str | None]


class MetricSeries(Schema):
    steps: list[int]
    values: list[MetricValue]


class VersionComparison(Schema):
    model_name: str
    baseline: int
    versions: list[ModelVersion]
    metrics: list[MetricComparison]
    changed_params: list[ParamComparison]
    unchanged_params: dict[str, str]
    histories: dict[str, dict[int, MetricSeries]] = Field(
        description="training metric -> version -> (downsampled) history for charts"
    )


# ---------------------------------------------------------------- lineage


class LineageNode(Schema):
    id: str
    type: str = Field(
        description="experiment | run | params | dataset | model_version | deployment | …"
    )
    label: str
    data: dict[str, Any] = Field(default_factory=dict)


class LineageEdge(Schema):
    source: str
    target: str
    relation: str


class LineageGraph(Schema):
    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]


# ---------------------------------------------------------------- garbage collection


class GcReport(Schema):
    deleted: bool
    grace_seconds: int
    blobs_total: int
    referenced: int
    reclaimable: int
    reclaimable_bytes: int
    skipped_recent: int
    stale_uploads: int
    stale_upload_bytes: int
    digests: list[str] = Field(default_factory=list)
    # Object store only: copies of versions laid out by path for KServe (``models/<m>/<v>/``)
    # whose version no longer exists.
    orphan_version_copies: int = 0
    orphan_version_copy_bytes: int = 0

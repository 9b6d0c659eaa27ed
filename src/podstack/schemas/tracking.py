"""Wire schemas for experiments, runs, params, metrics and datasets."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, StringConstraints, field_validator
from typing_extensions import TypedDict

from podstack.schemas.common import Description, Input, Key, Schema

ExperimentName = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f/]+$")
]
RunName = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
]
TagValue = Annotated[str, StringConstraints(max_length=5000)]
ParamValue = Annotated[str, StringConstraints(max_length=6000)]


# JSON has no NaN/Infinity, so the wire carries them as strings ("NaN", "Infinity",
# "-Infinity"; also "nan", "inf", "+inf", "-inf", any case, surrounding blanks). pydantic-core's
# own float validator accepts all of these in lax mode (``allow_inf_nan`` is on by default), and
# the bare JSON literals NaN/Infinity too, so no Python validator runs per value: a 1,000-point
# request used to call one 1,000 times (issue 8). test_metric_value_spellings pins the spellings.
MetricValue = float


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class ExperimentCreate(Input):
    name: ExperimentName
    description: Description | None = None
    tags: dict[Key, TagValue] = Field(default_factory=dict)


class ExperimentUpdate(Input):
    name: ExperimentName | None = None
    description: Description | None = None
    tags: dict[Key, TagValue] | None = None
    archived: bool | None = None


class Experiment(Schema):
    id: str
    name: str
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    archived: bool = False
    created_by: str | None = None
    created_at: datetime
    updated_at: datetime


class RunCreate(Input):
    experiment_id: ExperimentName = Field(
        description="Experiment id or name; an unknown name creates the experiment."
    )
    run_name: RunName | None = None
    tags: dict[Key, TagValue] = Field(default_factory=dict)
    notes: Description | None = None
    # For importers (``podstack import mlflow``): keep the source's start time, and its run id
    # in a form we never mint ourselves (``run-`` + 32 hex, the MLflow id; see
    # server/mlflow_compat/ids.py), so an imported run keeps its MLflow id and a second import
    # finds it instead of copying it again.
    start_time: datetime | None = None
    id: (
        Annotated[
            str, StringConstraints(pattern=r"^run-[0-9a-f]{32}$", min_length=36, max_length=36)
        ]
        | None
    ) = Field(default=None, description="Optional: run- followed by 32 lower-case hex digits.")

    @field_validator("id")
    @classmethod
    def _not_a_padded_id(cls, v: str | None) -> str | None:
        # MLflow clients see our own run-<16 hex> ids as 16 zeros + those 16 hex; an imported
        # id of that shape would be shown as, and resolve to, a different run.
        if v is not None and v.startswith("run-" + "0" * 16):
            raise ValueError("a run id may not start with 16 zeros (that form is reserved)")
        return v


class RunUpdate(Input):
    status: RunStatus | None = None
    end_time: datetime | None = None
    name: RunName | None = None
    notes: Description | None = None


class MetricPoint(Schema):
    key: Key
    value: MetricValue
    step: int = Field(default=0, ge=0, le=2**62)
    timestamp: datetime | None = None


class LogParams(Input):
    params: dict[Key, Any] = Field(min_length=1, max_length=1000)

    @field_validator("params")
    @classmethod
    def _stringify(cls, v: dict[str, Any]) -> dict[str, str]:
        out = {}
        for k, val in v.items():
            if isinstance(val, (dict, list)):
                raise ValueError(f"param {k!r} must be a scalar (string, number or boolean)")
            s = "" if val is None else str(val)
            if len(s) > 6000:
                raise ValueError(f"param {k!r} value is longer than 6000 characters")
            out[k] = s
        return out


Step = Annotated[int, Field(ge=0, le=2**62)]


class MetricPointIn(TypedDict):
    """One point of ``LogMetrics.points``. A TypedDict rather than a model: validating 1,000 of
    them builds plain dicts, ~30% cheaper than 1,000 model instances (issue 8). Unknown keys
    are dropped, as they were for ``MetricPoint``."""

    __pydantic_config__ = ConfigDict(extra="ignore")  # not LogMetrics' "forbid"

    key: Key
    value: MetricValue
    step: NotRequired[Step]  # default 0
    timestamp: NotRequired[datetime | None]  # default: the time of the request


class LogMetrics(Input):
    """Either ``metrics`` (key -> value at one ``step``) or explicit ``points``; one request,
    one bulk insert."""

    metrics: dict[Key, MetricValue] | None = Field(default=None, max_length=1000)
    step: Step | None = None
    timestamp: datetime | None = None
    points: list[MetricPointIn] | None = Field(default=None, max_length=100_000)


class SetTags(Input):
    tags: dict[Key, TagValue] = Field(min_length=1, max_length=1000)


class DatasetIn(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source_uri: Annotated[str, StringConstraints(max_length=4000)] | None = None
    digest: Annotated[str, StringConstraints(max_length=128)] | None = None
    context: Annotated[str, StringConstraints(max_length=64)] | None = None


class Dataset(Schema):
    name: str
    source_uri: str | None = None
    digest: str | None = None
    context: str | None = None
    created_at: datetime | None = None


class Run(Schema):
    id: str
    experiment_id: str
    name: str | None = None
    status: RunStatus
    start_time: datetime
    end_time: datetime | None = None
    user: str | None = None
    notes: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    datasets: list[Dataset] = Field(default_factory=list)


class Condition(Input):
    kind: Literal["metric", "param", "tag", "attribute"]
    key: Key
    op: Literal["=", "!=", ">", ">=", "<", "<=", "contains"]
    value: str | float | int


class OrderBy(Input):
    kind: Literal["metric", "param", "attribute"] = "attribute"
    key: Key = "start_time"
    desc: bool = True


class RunSearch(Input):
    experiment_ids: list[ExperimentName] | None = Field(default=None, max_length=100)
    status: RunStatus | None = None
    filter: Annotated[str, StringConstraints(max_length=4000)] | None = Field(
        default=None,
        description="e.g. metrics.accuracy >= 0.9 and params.lr = '0.001'",
    )
    conditions: list[Condition] = Field(default_factory=list, max_length=50)
    order_by: OrderBy | str | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    page_token: str | None = None

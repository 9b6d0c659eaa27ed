"""Wire schemas for experiments, runs, params, metrics and datasets."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, field_validator

from podstack.schemas.common import Description, Input, Key, Schema

ExperimentName = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f/]+$")
]
RunName = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
]
TagValue = Annotated[str, StringConstraints(max_length=5000)]
ParamValue = Annotated[str, StringConstraints(max_length=6000)]


def _float_or_special(v: Any) -> Any:
    """JSON has no NaN/Infinity, so the wire carries them as strings; accept both spellings."""
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("nan",):
            return math.nan
        if low in ("inf", "+inf", "infinity", "+infinity"):
            return math.inf
        if low in ("-inf", "-infinity"):
            return -math.inf
    return v


MetricValue = Annotated[float, BeforeValidator(_float_or_special)]


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


class LogMetrics(Input):
    """Either ``metrics`` (key -> value at one ``step``) or explicit ``points``; one request,
    one bulk insert."""

    metrics: dict[Key, MetricValue] | None = Field(default=None, max_length=1000)
    step: int | None = Field(default=None, ge=0, le=2**62)
    timestamp: datetime | None = None
    points: list[MetricPoint] | None = Field(default=None, max_length=100_000)


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

"""Wire schemas for scheduled training: schedules, their executors and execution history."""

from __future__ import annotations

import os
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
)

from podstack.schemas.common import Description, Input, Key, Schema

ScheduleName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
]
EnvName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]
EnvValue = Annotated[str, StringConstraints(max_length=32_000)]
Argument = Annotated[str, StringConstraints(max_length=32_000)]
Seconds = Annotated[int, Field(ge=1, le=30 * 24 * 3600)]
SECRET_MASK = "********"


class OverlapPolicy(StrEnum):
    SKIP = "skip"  # a tick while the previous execution still runs is recorded as skipped
    ALLOW = "allow"


class MisfirePolicy(StrEnum):
    RUN_LATEST = "run_latest"  # after downtime: the latest missed tick once, within the grace
    SKIP = "skip"  # missed ticks are only recorded as skipped


class Trigger(StrEnum):
    CRON = "cron"
    MANUAL = "manual"
    CATCH_UP = "catch_up"


class ExecutionStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED_OVERLAP = "skipped_overlap"
    SKIPPED_MISFIRE = "skipped_misfire"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = frozenset({ExecutionStatus.QUEUED, ExecutionStatus.RUNNING})


def _argument_list(v: Any) -> Any:
    # No shell ever runs the command: a single string would need one to split it (and would
    # then invite injection through quoting), so it is refused with the fix spelled out.
    if isinstance(v, str):
        raise ValueError(
            'command must be a list of arguments such as ["python", "train.py", '
            '"--epochs", "3"], not one shell string; it is run without a shell'
        )
    return v


Command = Annotated[
    list[Argument], BeforeValidator(_argument_list), Field(min_length=1, max_length=1000)
]


class LocalExecutor(Input):
    """Runs ``command`` on the server host in its own process group."""

    type: Literal["local"] = "local"
    command: Command
    working_dir: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=200)

    @field_validator("command")
    @classmethod
    def _program(cls, v: list[str]) -> list[str]:
        if not v[0].strip():
            raise ValueError("the first argument (the program to run) must not be empty")
        if len(v) == 1 and any(c.isspace() for c in v[0]) and not os.path.isfile(v[0]):
            # ["python train.py"] is a shell command line in disguise: no shell splits it.
            raise ValueError(
                f"command {v!r} is one argument containing spaces, not one shell string; give "
                'each argument separately, e.g. ["python", "train.py"] (it is run '
                "without a shell)"
            )
        return v


class WebhookExecutor(Input):
    """POSTs a signed job description to an external orchestrator (Airflow, Prefect, CI),
    which reports back through the callback URL."""

    type: Literal["webhook"]
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    secret: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        description="HMAC key for the Podstack-Signature header (16+ characters); shown "
        f"back as {SECRET_MASK!r}."
    )

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, v: str) -> str:
        if v != SECRET_MASK and len(v) < 16:
            raise ValueError("secret must be at least 16 characters (a random string)")
        return v

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an absolute http:// or https:// URL")
        return v


ResourceQuantity = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[0-9]+(\.[0-9]+)?[A-Za-z]{0,2}$")
]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=253)]
LabelValue = Annotated[str, StringConstraints(max_length=63)]


class KubernetesExecutor(Input):
    """Submits a Kubernetes Job running ``image`` (optionally ``command``)."""

    type: Literal["kubernetes"]
    image: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    command: Command | None = None
    namespace: (
        Annotated[str, StringConstraints(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
        | None
    ) = None
    gpu_type: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    gpu_count: int = Field(default=1, ge=1, le=16)
    cpu: ResourceQuantity | None = None
    memory: ResourceQuantity | None = None
    backoff_limit: int = Field(default=0, ge=0, le=10)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=200)
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=50)
    service_account: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = None


# A Ray job's files come from a URI the cluster fetches itself (a zip over https, a bucket):
# a local path would be read and uploaded by the *server* (Ray's client packages it), which
# would let an editor ship any server file (its database, its keys) to the cluster.
RAY_REMOTE_URI_SCHEMES = ("https", "http", "s3", "gs", "az", "abfss")
RayUri = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
GpuType = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]


def _remote_uri(v: str, what: str) -> str:
    from urllib.parse import urlsplit

    if urlsplit(v).scheme not in RAY_REMOTE_URI_SCHEMES:
        raise ValueError(
            f"{what} must be a URI the Ray cluster downloads itself ("
            + ", ".join(f"{s}://" for s in RAY_REMOTE_URI_SCHEMES)
            + "), e.g. https://example.com/train.zip; a path on the Podstack server is not "
            "uploaded (that would expose server files)"
        )
    return v


class RayRuntimeEnv(Input):
    """The subset of Ray's ``runtime_env`` a schedule may set (no local paths: see above)."""

    working_dir: RayUri | None = None
    py_modules: list[RayUri] = Field(default_factory=list, max_length=50)
    pip: list[Annotated[str, StringConstraints(min_length=1, max_length=1000)]] = Field(
        default_factory=list, max_length=200
    )
    env_vars: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=200)

    @field_validator("working_dir")
    @classmethod
    def _working_dir(cls, v: str | None) -> str | None:
        return v if v is None else _remote_uri(v, "working_dir")

    @field_validator("py_modules")
    @classmethod
    def _py_modules(cls, v: list[str]) -> list[str]:
        return [_remote_uri(u, "each py_modules entry") for u in v]


class RayExecutor(Input):
    """Submits a Ray job (Job Submission API) running ``entrypoint`` on the cluster whose
    dashboard / job server is at ``address``."""

    type: Literal["ray"]
    address: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="The Ray dashboard (job server) URL, e.g. http://ray-head:8265."
    )
    entrypoint: Command
    runtime_env: RayRuntimeEnv = Field(default_factory=RayRuntimeEnv)
    num_cpus: float | None = Field(default=None, gt=0, le=1024)
    num_gpus: float | None = Field(default=None, ge=0, le=64)
    gpu_type: GpuType | None = Field(
        default=None,
        description="Ray accelerator type (A100, T4, …): the job needs a node with resource "
        "accelerator_type:<gpu_type>.",
    )

    @field_validator("address")
    @classmethod
    def _http_url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "address must be the Ray dashboard's http:// or https:// URL, e.g. "
                "http://ray-head:8265 (not ray:// nor host:port)"
            )
        return v

    @field_validator("entrypoint")
    @classmethod
    def _program(cls, v: list[str]) -> list[str]:
        if not v[0].strip():
            raise ValueError("the first argument (the program to run) must not be empty")
        return v


def _executor_tag(v: Any) -> str:
    # {"command": [...]} alone means the local executor, the default.
    if isinstance(v, dict):
        return str(v.get("type", "local"))
    return str(getattr(v, "type", "local"))


ExecutorConfig = Annotated[
    Annotated[LocalExecutor, Tag("local")]
    | Annotated[WebhookExecutor, Tag("webhook")]
    | Annotated[KubernetesExecutor, Tag("kubernetes")]
    | Annotated[RayExecutor, Tag("ray")],
    Discriminator(
        _executor_tag,
        custom_error_type="executor_type",
        custom_error_message="executor type must be one of: local, webhook, kubernetes, ray",
    ),
]

ConfigValue = str | int | float | bool | None


def _check_config(v: dict[str, Any]) -> dict[str, Any]:
    for k, val in v.items():
        if isinstance(val, (dict, list)):
            raise ValueError(f"config {k!r} must be a scalar (string, number or boolean)")
        if isinstance(val, str) and len(val) > 6000:
            raise ValueError(f"config {k!r} is longer than 6000 characters")
    return v


class ScheduleCreate(Input):
    name: ScheduleName
    experiment_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="Experiment id or name (it must exist)."
    )
    cron: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="5-field cron (minute hour day-of-month month day-of-week) or @daily, "
        "@hourly, @weekly, @monthly, @yearly."
    )
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    config: dict[Key, ConfigValue] = Field(
        default_factory=dict, max_length=1000, description="Training parameters, logged as params."
    )
    executor: ExecutorConfig
    description: Description | None = None
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_LATEST
    misfire_grace_seconds: Seconds | None = None
    timeout_seconds: Seconds | None = None
    paused: bool = False

    @field_validator("config")
    @classmethod
    def _config(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_config(v)


class ScheduleUpdate(Input):
    """Only the fields sent change. ``config`` and ``executor`` are replaced as a whole (a
    webhook secret sent as ``********`` or left out keeps the stored one)."""

    experiment_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    cron: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    config: dict[Key, ConfigValue] | None = Field(default=None, max_length=1000)
    executor: dict[str, Any] | None = None
    description: Description | None = None
    overlap_policy: OverlapPolicy | None = None
    misfire_policy: MisfirePolicy | None = None
    misfire_grace_seconds: Seconds | None = None
    timeout_seconds: Seconds | None = None

    @field_validator("config")
    @classmethod
    def _config(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return v if v is None else _check_config(v)


class Execution(Schema):
    id: str
    schedule_id: str
    schedule_name: str | None = None
    schedule_version: int
    scheduled_time: datetime
    trigger: Trigger
    status: ExecutionStatus
    run_id: str | None = None
    executor: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    exit_code: int | None = None
    log_tail: str | None = None
    log_artifact: str | None = Field(default=None, description="Run artifact path of the log.")
    message: str | None = Field(default=None, description="Why it failed, was skipped or …")
    cancel_requested: bool = False
    external_id: str | None = Field(default=None, description="Kubernetes Job name, …")
    created_at: datetime


class Schedule(Schema):
    id: str
    name: str
    description: str | None = None
    experiment_id: str | None = None
    experiment_name: str | None = None
    cron: str
    timezone: str
    cron_description: str
    config: dict[str, Any] = Field(default_factory=dict)
    executor: ExecutorConfig
    overlap_policy: OverlapPolicy
    misfire_policy: MisfirePolicy
    misfire_grace_seconds: int | None = None
    timeout_seconds: int | None = None
    paused: bool
    deleted: bool = False
    next_fire_at: datetime | None = None
    next_fire_times: list[datetime] = Field(default_factory=list)
    version: int
    created_by: str | None = None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    last_execution: Execution | None = None


class CronPreview(Schema):
    cron: str
    timezone: str
    description: str
    next_fire_times: list[datetime]


class ExecutionCallback(Input):
    """What an external orchestrator (webhook executor) reports when the job is over."""

    status: Literal["succeeded", "failed"]
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    message: Annotated[str, StringConstraints(max_length=2000)] | None = None
    log_tail: Annotated[str, StringConstraints(max_length=64_000)] | None = None

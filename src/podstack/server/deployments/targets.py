"""Deployment targets: where a deployment's model server runs.

A target is configured by an admin (``PUT /api/v1/deployment-targets/<name>``) and built from
that row each time it is needed. The built-in ``local`` target always exists (an admin may
reconfigure it). Every kind implements the same small interface; the manager drives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from podstack.errors import ValidationFailed
from podstack.server.artifacts.store import BlobStore
from podstack.server.config import Settings

LOCAL = "local"
KUBERNETES = "kubernetes"
RAY = "ray"
KINDS = (LOCAL, KUBERNETES, RAY)
MAX_REPLICAS = 100


@dataclass(frozen=True)
class RunSpec:
    """Everything a target needs to run one version of a deployment."""

    deployment_id: str
    endpoint: str
    model_name: str
    version: int
    version_id: int
    format: str
    files: list[tuple[str, str]]  # (path relative to the version root, sha256)
    min_replicas: int
    max_replicas: int
    gpu_type: str | None
    trusted: bool
    signature: dict[str, Any] | None = None

    def key(self) -> dict[str, Any]:
        """What, when it changes, needs a new server."""
        return {
            "version_id": self.version_id,
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "gpu_type": self.gpu_type,
        }


class StartFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Probe:
    ok: bool
    latency_ms: float | None
    message: str
    # Target facts learnt while probing (e.g. the InferenceService URL).
    updates: dict[str, Any] = field(default_factory=dict)


class Target:
    kind: ClassVar[str]

    def __init__(self, name: str, config: dict[str, Any], settings: Settings, store: BlobStore):
        self.name = name
        self.config = dict(config)
        self.settings = settings
        self.store = store

    @property
    def trusted(self) -> bool:
        return bool(self.config.get("trusted_formats", False))

    def gpu_types(self) -> list[str]:
        raise NotImplementedError

    # Whether the target itself scales replicas between min_replicas and max_replicas with
    # load. One that cannot refuses max_replicas > min_replicas rather than ignore it.
    autoscales: ClassVar[bool] = False

    def validate(self, gpu_type: str | None, min_replicas: int, max_replicas: int) -> str | None:
        """Checks the request against what this target offers; returns the canonical
        ``gpu_type`` (None for CPU). Raises one ValidationFailed naming every problem."""
        gpu, problems = self.check(gpu_type, min_replicas, max_replicas)
        if problems:
            raise combine(problems)
        return gpu

    def check(
        self, gpu_type: str | None, min_replicas: int, max_replicas: int
    ) -> tuple[str | None, list[ValidationFailed]]:
        """Every problem of the request on this target (none raised): the canonical
        ``gpu_type`` and the list of problems."""
        problems: list[ValidationFailed] = []
        if min_replicas < 0 or max_replicas < 1 or max_replicas > MAX_REPLICAS:
            problems.append(
                ValidationFailed(
                    f"Replicas out of range: min_replicas must be >= 0 and max_replicas between "
                    f"1 and {MAX_REPLICAS} (got min_replicas={min_replicas}, "
                    f"max_replicas={max_replicas}).",
                    {"min_replicas": min_replicas, "max_replicas": max_replicas},
                )
            )
        if min_replicas > max_replicas:
            problems.append(
                ValidationFailed(
                    f"min_replicas ({min_replicas}) cannot be greater than max_replicas "
                    f"({max_replicas}).",
                    {"min_replicas": min_replicas, "max_replicas": max_replicas},
                )
            )
        elif max_replicas > min_replicas and not self.autoscales:
            problems.append(
                ValidationFailed(
                    f"Target {self.name!r} ({self.kind}) cannot autoscale: it runs exactly "
                    f"min_replicas replicas, so max_replicas must equal min_replicas (got "
                    f"min_replicas={min_replicas}, max_replicas={max_replicas}). Set "
                    f"max_replicas={min_replicas} (or min_replicas={max_replicas} for a fixed "
                    f"{max_replicas}), or deploy to a kubernetes target, which scales between "
                    "them.",
                    {
                        "min_replicas": min_replicas,
                        "max_replicas": max_replicas,
                        "target": self.name,
                        "rule": "max_replicas == min_replicas",
                    },
                )
            )
        if gpu_type is None or gpu_type.lower() == "cpu":
            return None, problems
        offered = self.gpu_types()
        for g in offered:
            if g.lower() == gpu_type.lower():
                return (None if g == "cpu" else g), problems
        problems.append(
            ValidationFailed(
                f"Target {self.name!r} does not offer GPU type {gpu_type!r}. It offers: "
                f"{', '.join(offered)}.",
                {"gpu_type": gpu_type, "target": self.name, "offered": offered},
            )
        )
        return None, problems

    # Runtime operations (blocking; called by the manager outside any transaction).
    def start(self, spec: RunSpec) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self, runtime: dict[str, Any]) -> None:
        raise NotImplementedError

    def alive(self, runtime: dict[str, Any]) -> bool:
        raise NotImplementedError

    def probe(self, runtime: dict[str, Any]) -> Probe:
        raise NotImplementedError

    def base_url(self, runtime: dict[str, Any]) -> str | None:
        """Where the Open Inference Protocol of this runtime answers (for the gateway)."""
        raise NotImplementedError

    def public_url(self, endpoint: str, runtime: dict[str, Any] | None) -> str | None:
        """The endpoint URL users see, when the target has its own (None: the gateway)."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"gpu_types": self.gpu_types(), "trusted_formats": self.trusted}


def combine(problems: list[ValidationFailed]) -> ValidationFailed:
    """One 422 for every problem of a request: the single problem as it is, or all of them
    numbered in the message, each in ``details["problems"]`` (the first problem's details
    are also kept at the top level, where single-problem callers look)."""
    if len(problems) == 1:
        return problems[0]
    details: dict[str, Any] = {}
    for p in reversed(problems):
        if isinstance(p.details, dict):
            details.update(p.details)
    details["problems"] = [
        {"message": p.message, **(p.details if isinstance(p.details, dict) else {})}
        for p in problems
    ]
    listed = " ".join(f"({i}) {p.message}" for i, p in enumerate(problems, start=1))
    return ValidationFailed(f"The request has {len(problems)} problems: {listed}", details)


def work_dir(settings: Settings) -> Path:
    return Path(settings.home) / "deployments"

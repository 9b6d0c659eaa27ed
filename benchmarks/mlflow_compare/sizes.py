"""Workload sizes: the issue's by default, each overridable by an environment variable for
quick iterations (``BENCH_QUICK=1`` shrinks them all at once)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Sizes:
    w1_keys: int = 20
    w1_steps: int = 1000
    w1_batch: int = 1000
    w2_versions: int = 500
    w3_threads: int = 8
    w3_per_thread: int = 25
    w4_models: int = 2000
    w4_teams: int = 20
    w4_searches: int = 200
    # Cap on each search loop (label / name): MLflow on PostgreSQL needs seconds per label
    # search, and 200 of them would take the whole run. Capped loops report how many ran.
    # 15 s since each suite runs 3 times (the median of 3 capped loops).
    w4_search_max_s: int = 15
    w5_sequential: int = 1000
    w5_threads: int = 16
    w5_seconds: int = 10
    w6_mib: int = 256

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


QUICK = Sizes(
    w1_keys=20,
    w1_steps=100,
    w2_versions=50,
    w3_threads=4,
    w3_per_thread=5,
    w4_models=200,
    w4_searches=20,
    w5_sequential=100,
    w5_threads=4,
    w5_seconds=2,
    w6_mib=16,
)

# W4's "how latency grows" levels, for us only.
DEFAULT_SCALE_LEVELS = (20_000, 100_000)


def _env_list(name: str, default: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, default).split(",") if x.strip()]


def from_env() -> Sizes:
    """``BENCH_QUICK=1`` for the small preset; ``BENCH_W1_STEPS=200`` etc. for single sizes."""
    base = QUICK if os.environ.get("BENCH_QUICK", "") not in ("", "0") else Sizes()
    overrides = {}
    for f in fields(Sizes):
        raw = os.environ.get(f"BENCH_{f.name.upper()}")
        if raw:
            overrides[f.name] = int(raw)
    return Sizes(**{**asdict(base), **overrides})


def scale_levels() -> list[int]:
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    default = "2000,5000" if quick else ",".join(str(n) for n in DEFAULT_SCALE_LEVELS)
    return [int(x) for x in _env_list("BENCH_W4_SCALE", default)]


def workloads() -> list[str]:
    return [w.upper() for w in _env_list("BENCH_WORKLOADS", "W1,W2,W3,W4,W5,W6")]


def backends() -> list[str]:
    return _env_list("BENCH_BACKENDS", "sqlite,postgresql")


def products() -> list[str]:
    return _env_list("BENCH_PRODUCTS", "mlflow,podstack")

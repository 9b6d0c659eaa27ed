"""Fixtures for the Ray tests: the one real Ray cluster of the test run (tests/ray_cluster.py)
and schedulers driven tick by tick against it.

Every Ray test runs once, in the SQLite pass (``one_db``): what they check is the exchange
with Ray, which does not depend on the database (the schedule and execution rules they pass
through are covered on both databases under tests/server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from podstack.server.artifacts.store import BlobStore
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.schedules.scheduler import FakeClock, Scheduler
from tests.ray_cluster import ray_cluster  # noqa: F401 - the session fixture, shared here


@pytest.fixture
def ray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's client library reads these; nothing here may send usage data off the machine."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture
def make_scheduler(
    db: Database, settings: Settings, ray_env: None
) -> Iterator[Callable[..., Scheduler]]:
    made: list[Scheduler] = []

    def make(clock: FakeClock, *, api_url: str, **kw: Any) -> Scheduler:
        s = settings.model_copy(update=kw)
        sched = Scheduler(db, s, BlobStore(s.artifacts_path), clock=clock, api_url=api_url)
        made.append(sched)
        return sched

    yield make
    for sched in made:
        sched.shutdown(grace=2)

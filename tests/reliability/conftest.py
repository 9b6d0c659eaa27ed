"""Fixtures for server processes on their own database and artifact store.

``spec`` is one deployment (database + home + store); ``start_server(spec, **env)`` starts a
``podstack server`` process on it (several may run on one spec: replicas) and every process
still alive at the end of the test is killed.

Profiles: ``PODSTACK_RELIABILITY_PROFILE=long`` (``make reliability``) runs the load and replica
tests longer and wider; the default ``short`` keeps ``make test`` inside its time budget.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.reliability.servers import ServerProcess, ServerSpec, create_database, drop_database

PROFILE = os.environ.get("PODSTACK_RELIABILITY_PROFILE", "short")
# Machine-readable figures (RELIABILITY.md quotes them) go here.
RESULTS_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"


@pytest.fixture
def spec(tmp_path: Path) -> Iterator[ServerSpec]:
    url = create_database(tmp_path)
    home = tmp_path / "home"
    yield ServerSpec(database_url=url, home=home, artifacts=home / "artifacts")
    drop_database(url)


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(spec: ServerSpec, *, wait: bool = True, **env: str) -> ServerProcess:
        proc = ServerProcess(spec, **env)
        started.append(proc)
        return proc.wait_ready() if wait else proc

    yield start
    for proc in started:
        proc.kill()


def record(name: str, figures: dict[str, object]) -> None:
    """Saves a test's figures as ``<name>-<db>.json`` for RELIABILITY.md."""
    import json

    from tests.conftest import current_db_kind

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{current_db_kind()}.json"
    path.write_text(json.dumps(figures, indent=1, default=str))

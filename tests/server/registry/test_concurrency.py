"""Version numbering under concurrent creators, proved on PostgreSQL over real sockets.

SQLite serialises every write transaction (BEGIN IMMEDIATE), so concurrent creators cannot
interleave there; the interesting case is PostgreSQL, where they really run in parallel and
only the model row lock + the unique (model, version) constraint keep numbers gap-free.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, LiveServer, current_db_kind
from tests.server.registry.helpers import make_run

pytestmark = [
    # The suite's convention: deselected from the SQLite pass of `make test`…
    pytest.mark.postgres_only,
    # …and a clear reason if run on SQLite some other way.
    pytest.mark.skipif(
        current_db_kind() != "postgresql",
        reason="needs PostgreSQL: SQLite serialises all writers, so there is no race to test",
    ),
]


def _fire(live_server: LiveServer, model: str, run_id: str, n: int) -> list[httpx.Response]:
    """``n`` threads, each with its own HTTP client (own connection), released together."""
    barrier = threading.Barrier(n)

    def create(_: int) -> httpx.Response:
        with httpx.Client(
            base_url=live_server.url + "/api/v1",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=120,
        ) as c:
            c.get("/registered-models")  # open the connection before the race starts
            barrier.wait()
            return c.post(
                f"/registered-models/{model}/versions",
                json={"source_run_id": run_id, "artifact_path": "model.pt"},
            )

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(create, range(n)))


def test_32_concurrent_creators_get_versions_1_to_32(
    api: httpx.Client, live_server: LiveServer
) -> None:
    run_id = make_run(api)
    assert api.post("/registered-models", json={"name": "race"}).status_code == 201
    responses = _fire(live_server, "race", run_id, 32)
    assert [r.status_code for r in responses] == [201] * 32, [r.text for r in responses]
    numbers = sorted(r.json()["version"] for r in responses)
    assert numbers == list(range(1, 33))
    listed = api.get("/registered-models/race/versions", params={"limit": 100}).json()["items"]
    assert sorted(v["version"] for v in listed) == list(range(1, 33))
    # The counter moved exactly 32 times.
    r = api.post(
        "/registered-models/race/versions",
        json={"source_run_id": run_id, "artifact_path": "model.pt"},
    )
    assert r.json()["version"] == 33


def test_concurrent_auto_registration_registers_once(
    api: httpx.Client, live_server: LiveServer
) -> None:
    run_id = make_run(api)
    responses = _fire(live_server, "born-in-a-race", run_id, 16)
    assert [r.status_code for r in responses] == [201] * 16, [r.text for r in responses]
    assert sorted(r.json()["version"] for r in responses) == list(range(1, 17))
    models = api.get("/registered-models", params={"q": "born-in-a-race"}).json()["items"]
    assert len(models) == 1
    creates = api.get(
        "/audit", params={"action": "model.create", "target_id": "born-in-a-race"}
    ).json()["items"]
    assert len(creates) == 1

"""Several scheduler loops on one PostgreSQL never fire or start an execution twice."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from podstack.server.artifacts.store_factory import open_store
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.schedules.scheduler import FakeClock, Scheduler
from tests.server.schedules.conftest import WebhookReceiver, create, executions

SCHEDULES = 6
STEPS = 20  # 100 minutes in 5-minute steps


# Concurrent replicas rely on FOR UPDATE SKIP LOCKED; on SQLite one process schedules.
@pytest.mark.postgres_only
def test_two_scheduler_loops_never_duplicate_an_execution(
    db: Database,
    settings: Settings,
    experiment: str,
    receiver: WebhookReceiver,
) -> None:
    start = datetime(2024, 11, 1, tzinfo=UTC)
    ids = [
        create(
            db,
            settings,
            start,
            name=f"every-5-{i}",
            cron="*/5 * * * *",
            overlap_policy="allow",
            executor={"type": "webhook", "url": receiver.url, "secret": "s" * 32},
        )
        for i in range(SCHEDULES)
    ]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    fired: Counter[str] = Counter()

    def loop(worker: str) -> None:
        # Each loop is a replica: its own engine (connection pool), clock and executors.
        own_db = Database(settings.database_url, pool_size=2)
        clock = FakeClock(start)
        sched = Scheduler(
            own_db,
            settings,
            open_store(settings),
            clock=clock,
            worker_id=worker,
            api_url="http://127.0.0.1:9",
        )
        try:
            for step in range(1, STEPS + 1):
                clock.set(start + timedelta(minutes=5 * step))
                barrier.wait(timeout=60)  # both replicas tick the same instant
                fired[worker] += sched.fire_due()
                sched.dispatch()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            own_db.dispose()

    threads = [threading.Thread(target=loop, args=(f"replica-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors

    rows = executions(db)
    expected = {
        (sid, start + timedelta(minutes=5 * step)) for sid in ids for step in range(1, STEPS + 1)
    }
    assert len(rows) == len(expected) == SCHEDULES * STEPS
    assert {(r.schedule_id, r.scheduled_time) for r in rows} == expected
    assert sum(fired.values()) == len(expected)
    assert all(fired[w] > 0 for w in ("replica-0", "replica-1")), fired  # both did work
    # Each execution was started (delivered) exactly once, by one of the replicas.
    keys = Counter(json.loads(body)["idempotency_key"] for _, body in receiver.requests)
    assert set(keys) == {r.id for r in rows}
    assert set(keys.values()) == {1}
    assert {r.status for r in rows} == {"running"}

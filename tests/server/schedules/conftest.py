"""Fixtures for scheduled training: a fake clock, schedulers driven tick by tick, helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from podstack.schemas import schedules as sch
from podstack.schemas import tracking as tsch
from podstack.server.artifacts.store_factory import open_store
from podstack.server.auth.principal import Principal
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.schedules import service
from podstack.server.schedules.models import Schedule, ScheduleExecution
from podstack.server.schedules.scheduler import FakeClock, Scheduler
from podstack.server.tracking import service as tracking

ADMIN = Principal(username="admin", role="admin", user_id=1)
T0 = datetime(2024, 11, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def make_scheduler(db: Database, settings: Settings) -> Iterator[Callable[..., Scheduler]]:
    """make_scheduler(clock, **setting_overrides, api_url=..., kubernetes_api=...)."""
    made: list[Scheduler] = []

    def make(clock: FakeClock, *, api_url: str = "http://127.0.0.1:9", **kw: Any) -> Scheduler:
        extra = {
            k: kw.pop(k) for k in ("kubernetes_api", "webhook_transport", "worker_id") if k in kw
        }
        s = settings.model_copy(update=kw)
        # The store the settings name (a bucket when PODSTACK_TEST_STORE=s3), opened as the
        # server opens it.
        sched = Scheduler(db, s, open_store(s), clock=clock, api_url=api_url, **extra)
        made.append(sched)
        return sched

    yield make
    for sched in made:  # never leave a test's processes behind
        sched.shutdown(grace=2)


@pytest.fixture
def experiment(db: Database) -> str:
    with db.session() as s:
        return tracking.create_experiment(s, "admin", tsch.ExperimentCreate(name="nightly")).id


def create(
    db: Database,
    settings: Settings,
    now: datetime,
    *,
    name: str = "nightly-train",
    experiment_id: str = "nightly",
    cron: str = "0 2 * * *",
    timezone: str = "UTC",
    executor: dict[str, Any] | None = None,
    principal: Principal = ADMIN,
    **fields: Any,
) -> str:
    body = sch.ScheduleCreate.model_validate(
        {
            "name": name,
            "experiment_id": experiment_id,
            "cron": cron,
            "timezone": timezone,
            "executor": executor or {"command": ["true"]},
            **fields,
        }
    )
    with db.session() as s:
        return service.create_schedule(s, principal, body, settings=settings, now=now).id


def executions(db: Database, schedule_id: str | None = None) -> list[ScheduleExecution]:
    with db.session(readonly=True) as s:
        q = select(ScheduleExecution).order_by(ScheduleExecution.scheduled_time)
        if schedule_id:
            q = q.where(ScheduleExecution.schedule_id == schedule_id)
        rows = list(s.scalars(q))
        s.expunge_all()  # usable after the read-only transaction rolls back
        return rows


def schedule_row(db: Database, schedule_id: str) -> Schedule:
    with db.session(readonly=True) as s:
        row = s.get(Schedule, schedule_id)
        assert row is not None
        s.expunge_all()
        return row


class WebhookReceiver:
    """A real HTTP server on the loopback interface recording what it is sent. ``statuses``
    are answered in order (then 200)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/train"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()

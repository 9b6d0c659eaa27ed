"""Several replicas on one PostgreSQL: delivery loops share the outbox without ever sending
a delivery twice (claims are leased under FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import select

from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.events import service as events
from podstack.server.notifications import (
    background,
    sinks,  # noqa: F401 (subscribes the outbox)
)
from podstack.server.notifications.delivery import DeliveryConfig, claim_webhooks
from podstack.server.notifications.models import WebhookAttempt, WebhookDelivery
from tests.server.notifications.receivers import WebhookReceiver

pytestmark = pytest.mark.postgres_only
EVENTS = 150


def _fill(api: httpx.Client, db: Database, url: str) -> None:
    assert api.post("/webhooks", json={"url": url}).status_code == 201
    with db.session() as s:
        for i in range(EVENTS):
            events.emit(s, "model.created", {"model_name": f"m{i}"}, "admin")


def test_two_delivery_loops_never_double_send(
    api: httpx.Client, db: Database, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    _fill(api, db, webhook_receiver.url)
    webhook_receiver.mode = "slow"
    webhook_receiver.delay = 0.01
    cfg = DeliveryConfig(batch_size=5, concurrency=4, poll_interval_seconds=0.05)
    replicas = [Database(settings.database_url, pool_size=4) for _ in range(2)]
    stops: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    ready = threading.Barrier(3)

    def replica(database: Database) -> None:
        async def main() -> None:
            stop = asyncio.Event()
            stops.append((asyncio.get_running_loop(), stop))
            ready.wait()
            await background.run(SimpleNamespace(db=database, settings=settings), stop, cfg)

        asyncio.run(main())

    threads = [threading.Thread(target=replica, args=(d,)) for d in replicas]
    for t in threads:
        t.start()
    ready.wait()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            with db.session(readonly=True) as s:
                left = s.scalars(
                    select(WebhookDelivery.id).where(WebhookDelivery.status != "delivered")
                ).all()
            if not left:
                break
            time.sleep(0.1)
    finally:
        for loop, stop in stops:
            loop.call_soon_threadsafe(stop.set)
        for t in threads:
            t.join(timeout=30)
        for d in replicas:
            d.dispose()
    assert not left, f"{len(left)} deliveries not delivered"
    sent = Counter(r.headers["Podstack-Webhook-Id"] for r in webhook_receiver.received)
    assert len(sent) == EVENTS
    assert set(sent.values()) == {1}, [k for k, n in sent.items() if n > 1]
    with db.session(readonly=True) as s:
        workers = Counter(s.scalars(select(WebhookAttempt.worker)).all())
    assert sum(workers.values()) == EVENTS and len(workers) == 2  # both replicas worked


def test_concurrent_claims_are_disjoint(
    api: httpx.Client, db: Database, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    _fill(api, db, webhook_receiver.url)
    cfg = DeliveryConfig(batch_size=40)
    claimed: dict[str, list[str]] = {}
    start = threading.Barrier(4)

    def claim(name: str) -> None:
        database = Database(settings.database_url, pool_size=1)
        try:
            start.wait()
            claimed[name] = [j.delivery_id for j in claim_webhooks(database, name, cfg)]
        finally:
            database.dispose()

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    ids = [i for batch in claimed.values() for i in batch]
    assert len(ids) == len(set(ids)) == EVENTS  # 4 x 40 >= 150: every row once, none twice

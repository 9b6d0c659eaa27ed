"""The delivery loop: sends due webhook deliveries and emails from the outbox.

Every replica runs one; claims are leased under ``FOR UPDATE SKIP LOCKED`` (see
``delivery.py``), so replicas share the work without sending anything twice. Database and
network work runs in a thread so the server's event loop never waits on a receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from podstack.server.notifications.delivery import (
    DeliveryConfig,
    process_emails,
    process_webhooks,
    worker_name,
)

log = logging.getLogger("podstack.notifications")


async def run(state: Any, stop: asyncio.Event, cfg: DeliveryConfig | None = None) -> None:
    cfg = cfg or getattr(state, "delivery_config", None) or DeliveryConfig()
    worker = worker_name()
    while not stop.is_set():
        busy = False
        try:
            hooks = await asyncio.to_thread(
                process_webhooks, state.db, cfg, worker, settings=state.settings
            )
            mails = await asyncio.to_thread(process_emails, state.db, state.settings, cfg, worker)
            # A full batch means more may be waiting: go again without sleeping.
            busy = cfg.batch_size in (hooks.claimed, mails.claimed)
        except Exception:  # keep delivering whatever one pass hit (DB restart, bad row)
            log.exception("notification delivery pass failed")
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=cfg.poll_interval_seconds)

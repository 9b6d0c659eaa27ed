"""Runs the scheduler while the server lives (started by the app lifespan when
``settings.background_workers`` is on). Every replica may run it: see ``scheduler.py``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio.to_thread

from podstack.server.schedules.scheduler import Scheduler

log = logging.getLogger("podstack.scheduler")


async def run(state: Any, stop: asyncio.Event) -> None:
    scheduler = Scheduler(state.db, state.settings, state.store)
    state.scheduler = scheduler  # endpoints wake it for Run now and cancel
    log.info(
        "scheduler %s started (jobs reach the API at %s)", scheduler.worker_id, scheduler.api_url
    )
    try:
        while not stop.is_set():
            try:
                await anyio.to_thread.run_sync(scheduler.tick)
            except Exception:
                log.exception("scheduler tick failed")
            interval = scheduler.interval()
            # Sleep until the interval passes, the server stops, or an endpoint wakes us.
            waiter = asyncio.ensure_future(anyio.to_thread.run_sync(scheduler.wait, interval))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not waiter.done():
                scheduler.wake()  # let the waiting thread return
                await waiter
    finally:
        await anyio.to_thread.run_sync(scheduler.shutdown)
        state.scheduler = None

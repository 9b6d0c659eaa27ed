"""Deletes idempotency keys older than 24 h (also done on write, at most every 10 min)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.concurrency import run_in_threadpool

from podstack.server.idempotency import service

INTERVAL_SECONDS = 3600.0


async def run(state: Any, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await run_in_threadpool(service.cleanup, state.db)
        except Exception:
            service.log.warning("idempotency key cleanup failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), INTERVAL_SECONDS)

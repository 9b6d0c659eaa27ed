"""Deployment upkeep while the server runs: re-attach to (or restart) deployments after a
restart, then check health periodically, restart dead local servers and catch alias moves
made by other processes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from podstack.server.deployments.manager import get_manager

log = logging.getLogger("podstack.deployments")
HEALTH_INTERVAL_SECONDS = 10.0


async def run(state: Any, stop: asyncio.Event) -> None:
    mgr = get_manager(state)
    await asyncio.to_thread(mgr.recover)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=HEALTH_INTERVAL_SECONDS)
        except TimeoutError:
            try:
                await asyncio.to_thread(mgr.check_health)
            except Exception:
                log.exception("deployment health check failed")

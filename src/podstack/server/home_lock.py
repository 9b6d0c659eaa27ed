"""One holder per home of the background loops (scheduler, outbox, deployment health).

``podstack server --workers N`` forks N processes that share a home. The loops are safe to run
in all of them (they coordinate through the database, as replicas on other hosts do), but N
copies poll N times as often for the same work and, for local deployments, N health checkers
probe the same model servers. So the first process to take an ``flock`` on
``$PODSTACK_HOME/background.lock`` runs them and the others wait their turn: the kernel drops
the lock when its holder exits, even on SIGKILL, and a waiting worker takes over within one
poll interval.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

from podstack.server import file_modes

LOCK_NAME = "background.lock"
POLL_SECONDS = 2.0


class HomeLock:
    def __init__(self, home: Path) -> None:
        self.path = Path(home) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Takes the lock if no other process holds it; never blocks."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_modes.FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    async def wait(self, stop: asyncio.Event) -> bool:
        """True once held; False if ``stop`` is set first."""
        while not self.try_acquire():
            try:
                await asyncio.wait_for(stop.wait(), timeout=POLL_SECONDS)
                return False
            except TimeoutError:
                continue
        return True

"""`podstack server` with several worker processes: one per core by default, the background
loops in exactly one of them at a time, taken over when that worker dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from podstack.cli.server import default_workers
from podstack.server.home_lock import LOCK_NAME, HomeLock
from tests.cli.test_server_cmd import (  # noqa: F401  (fixtures)
    ServerProcess,
    database_for_server,
    server_env,
)
from tests.conftest import free_port


def _workers_of(server: ServerProcess, expected: int, timeout: float = 60) -> list[int]:
    """The pids of the supervisor's worker processes, once ``expected`` of them run."""
    deadline = time.monotonic() + timeout
    pids: list[int] = []
    while time.monotonic() < deadline:
        pids = _live_workers(server)
        if len(pids) == expected:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"expected {expected} workers, saw {pids}")


def _live_workers(server: ServerProcess) -> list[int]:
    """The supervisor's live worker processes (uvicorn starts them with multiprocessing's
    spawn; its resource tracker, also a child, is not a worker)."""
    pids = []
    for child in psutil.Process(server.proc.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


def _lock_holder(
    home: Path, candidates: Callable[[], list[int]] | list[int], timeout: float = 30
) -> int:
    """The worker that holds the home's background lock (it writes its pid into the file).
    ``candidates`` may be re-read on every poll: on a loaded machine uvicorn's supervisor
    can also replace a worker that was slow to answer its ping."""
    deadline = time.monotonic() + timeout
    text, seen = "", []
    while time.monotonic() < deadline:
        path = home / LOCK_NAME
        text = path.read_text().strip() if path.exists() else ""
        seen = candidates() if callable(candidates) else candidates
        if text.isdigit() and int(text) in seen:
            return int(text)
        time.sleep(0.2)
    raise AssertionError(f"no worker of {seen} took the lock (file says {text!r})")


@pytest.fixture
def env(request: pytest.FixtureRequest) -> dict[str, str]:
    base: dict[str, str] = request.getfixturevalue("server_env")
    out = {k: v for k, v in base.items() if k != "PODSTACK_WORKERS"}
    out["PODSTACK_BACKGROUND_WORKERS"] = "true"
    return out


def test_background_loops_run_in_one_worker_and_move_when_it_dies(env: dict[str, str]) -> None:
    # No --workers: one per core, at most 4 (two or more wanted here, so asked for on a
    # single-core machine).
    expected = default_workers()
    assert expected == max(1, min(os.cpu_count() or 1, 4))
    args = [] if expected >= 2 else ["--workers", "2"]
    expected = max(expected, 2)
    home = Path(env["PODSTACK_HOME"])
    server = ServerProcess(["--port", str(free_port()), *args], env)
    try:
        server.wait_for_output("podstack users create")
        workers = _workers_of(server, expected)
        holder = _lock_holder(home, workers)
        # The other worker is waiting, not running a second copy of the loops.
        assert not HomeLock(home).try_acquire()
        os.kill(holder, signal.SIGKILL)
        # The kernel drops a dead holder's lock; the surviving worker (or the one uvicorn
        # starts in place of the dead one) takes the loops over.
        _workers_of(server, expected)
        # A replacement worker imports the whole app first: on a loaded machine that alone
        # can take most of the default 30 s.
        new_holder = _lock_holder(home, lambda: _live_workers(server), timeout=90)
        assert new_holder != holder
    finally:
        assert server.terminate() == 0


def test_home_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from podstack.server.home_lock import HomeLock\n"
            f"assert HomeLock({str(tmp_path)!r}).try_acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        mine = HomeLock(tmp_path)
        assert not mine.try_acquire()
        holder.kill()
        holder.wait(timeout=10)
        assert mine.try_acquire()
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
        mine.release()
        assert HomeLock(tmp_path).try_acquire()
    finally:
        if holder.poll() is None:
            holder.kill()

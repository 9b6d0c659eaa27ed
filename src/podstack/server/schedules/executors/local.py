"""Local executor: the command as an argument list (never through a shell) in its own process
group, output captured to a file, the group killed on timeout, cancellation or shutdown.

Processes belong to the server process that started them, so this object keeps them in
memory; the scheduler polls it every tick and renews the executions' leases meanwhile.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from podstack.schemas.schedules import ExecutionStatus
from podstack.server import file_modes
from podstack.server.child_env import safe_child_env
from podstack.server.schedules.executions import JobSpec
from podstack.server.schedules.executors.base import ExecutorError, Outcome

log = logging.getLogger("podstack.scheduler")


@dataclass
class _Proc:
    execution_id: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: datetime
    timeout_seconds: int | None
    kill_reason: str | None = None  # timeout | cancel | shutdown
    kill_message: str | None = None
    term_sent: float | None = None  # monotonic time SIGTERM went to the group
    killed: bool = False
    extra: dict[str, str] = field(default_factory=dict)


class LocalExecutor:
    kind = "local"

    def __init__(self, work_dir: Path, *, kill_grace_seconds: float = 10.0) -> None:
        self.work_dir = Path(work_dir)
        self.kill_grace_seconds = kill_grace_seconds
        self._procs: dict[str, _Proc] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ starting

    def start(self, job: JobSpec, started_at: datetime) -> None:
        cfg = job.executor
        command = [str(a) for a in cfg["command"]]
        cwd = cfg.get("working_dir")
        if cwd is not None and not Path(cwd).is_dir():
            raise ExecutorError(
                f"working_dir {cwd!r} does not exist on the server (or is not a directory)."
            )
        # Server settings and secrets are not the job's business (one rule for every child
        # process: podstack.server.child_env); the schedule's own env and the job's run
        # variables are added back, the latter last: a schedule cannot point a job at another run.
        env = safe_child_env({**(cfg.get("env") or {}), **job.env()})
        file_modes.private_dirs(self.work_dir)
        log_path = self.work_dir / f"{job.execution_id}.log"
        with file_modes.open_private(log_path, append=True) as out:
            try:
                popen = subprocess.Popen(
                    command,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group (and session)
                    close_fds=True,
                )
            except FileNotFoundError:
                log_path.unlink(missing_ok=True)
                raise ExecutorError(
                    f"Cannot start {command[0]!r}: no such program on the server's PATH "
                    "(command[0]); give a full path or install it."
                ) from None
            except PermissionError:
                log_path.unlink(missing_ok=True)
                raise ExecutorError(
                    f"Cannot start {command[0]!r}: permission denied (is it executable?)."
                ) from None
            except OSError as exc:
                log_path.unlink(missing_ok=True)
                raise ExecutorError(
                    f"Cannot start {command[0]!r}: {exc.strerror or exc}."
                ) from None
        with self._lock:
            self._procs[job.execution_id] = _Proc(
                job.execution_id, popen, log_path, started_at, job.timeout_seconds
            )
        log.info("execution %s started pid %s: %s", job.execution_id, popen.pid, command)

    # ------------------------------------------------------------ watching

    def running(self) -> list[str]:
        with self._lock:
            return list(self._procs)

    def is_running(self, execution_id: str) -> bool:
        with self._lock:
            return execution_id in self._procs

    def timed_out(self, execution_id: str, now: datetime) -> bool:
        p = self._get(execution_id)
        if p is None or p.timeout_seconds is None or p.kill_reason is not None:
            return False
        return (now - p.started_at).total_seconds() >= p.timeout_seconds

    def kill(self, execution_id: str, reason: str, message: str) -> None:
        """SIGTERM to the whole group now; ``poll`` sends SIGKILL after the grace period."""
        p = self._get(execution_id)
        if p is None or p.kill_reason is not None:
            return
        p.kill_reason, p.kill_message = reason, message
        p.term_sent = time.monotonic()
        _signal_group(p.popen.pid, signal.SIGTERM)

    def poll(self, execution_id: str) -> Outcome | None:
        """The outcome once the process has exited (and its group is gone), else None."""
        p = self._get(execution_id)
        if p is None:
            return None
        code = p.popen.poll()
        if code is None:
            if (
                p.term_sent is not None
                and not p.killed
                and time.monotonic() - p.term_sent >= self.kill_grace_seconds
            ):
                _signal_group(p.popen.pid, signal.SIGKILL)
                p.killed = True
            return None
        # The leader is gone; anything it left behind in its group goes with it.
        _signal_group(p.popen.pid, signal.SIGKILL)
        with self._lock:
            self._procs.pop(execution_id, None)
        if p.kill_reason == "timeout":
            status, message = ExecutionStatus.TIMED_OUT.value, p.kill_message
        elif p.kill_reason == "cancel":
            status, message = ExecutionStatus.CANCELLED.value, p.kill_message
        elif p.kill_reason == "shutdown":
            status, message = ExecutionStatus.FAILED.value, p.kill_message
        elif code == 0:
            status, message = ExecutionStatus.SUCCEEDED.value, "Exited with code 0."
        else:
            status = ExecutionStatus.FAILED.value
            message = f"Killed by signal {-code}." if code < 0 else f"Exited with code {code}."
        return Outcome(status=status, exit_code=code, message=message, log_path=p.log_path)

    def wait_all(self, timeout: float) -> None:
        """Shutdown helper: waits (bounded) for killed processes to exit."""
        deadline = time.monotonic() + timeout
        for eid in self.running():
            p = self._get(eid)
            if p is None:
                continue
            try:
                p.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p.popen.pid, signal.SIGKILL)
                p.killed = True
                try:
                    p.popen.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    log.warning("execution %s: process %s survived SIGKILL", eid, p.popen.pid)

    def _get(self, execution_id: str) -> _Proc | None:
        with self._lock:
            return self._procs.get(execution_id)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def read_tail(path: Path, chars: int) -> str:
    """The last ``chars`` characters of a log file (read from the end: logs can be huge)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - chars * 4))
        data = fh.read()
    return data.decode("utf-8", errors="replace")[-chars:]

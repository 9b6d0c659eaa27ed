"""A benchmarked server process: start, wait until it answers and is idle, stop.

Shared by ``mlflow_env`` and ``podstack_env`` so both products are started and judged ready
by exactly the same rules.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from benchmarks.mlflow_compare.measure import machine_busy_cpu_seconds, tree_cpu_seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """One running server. ``pid`` is the process whose tree (it and its children) is
    measured for CPU and memory."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    db_url: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, health_path: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} during start-up:\n"
                    + self.log_tail()
                )
            try:
                if httpx.get(self.url + health_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} did not answer {health_path} in {timeout}s:\n" + self.log_tail()
        )

    def wait_idle(
        self,
        window: float = 0.5,
        threshold: float = 0.05,
        quiet_windows: int = 2,
        timeout: float = 60.0,
    ) -> float:
        """Waits until the server tree used < ``threshold`` of a core in ``quiet_windows``
        consecutive windows (start-up work such as migrations, imports and background loops
        warming up must not land in the first workload). Returns the seconds waited."""
        t0 = time.monotonic()
        quiet = 0
        while time.monotonic() - t0 < timeout:
            c0 = tree_cpu_seconds(self.pid)
            time.sleep(window)
            busy = (tree_cpu_seconds(self.pid) - c0) / window
            quiet = quiet + 1 if busy < threshold else 0
            if quiet >= quiet_windows:
                break
        return round(time.monotonic() - t0, 2)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the server's process group (start_new_session), SIGKILL after
        ``timeout``; then SIGKILL whatever of the group is left (``mlflow server``'s job
        runner leaves huey consumers behind when its parent goes)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(5)
        time.sleep(0.5)
        self._kill_group()

    def _kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_machine_quiet(max_wait: float, threshold: float = 0.3, window: float = 0.5) -> float:
    """Waits (at most ``max_wait`` s) until the whole machine uses < ``threshold`` cores; other
    people's test runs on a shared 2-core box would otherwise decide the result. Returns the
    busy cores measured last, which the report keeps next to each workload."""
    deadline = time.monotonic() + max_wait
    while True:
        b0 = machine_busy_cpu_seconds()
        time.sleep(window)
        busy = (machine_busy_cpu_seconds() - b0) / window
        if busy < threshold or time.monotonic() >= deadline:
            return round(busy, 2)


def spawn(
    name: str, argv: list[str], env: dict[str, str], log_path: Path, url: str, db_url: str
) -> ServerProcess:
    log = open(log_path, "wb")  # noqa: SIM115 - owned by the child for its lifetime
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    return ServerProcess(name=name, url=url, proc=proc, log_path=log_path, db_url=db_url)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine_info() -> dict[str, object]:
    import platform

    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }

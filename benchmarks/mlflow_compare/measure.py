"""Measuring helpers shared by both client scripts (our venv and the MLflow venv).

Depends only on the standard library and psutil, because the MLflow-side client script imports
it from inside the MLflow virtualenv, where ``podstack`` is not installed.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else float("nan"),
    }


def process_tree(pid: int) -> list[psutil.Process]:
    """The server and its children (``mlflow server`` runs uvicorn as a child process)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in process_tree(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def tree_rss_bytes(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def self_cpu_seconds() -> float:
    """CPU of this client process, all threads, user + system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class RssSampler:
    """Samples the server tree's RSS every ``interval`` seconds on a thread; ``peak - start``
    is the growth a workload caused."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.start = tree_rss_bytes(pid)
        self.peak = self.start
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss_bytes(self.pid)
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(self.pid))

    @property
    def growth_mib(self) -> float:
        return round((self.peak - self.start) / 2**20, 1)


def machine_busy_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used (all cores)."""
    t = psutil.cpu_times()
    return (
        t.user
        + t.system
        + getattr(t, "nice", 0.0)
        + getattr(t, "irq", 0.0)
        + getattr(t, "softirq", 0.0)
    )


class Measured:
    """Result of :func:`measure`: wall time and CPU of client and server, and the CPU that
    *other* processes took meanwhile (anything well above zero means a noisy measurement)."""

    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    other_cpu_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "wall_s": round(self.wall_s, 4),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "server_cpu_s": round(self.server_cpu_s, 3),
            "other_cpu_s": round(max(0.0, self.other_cpu_s), 3),
        }


@contextmanager
def measure(server_pid: int) -> Iterator[Measured]:
    """Times the block and attributes CPU to this client process and to the server tree."""
    m = Measured()
    a0 = machine_busy_cpu_seconds()
    c0, s0, t0 = self_cpu_seconds(), tree_cpu_seconds(server_pid), time.perf_counter()
    try:
        yield m
    finally:
        m.wall_s = time.perf_counter() - t0
        m.client_cpu_s = self_cpu_seconds() - c0
        m.server_cpu_s = tree_cpu_seconds(server_pid) - s0
        m.other_cpu_s = machine_busy_cpu_seconds() - a0 - m.client_cpu_s - m.server_cpu_s


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_threads(n: int, target: Callable[[int], Any]) -> list[BaseException]:
    """Runs ``target(i)`` on ``n`` threads that start together; returns the errors raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def body(i: int) -> None:
        barrier.wait()
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def make_file(path: str, size: int, chunk: int = 8 * 2**20) -> None:
    """Incompressible content, written once and reused by both products."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n

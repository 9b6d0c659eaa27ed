"""System metrics for a run: ``start_run(log_system_metrics=True)``.

A daemon thread samples CPU and memory (psutil) and, when the NVIDIA management library is
importable (``pynvml``, from the ``nvidia-ml-py`` package), each GPU's utilisation and memory,
every ``interval`` seconds, and logs them as metrics under ``system/`` with an increasing
step. It stops when the run ends (one last sample first, so even a short run has a point).
A failed sample or upload is logged as a warning and never interrupts training.

psutil is an optional dependency: ``pip install 'podstack[system-metrics]'``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("podstack.system_metrics")
PREFIX = "system/"
DEFAULT_INTERVAL = 10.0
MIN_INTERVAL = 0.1
INSTALL_HINT = (
    "log_system_metrics=True needs psutil: pip install 'podstack[system-metrics]' "
    "(GPU metrics also need nvidia-ml-py)."
)

LogFn = Callable[[dict[str, float], int], None]


def _psutil() -> Any:
    try:
        import psutil
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return psutil


def _nvml() -> Any | None:
    """pynvml, initialised, or None (no library, no driver, no GPU): GPUs are optional."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        return pynvml
    except Exception:
        return None


class SystemMetricsSampler:
    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        if not interval or interval < MIN_INTERVAL:
            raise ValueError(
                f"system_metrics_interval must be at least {MIN_INTERVAL} seconds; got {interval}."
            )
        self._psutil = _psutil()  # fails before the run starts when psutil is missing
        self._log: LogFn = lambda metrics, step: None
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: Any | None = None
        self._gpus: list[Any] = []
        self.step = 0
        self._lock = threading.Lock()

    def start(self, log_fn: LogFn) -> None:
        """Samples every ``interval`` seconds into ``log_fn(metrics, step)``."""
        self._log = log_fn
        self._psutil.cpu_percent(interval=None)  # primes the counter: the next call measures
        self._nvml = _nvml()
        if self._nvml is not None:
            try:
                count = self._nvml.nvmlDeviceGetCount()
                self._gpus = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            except Exception:
                self._gpus = []
        self._thread = threading.Thread(
            target=self._loop, name="podstack-system-metrics", daemon=True
        )
        self._thread.start()

    def sample(self) -> dict[str, float]:
        ps = self._psutil
        mem = ps.virtual_memory()
        out = {
            "cpu_utilization_percentage": float(ps.cpu_percent(interval=None)),
            "system_memory_usage_megabytes": (mem.total - mem.available) / 2**20,
            "system_memory_usage_percentage": float(mem.percent),
        }
        for i, handle in enumerate(self._gpus):
            try:
                util = self._nvml.nvmlDeviceGetUtilizationRates(handle)  # type: ignore[union-attr]
                gmem = self._nvml.nvmlDeviceGetMemoryInfo(handle)  # type: ignore[union-attr]
            except Exception:
                continue
            out[f"gpu_{i}_utilization_percentage"] = float(util.gpu)
            out[f"gpu_{i}_memory_usage_megabytes"] = gmem.used / 2**20
            out[f"gpu_{i}_memory_usage_percentage"] = 100.0 * gmem.used / max(1, gmem.total)
        return {PREFIX + k: round(v, 3) for k, v in out.items()}

    def _log_once(self) -> None:
        with self._lock:  # the loop and stop() may both sample: steps stay in order
            try:
                self._log(self.sample(), self.step)
                self.step += 1
            except Exception as exc:
                log.warning("could not log system metrics: %s", exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._log_once()

    def stop(self) -> None:
        """Stops sampling; logs one last sample (while the run is still open)."""
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        self._log_once()
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass

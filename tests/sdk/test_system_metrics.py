"""``start_run(log_system_metrics=True)``: CPU and memory sampled by a background thread into
``system/…`` metrics, in embedded and HTTP modes, stopped when the run ends; bad intervals and
a missing psutil refused before any run exists. GPU metrics use a stand-in ``pynvml`` module
(this machine has no NVIDIA GPU or driver: the one thing here that cannot run for real)."""

from __future__ import annotations

import sys
import threading
import time
import types
from typing import Any

import pytest

from podstack import MLOpsClient
from podstack.errors import NotFound

CPU = "system/cpu_utilization_percentage"
MEM_MB = "system/system_memory_usage_megabytes"
MEM_PCT = "system/system_memory_usage_percentage"


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "podstack-system-metrics"]


def _run_count(client: MLOpsClient) -> int:
    return len(client.search_runs(experiment_ids=["sysmetrics"])) if _exists(client) else 0


def _exists(client: MLOpsClient) -> bool:
    return any(e.name == "sysmetrics" for e in client.list_experiments())


def _history(client: MLOpsClient, run_id: str) -> list[Any]:
    try:
        return list(client.get_metric_history(run_id, CPU))
    except NotFound:  # nothing sampled yet
        return []


def test_system_metrics_are_sampled_until_the_run_ends(client: MLOpsClient) -> None:
    with client.start_run(
        experiment_id="sysmetrics", log_system_metrics=True, system_metrics_interval=0.2
    ) as run:
        assert _sampler_threads()
        sum(i * i for i in range(300_000))  # some CPU work
        # Wait for two samples rather than a fixed time: on a loaded machine the sampler's
        # thread can be late, which is not what this test is about.
        deadline = time.monotonic() + 30
        while len(_history(client, run.id)) < 2:
            assert time.monotonic() < deadline, "no system metrics sampled within 30 s"
            time.sleep(0.1)
    assert not _sampler_threads()  # stopped with the run
    info = client.get_run(run.id)
    assert info.status.value == "FINISHED"
    assert {CPU, MEM_MB, MEM_PCT} <= set(info.metrics)
    assert 0 <= info.metrics[CPU] <= 100 * 256 and 0 < info.metrics[MEM_PCT] <= 100
    assert info.metrics[MEM_MB] > 1
    history = client.get_metric_history(run.id, CPU)
    steps = [p.step for p in history]
    assert len(steps) >= 3 and steps == list(range(len(steps)))  # one per interval + the last
    # Nothing is logged after the end (the thread is gone, the run is closed).
    time.sleep(0.3)
    assert len(client.get_metric_history(run.id, CPU)) == len(history)


def test_a_failed_run_stops_the_sampler_too(client: MLOpsClient) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        client.start_run(
            experiment_id="sysmetrics", log_system_metrics=True, system_metrics_interval=5
        ) as run,
    ):
        raise RuntimeError("boom")
    assert not _sampler_threads()
    info = client.get_run(run.id)
    assert info.status.value == "FAILED" and CPU in info.metrics  # the final sample


def test_bad_interval_is_refused_before_a_run_exists(client: MLOpsClient) -> None:
    before = _run_count(client)
    for interval in (0, -1, 0.01):
        with pytest.raises(ValueError, match=r"system_metrics_interval must be at least 0\.1"):
            client.start_run(
                experiment_id="sysmetrics",
                log_system_metrics=True,
                system_metrics_interval=interval,
            )
    assert _run_count(client) == before and not _sampler_threads()


def test_missing_psutil_says_how_to_install_it(
    client: MLOpsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # as if it were not installed
    before = _run_count(client)
    with pytest.raises(ImportError, match=r"pip install 'podstack\[system-metrics\]'"):
        client.start_run(experiment_id="sysmetrics", log_system_metrics=True)
    assert _run_count(client) == before


@pytest.mark.one_db
def test_gpu_metrics_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in pynvml with one GPU (no NVIDIA driver on this machine)."""
    from podstack.client.system_metrics import SystemMetricsSampler

    calls: list[str] = []
    fake = types.SimpleNamespace(
        nvmlInit=lambda: calls.append("init"),
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=37),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=2 * 2**30, total=8 * 2**30),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    logged: list[tuple[dict[str, Any], int]] = []
    sampler = SystemMetricsSampler(interval=60)
    sampler.start(lambda m, step: logged.append((m, step)))
    sampler.stop()
    ((metrics, step),) = logged
    assert step == 0
    assert metrics["system/gpu_0_utilization_percentage"] == 37
    assert metrics["system/gpu_0_memory_usage_megabytes"] == 2048
    assert metrics["system/gpu_0_memory_usage_percentage"] == 25
    assert calls == ["init", "shutdown"]


@pytest.mark.one_db
def test_a_failing_upload_never_stops_training() -> None:
    from podstack.client.system_metrics import SystemMetricsSampler

    def broken(metrics: dict[str, float], step: int) -> None:
        raise ConnectionError("server away")

    sampler = SystemMetricsSampler(interval=0.1)
    sampler.start(broken)
    time.sleep(0.35)
    sampler.stop()  # no exception reaches the caller
    assert sampler.step == 0 and not _sampler_threads()

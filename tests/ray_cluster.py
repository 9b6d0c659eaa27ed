"""A real single-node Ray cluster for the suite (and the benchmarks).

``ray_cluster`` (session scope) starts ONE ``ray start --head --block`` for the whole test
run, even with xdist: the workers share a directory keyed by xdist's run id, and a file lock
around a small state file decides who starts the cluster and who stops it (a reference count:
the last worker to finish stops it). Everything is on loopback, CPU only
(``--num-cpus``), usage statistics off, in its own temp dir; the cluster runs in its own
process session, and stopping it kills that whole process group, then anything left that was
started from its temp dir (Ray workers, Serve replicas), so no process outlives the run.

Ray Serve's HTTP proxy is started on a free loopback port once the head is up (``serve
start``), so Serve never takes the default port 8000 another program may use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from filelock import FileLock

_IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
START_TIMEOUT = 120.0


@dataclass
class RayCluster:
    address: str  # the dashboard / job server, for JobSubmissionClient
    gcs_address: str  # host:port, for `ray.init` / `serve start`
    serve_url: str  # Ray Serve's HTTP proxy
    temp_dir: str
    pgid: int


def ray_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODSTACK_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # A CPU-only cluster: no GPU probing and no accelerator-visibility rewriting.
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("RAY_ADDRESS", None)
    # Ray's single-node mode: without it Ray swaps 127.0.0.1 for the machine's routable
    # address (services.resolve_ip_for_localhost) and the GCS, raylet and replicas talk over
    # eth0; with it every Ray address stays on loopback, as the suite's traffic must.
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def _ray_binary() -> str:
    found = Path(sys.executable).parent / "ray"
    if not found.exists():
        message = "Ray is not installed: pip install -e '.[dev]' (the dev extra includes ray)"
        if _IN_CI:
            raise RuntimeError(message)
        pytest.skip(message)
    return str(found)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(temp_dir: Path) -> RayCluster:
    """Starts a head node and Serve's proxy; returns when both answer."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    port, dash, client, serve, metrics = (_free_port() for _ in range(5))
    log = open(temp_dir / "ray-start.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            _ray_binary(),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            f"--ray-client-server-port={client}",
            f"--metrics-export-port={metrics}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=true",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=ray_env(),
        start_new_session=True,  # its own process group: stopped as a whole
    )
    log.close()
    cluster = RayCluster(
        address=f"http://127.0.0.1:{dash}",
        gcs_address=f"127.0.0.1:{port}",
        serve_url=f"http://127.0.0.1:{serve}",
        temp_dir=str(temp_dir),
        pgid=proc.pid,
    )
    try:
        _wait_for(f"{cluster.address}/api/version", proc)
        # The job server module comes up a little after /api/version.
        _wait_for(f"{cluster.address}/api/jobs/", proc)
        subprocess.run(
            [
                str(Path(sys.executable).parent / "serve"),
                "start",
                f"--address={cluster.gcs_address}",
                "--http-host=127.0.0.1",
                f"--http-port={serve}",
                "--proxy-location=HeadOnly",
            ],
            env=ray_env(),
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        # The proxy answers 503 until it has a route table; any answer means it listens.
        _wait_for(f"{cluster.serve_url}/-/routes", proc, any_answer=True)
    except BaseException as exc:
        tail = (temp_dir / "ray-start.log").read_text(errors="replace")[-3000:]
        if isinstance(exc, subprocess.CalledProcessError):
            tail += (exc.stdout or b"").decode(errors="replace")[-3000:]
        stop_cluster(cluster)
        raise RuntimeError(f"the Ray cluster did not start ({exc!r}):\n{tail}") from None
    return cluster


def _wait_for(url: str, proc: subprocess.Popen[bytes], *, any_answer: bool = False) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}")
        try:
            code = httpx.get(url, timeout=2, trust_env=False).status_code
            if code == 200 or any_answer:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {START_TIMEOUT} s")


def cluster_processes(cluster: RayCluster) -> list[psutil.Process]:
    """Every live process of this cluster: its process group, plus anything whose command
    line names its temp dir (a worker that started its own session)."""
    found: list[psutil.Process] = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(p.pid) == cluster.pgid or any(
                cluster.temp_dir in a for a in (p.info["cmdline"] or [])
            ):
                found.append(p)
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return found


def stop_cluster(cluster: RayCluster) -> None:
    """Stops exactly this cluster (never `ray stop`, which stops every Ray of the user)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(cluster.pgid, signal.SIGTERM)
    # `ray start --block` takes its processes down on SIGTERM, but not always promptly.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and cluster_processes(cluster):
        time.sleep(0.3)
    for p in cluster_processes(cluster):
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(cluster_processes(cluster), timeout=5)
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)


def _shared_dir() -> Path:
    # One directory per test run (xdist gives every worker the same run id), short: Ray puts
    # Unix sockets under its temp dir and socket paths are limited to 107 bytes.
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    digest = hashlib.sha256(run.encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"psray-{digest}"


# Development: point this at the JSON of a cluster started by `python -m tests.ray_cluster`
# to reuse it across runs (it is then neither started nor stopped by the suite).
REUSE_ENV = "PODSTACK_TEST_RAY_CLUSTER"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    if os.environ.get(REUSE_ENV):
        yield RayCluster(**json.loads(Path(os.environ[REUSE_ENV]).read_text()))
        return
    shared = _shared_dir()
    shared.mkdir(parents=True, exist_ok=True)
    state_file = shared / "state.json"
    lock = FileLock(str(shared / "lock"))
    with lock:
        state = json.loads(state_file.read_text()) if state_file.exists() else {"refs": 0}
        cluster = RayCluster(**state["cluster"]) if state.get("cluster") else None
        if cluster is None or not cluster_processes(cluster):
            cluster = start_cluster(shared / "t")
            state = {"refs": 0, "cluster": asdict(cluster)}
        state["refs"] += 1
        state_file.write_text(json.dumps(state))
    try:
        yield cluster
    finally:
        with lock:
            state = json.loads(state_file.read_text())
            state["refs"] -= 1
            if state["refs"] <= 0:
                stop_cluster(cluster)
                state = {"refs": 0}
            state_file.write_text(json.dumps(state))


if __name__ == "__main__":  # python -m tests.ray_cluster /tmp/ray.json: start one and leave it
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "ray-cluster.json").resolve()
    started = start_cluster(Path(tempfile.gettempdir()) / f"psray-dev-{os.getpid()}")
    target.write_text(json.dumps(asdict(started)))
    print(f"Ray cluster up; {REUSE_ENV}={target}; stop: kill -TERM -{started.pgid}")

"""Artifact transfer through a real server process: upload and download one large file
with the SDK over HTTP, reporting MB/s each way and the server's peak RSS growth (target:
under 100 MB, i.e. the server streams instead of buffering).

    python -m benchmarks.run artifacts_transfer                                # 256 MiB
    PODSTACK_BENCH_ARTIFACT_MB=2048 python -m benchmarks.run artifacts_transfer  # issue 2's 2 GiB

Size: ``PODSTACK_BENCH_ARTIFACT_MB`` (default 256, which keeps ``make bench`` within its
15-minute budget and still shows buffering: a server that held the file would grow by 256 MiB,
against a target of < 100; 64 with ``--quick``). Issue 2's figure is the 2 GiB run above.
Scratch files go to a temp dir (``PODSTACK_BENCH_DIR`` to choose where; it needs about 3x the
size free).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import psutil

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TOKEN = "pst_bench-artifacts-0123456789abcdef"
TARGET_GROWTH_MB = 100
DEFAULT_MB = 256  # in `make bench`; PODSTACK_BENCH_ARTIFACT_MB=2048 for issue 2's 2 GiB figure
QUICK_MB = 64
MB = 1_000_000  # throughput in decimal MB/s, sizes in MiB
MiB = 1024 * 1024


# ---------------------------------------------------------------- server process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(port: int) -> tuple[list[str], str]:
    """How to start the server: the real ``podstack server`` CLI when it is installed, else
    uvicorn on ``create_app`` directly (same app; used while the CLI did not exist yet)."""
    script = Path(sys.executable).with_name("podstack")
    if script.exists() and find_spec("podstack.cli.server") is not None:
        return [
            str(script),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ], "podstack server"
    code = (
        "import uvicorn; from podstack.server.app import create_app; "
        "from podstack.server.config import Settings; "
        f"uvicorn.run(create_app(Settings()), host='127.0.0.1', port={port}, "
        "log_level='warning')"
    )
    return [sys.executable, "-c", code], "uvicorn.run(create_app(Settings()))"


@contextmanager
def running_server(
    home: Path,
    *,
    admin_token: str = TOKEN,
    background: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[str, psutil.Process, str]]:
    port = _free_port()
    cmd, how = server_command(port)
    env = {
        **os.environ,
        "PODSTACK_HOME": str(home),
        "PODSTACK_ADMIN_TOKEN": admin_token,
        # Off for the transfer figures (nothing in the background competes with them); on
        # where the benchmark needs them (deployment health, rollouts).
        "PODSTACK_BACKGROUND_WORKERS": "true" if background else "false",
        # One worker process: the figures are about one server process.
        "PODSTACK_WORKERS": "1",
    }
    for var in ("PODSTACK_DATABASE_URL", "PODSTACK_ARTIFACTS_URI", "PODSTACK_URL"):
        env.pop(var, None)
    env.update(extra_env or {})
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode}; see {home / 'server.log'}"
                )
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become healthy within 60 s")
            time.sleep(0.1)
        yield url, psutil.Process(proc.pid), how
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class RssSampler:
    """Peak RSS of the server process (and any children, e.g. uvicorn workers) every 50 ms."""

    def __init__(self, proc: psutil.Process, interval: float = 0.05) -> None:
        self.proc = proc
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, self.rss())
            except psutil.NoSuchProcess:
                return

    def __enter__(self) -> RssSampler:
        self.baseline = self.rss()
        self.peak = self.baseline
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MiB


# ---------------------------------------------------------------- the benchmark


def make_file(path: Path, size: int) -> None:
    """Incompressible-looking data, fast: a random 8 MiB block, each copy stamped with its
    index so no two blocks (and no two runs' files) are identical."""
    block = bytearray(os.urandom(8 * MiB))
    stamp = os.urandom(8)
    with open(path, "wb") as fh:
        written, i = 0, 0
        while written < size:
            block[:16] = stamp + i.to_bytes(8, "little")
            n = min(len(block), size - written)
            fh.write(memoryview(block)[:n])
            written += n
            i += 1


def _timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def run_benchmark(size_mb: int, workdir: Path) -> dict[str, Any]:
    os.environ["PODSTACK_PROGRESS"] = "0"  # measure transfers, not terminal rendering
    from podstack import MLOpsClient
    from podstack.client.artifacts import artifact_api_path
    from podstack.client.transfer import sha256_file, upload_file

    size = size_mb * MiB
    src = workdir / "artifact.bin"
    dest = workdir / "download"
    home = workdir / "home"
    home.mkdir()
    _, gen_s = _timed(make_file, src, size)
    with running_server(home) as (url, proc, how), MLOpsClient(api_token=TOKEN, url=url) as client:
        run = client.create_run("bench-artifacts")
        # Warm-up: imports and first-request work happen before the baseline is taken.
        warm = workdir / "warm.bin"
        warm.write_bytes(os.urandom(64 * 1024))
        client.log_artifact(run.id, warm)
        client.download_artifacts(run.id, "warm.bin", destination=str(dest))
        time.sleep(0.5)

        digest, hash_s = _timed(sha256_file, src)
        with RssSampler(proc) as up_rss:
            stored, up_s = _timed(
                upload_file, client, artifact_api_path(run.id, "artifact.bin"), src, sha256=digest
            )
        assert stored["sha256"] == digest and stored["size"] == size, stored
        with RssSampler(proc) as down_rss:
            local, down_s = _timed(
                client.download_artifacts, run.id, "artifact.bin", destination=str(dest)
            )
        assert Path(local).stat().st_size == size
        client.end_run(run.id)
    # download_artifacts verified the sha256 while streaming; re-check independently.
    assert sha256_file(local) == digest
    growth = max(up_rss.growth_mb, down_rss.growth_mb)
    return {
        "size_mib": size_mb,
        "server": how,
        "upload_mb_s": round(size / up_s / MB, 1),
        "upload_s": round(up_s, 2),
        "client_hash_mb_s": round(size / hash_s / MB, 1),
        "log_artifact_equivalent_mb_s": round(size / (hash_s + up_s) / MB, 1),
        "download_mb_s": round(size / down_s / MB, 1),
        "download_s": round(down_s, 2),
        "server_rss_baseline_mib": round(up_rss.baseline / MiB, 1),
        "server_peak_growth_upload_mib": round(up_rss.growth_mb, 1),
        "server_peak_growth_download_mib": round(down_rss.growth_mb, 1),
        "target_growth_mib": TARGET_GROWTH_MB,
        "within_target": growth < TARGET_GROWTH_MB,
        "file_generation_s": round(gen_s, 1),
        # benchmarks/run.py prints these under this benchmark
        "timings": {
            f"{size_mb} MiB file": round(gen_s, 1),
            "upload": round(up_s, 1),
            "download": round(down_s, 1),
        },
        "database": "sqlite",
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("file size", f"{result['size_mib']} MiB"),
        ("server started with", result["server"]),
        (
            "upload (wire, server verifies sha256)",
            f"{result['upload_mb_s']} MB/s ({result['upload_s']} s)",
        ),
        ("client sha256 pre-pass", f"{result['client_hash_mb_s']} MB/s"),
        (
            "log_artifact end to end (hash + upload)",
            f"{result['log_artifact_equivalent_mb_s']} MB/s",
        ),
        (
            "download (verified, fsynced)",
            f"{result['download_mb_s']} MB/s ({result['download_s']} s)",
        ),
        ("server RSS baseline", f"{result['server_rss_baseline_mib']} MiB"),
        ("server peak RSS growth, upload", f"{result['server_peak_growth_upload_mib']} MiB"),
        ("server peak RSS growth, download", f"{result['server_peak_growth_download_mib']} MiB"),
        (
            "target",
            f"< {result['target_growth_mib']} MiB growth: "
            + ("met" if result["within_target"] else "MISSED"),
        ),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\nartifacts_transfer ({result['machine']}, Python {result['python']})", file=sys.stderr)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=sys.stderr)


def main(args: Any = None) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False)) or os.environ.get("BENCH_QUICK") == "1"
    default = QUICK_MB if quick else DEFAULT_MB
    size_mb = int(os.environ.get("PODSTACK_BENCH_ARTIFACT_MB", default))
    base = os.environ.get("PODSTACK_BENCH_DIR") or None
    workdir = Path(tempfile.mkdtemp(prefix="podstack-bench-artifacts-", dir=base))
    try:
        free = shutil.disk_usage(workdir).free
        if free < 3.2 * size_mb * MiB:
            raise RuntimeError(
                f"need about {3 * size_mb} MiB free in {workdir}, have "
                f"{free // MiB} MiB (set PODSTACK_BENCH_DIR)"
            )
        result = run_benchmark(size_mb, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for name in (f"artifacts_transfer-{stamp}.json", "artifacts_transfer-latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    return result


if __name__ == "__main__":
    main()

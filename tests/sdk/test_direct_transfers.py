"""The SDK moving bytes straight to and from a real S3 server (SeaweedFS) with the presigned
URLs of a live Podstack server: run artifacts and model version files, dedup, multipart in
parallel, resume after the S3 server was stopped mid-upload, retries through an S3 restart,
proxy mode, the embedded backend, and the Podstack token never reaching the bucket.

What reached the bucket is observed through a recording TCP proxy in front of SeaweedFS
(tests/server/transfers/bucket_proxy.py): counts of requests and bytes, not timings.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podstack import MLOpsClient
from podstack.client import direct
from podstack.errors import TransportError
from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN
from tests.s3_server import SeaweedS3
from tests.server.transfers.bucket_proxy import Request
from tests.server.transfers.s3_app import PART, PREFIX, THRESHOLD, S3App, s3_app


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _part_puts(requests: list[Request]) -> list[int]:
    return sorted(r.part_number for r in requests if r.presigned and r.part_number)


@pytest.fixture(scope="module")
def app_s3(s3_server: SeaweedS3, settings: Settings, db: Database) -> Iterator[S3App]:
    with s3_app(s3_server, settings) as app:
        yield app


@pytest.fixture
def s3(app_s3: S3App, monkeypatch: pytest.MonkeyPatch) -> S3App:
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    monkeypatch.delenv("PODSTACK_ARTIFACTS_PROXY", raising=False)
    app_s3.empty()
    return app_s3


def test_run_artifacts_and_version_files_go_direct(s3: S3App, tmp_path: Path) -> None:
    small, weights = os.urandom(1000), os.urandom(300_000)
    _write(tmp_path / "src/model/config.json", small)
    _write(tmp_path / "src/model/weights.bin", weights)
    _write(tmp_path / "src/model/empty.txt", b"")
    mark = s3.proxy.mark()
    with s3.sdk() as client:
        with client.start_run(experiment_id="direct") as run:
            stored = run.log_artifact(str(tmp_path / "src/model"))
        assert sorted((f.path, f.sha256) for f in stored) == [
            ("model/config.json", _sha(small)),
            ("model/empty.txt", _sha(b"")),
            ("model/weights.bin", _sha(weights)),
        ]
        puts = [r for r in s3.proxy.since(mark) if r.presigned and r.method == "PUT"]
        assert sorted(r.length for r in puts) == [0, len(small), len(weights)]
        # Only content-addressed blobs remain in the bucket: no staged leftovers.
        assert sorted(s3.keys()) == sorted(
            f"{PREFIX}/blobs/sha256/{d[:2]}/{d[2:4]}/{d}"
            for d in (_sha(small), _sha(weights), _sha(b""))
        )
        client.create_model_version("direct-model", run.id, "model")
        mark = s3.proxy.mark()
        out = Path(client.download_model_version("direct-model", 1, tmp_path / "version"))
        assert (out / "weights.bin").read_bytes() == weights
        assert (out / "config.json").read_bytes() == small
        assert (out / "empty.txt").read_bytes() == b""
        client.download_artifacts(run.id, "", tmp_path / "run")
        assert (tmp_path / "run/model/weights.bin").read_bytes() == weights
        gets = [r for r in s3.proxy.since(mark) if r.presigned and r.method == "GET"]
        assert len(gets) == 6
    # Presigned requests carry their own signature and nothing of Podstack's.
    raw = s3.proxy.raw()
    assert ADMIN_TOKEN.encode() not in raw and b"Bearer" not in raw
    assert all("authorization" not in r.headers for r in s3.proxy.presigned())


def test_identical_content_moves_no_bytes(s3: S3App, tmp_path: Path) -> None:
    data = os.urandom(THRESHOLD + 10)  # multipart-sized: dedup is asked before anything
    f = _write(tmp_path / "blob.bin", data)
    with s3.sdk() as client:
        with client.start_run(experiment_id="dedup") as run:
            run.log_artifact(str(f))
            mark = s3.proxy.mark()
            again = run.log_artifact(str(f), "copy")
        assert [(a.path, a.sha256) for a in again] == [("copy/blob.bin", _sha(data))]
        assert [r for r in s3.proxy.since(mark) if r.presigned] == []
        paths = {a.path for a in client.list_artifacts(run.id, recursive=True)}
        assert paths == {"blob.bin", "copy/blob.bin"}


def test_multipart_upload_sends_parts_in_parallel(s3: S3App, tmp_path: Path) -> None:
    data = os.urandom(3 * PART + 7)
    f = _write(tmp_path / "big.bin", data)
    mark = s3.proxy.mark()
    with s3.sdk() as client:
        with client.start_run(experiment_id="multipart") as run:
            (stored,) = run.log_artifact(str(f))
        assert stored.sha256 == _sha(data) and stored.size == len(data)
        parts = [r for r in s3.proxy.since(mark) if r.presigned and r.part_number]
        assert _part_puts(parts) == [1, 2, 3, 4]
        # Several connections at once: the parts went from the thread pool, not one by one.
        assert len({r.conn for r in parts}) >= 2
        assert s3.keys("uploads/") == [] and s3.multiparts() == []
        client.download_artifacts(run.id, "big.bin", tmp_path / "out")
        assert (tmp_path / "out/big.bin").read_bytes() == data


def test_download_cut_mid_body_resumes_from_the_bucket(s3: S3App, tmp_path: Path) -> None:
    """The bucket connection drops mid-download: the SDK resumes with a Range request from
    the bytes it has, and the file is verified whole."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    f = _write(tmp_path / "w.bin", data)
    with s3.sdk(retry_seconds=30) as client:
        run = client.create_run("cut-download")
        client.log_artifact(run.id, str(f))
        mark = s3.proxy.mark()
        s3.proxy.cut_reply_after = 1024 * 1024
        try:
            client.download_artifacts(run.id, "", tmp_path / "out")
        finally:
            s3.proxy.cut_reply_after = None
    assert (tmp_path / "out/w.bin").read_bytes() == data
    gets = [r for r in s3.proxy.since(mark) if r.presigned and r.method == "GET"]
    assert len(gets) == 2
    assert "range" not in gets[0].headers and gets[1].headers["range"].startswith("bytes=")
    assert not list((tmp_path / "out").glob("*.part"))


def test_proxy_mode_asked_by_the_client(
    s3: S3App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODSTACK_ARTIFACTS_PROXY", "true")
    data = os.urandom(THRESHOLD + 10)
    f = _write(tmp_path / "a.bin", data)
    mark = s3.proxy.mark()
    with s3.sdk() as client:
        with client.start_run(experiment_id="proxied") as run:
            run.log_artifact(str(f))
        client.download_artifacts(run.id, "", tmp_path / "out")
    assert (tmp_path / "out/a.bin").read_bytes() == data
    # The server streamed to and from the bucket itself: no presigned URL was used.
    assert [r for r in s3.proxy.since(mark) if r.presigned] == []
    assert len(s3.keys("blobs/")) == 1


def test_embedded_backend_on_the_object_store(
    s3: S3App, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process server, same S3 settings: the same direct transfers, parts in parallel."""
    s3.s3.apply_env(monkeypatch, AWS_ENDPOINT_URL_S3=s3.proxy.endpoint)
    monkeypatch.delenv("PODSTACK_URL", raising=False)
    monkeypatch.setenv("PODSTACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PODSTACK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PODSTACK_ARTIFACTS_URI", f"s3://{s3.bucket}/{PREFIX}")
    monkeypatch.setenv("PODSTACK_ARTIFACTS_MULTIPART_THRESHOLD_BYTES", str(THRESHOLD))
    monkeypatch.setenv("PODSTACK_ARTIFACTS_PART_SIZE_BYTES", str(PART))
    data = os.urandom(2 * PART + 3)
    f = _write(tmp_path / "e.bin", data)
    mark = s3.proxy.mark()
    with MLOpsClient() as client:
        with client.start_run(experiment_id="embedded-s3") as run:
            run.log_artifact(str(f))
        client.download_artifacts(run.id, "", tmp_path / "out")
    assert (tmp_path / "out/e.bin").read_bytes() == data
    assert _part_puts(s3.proxy.since(mark)) == [1, 2, 3]


# ---------------------------------------------------------------- the S3 server goes away


@pytest.fixture(scope="module")
def own_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A SeaweedFS of its own: these tests stop and restart it."""
    server = SeaweedS3(tmp_path_factory.mktemp("own-seaweedfs")).start()
    yield server
    server.stop()


@pytest.fixture
def fault_app(
    own_s3: SeaweedS3, settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[S3App]:
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    monkeypatch.delenv("PODSTACK_ARTIFACTS_PROXY", raising=False)
    with s3_app(own_s3, settings) as app:
        yield app


def _kill(s3: SeaweedS3) -> None:
    """Stops the S3 server at once (SIGKILL: a graceful stop waits for open connections,
    which only slows the test down; data written before stays on disk)."""
    assert s3.proc is not None
    s3.proc.kill()
    s3.proc.wait(timeout=10)
    s3.proc = None


def _stop_at_part(app: S3App, number: int) -> threading.Event:
    """Stops the S3 server when the presigned PUT of part ``number`` arrives (before it is
    forwarded)."""
    fired = threading.Event()
    lock = threading.Lock()
    claimed: list[bool] = []

    def on_head(req: Request) -> None:
        if not (req.presigned and req.part_number == number):
            return
        with lock:
            if claimed:
                return
            claimed.append(True)
        _kill(app.s3)
        # Set once the server is down (not before): a test that restarts it on seeing the
        # event must not race the kill.
        fired.set()

    app.proxy.on_head = on_head
    return fired


def test_resume_after_the_s3_server_stopped_mid_upload(
    fault_app: S3App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One part at a time, so "parts 1 and 2 are in the bucket" is certain when part 3 starts.
    monkeypatch.setattr(direct, "PARALLEL_PARTS", 1)
    data = os.urandom(3 * PART + 11)
    f = _write(tmp_path / "big.bin", data)
    fired = _stop_at_part(fault_app, 3)
    with fault_app.sdk(retry_seconds=0) as client:
        run = client.create_run("resume")
        with pytest.raises(TransportError) as err:
            client.log_artifact(run.id, str(f))
        assert fired.wait(timeout=30)
        assert "Run the same call again to resume" in err.value.message
        assert "PODSTACK_ARTIFACTS_PROXY" in err.value.message
        # Nothing is half-visible: no artifact, no blob.
        assert client.list_artifacts(run.id, recursive=True) == []
        fault_app.proxy.on_head = None
        fault_app.s3.start()
        assert fault_app.keys("blobs/") == []
        mark = fault_app.proxy.mark()
        (stored,) = client.log_artifact(run.id, str(f))
        assert stored.sha256 == _sha(data)
        # Only the parts the bucket did not have were sent again.
        assert _part_puts(fault_app.proxy.since(mark)) == [3, 4]
        client.download_artifacts(run.id, "", tmp_path / "out")
        assert (tmp_path / "out/big.bin").read_bytes() == data


def test_part_retries_ride_through_a_bucket_outage(s3: S3App, tmp_path: Path) -> None:
    """The bucket unreachable for a moment mid-upload (connections cut, then refused): the
    parts are retried within the SDK's time bound and the upload completes."""
    data = os.urandom(2 * PART + 5)
    f = _write(tmp_path / "big.bin", data)
    fired = threading.Event()

    def back_later() -> None:
        time.sleep(1.5)
        s3.proxy.down = False

    def on_head(req: Request) -> None:
        if req.presigned and req.part_number == 2 and not fired.is_set():
            fired.set()
            s3.proxy.down = True
            threading.Thread(target=back_later, daemon=True).start()

    s3.proxy.on_head = on_head
    try:
        with s3.sdk(retry_seconds=60) as client:
            run = client.create_run("outage")
            (stored,) = client.log_artifact(run.id, str(f))
            assert fired.is_set()
            assert stored.sha256 == _sha(data)
            client.download_artifacts(run.id, "", tmp_path / "out")
    finally:
        s3.proxy.on_head = None
        s3.proxy.down = False
    assert (tmp_path / "out/big.bin").read_bytes() == data
    assert s3.keys("uploads/") == [] and s3.multiparts() == []

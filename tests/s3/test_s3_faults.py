"""The object store going away under a proxied transfer (this server streams the bytes):
the SDK retries and finishes once SeaweedFS is back, a cut download never leaves a wrong
file, and nothing half-uploaded becomes visible. Each test has its own SeaweedFS, since it
stops it."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from podstack import MLOpsClient
from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.s3.conftest import aws_env
from tests.s3_server import SeaweedS3

pytestmark = [pytest.mark.one_db, pytest.mark.timeout(300)]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def _module_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    # One S3 server of its own for this module (the tests stop and kill it, so not the
    # session's); each test gets a fresh bucket on it.
    server = SeaweedS3(tmp_path_factory.mktemp("weed")).start()
    yield server
    server.stop()


@pytest.fixture
def own_s3(_module_s3: SeaweedS3) -> SeaweedS3:
    if _module_s3.proc is None:  # a failed test may have left it stopped
        _module_s3.start()
    return _module_s3


@pytest.fixture
def server_on(
    own_s3: SeaweedS3, settings: Settings, db: Database, tmp_path: Path
) -> Iterator[tuple[LiveServer, str]]:
    bucket = own_s3.new_bucket()
    s = settings.model_copy(
        update={
            "home": tmp_path / "home",
            "artifacts_uri": f"s3://{bucket}/podstack",
            "artifacts_proxy": True,
        }
    )
    with aws_env(own_s3):
        server = LiveServer(s)
        server.start()
    yield server, bucket
    server.stop()


def _back_after(s3: SeaweedS3, seconds: float) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        s3.start()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _sdk(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> MLOpsClient:
    monkeypatch.setenv("PODSTACK_RETRY_SECONDS", "90")
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    return MLOpsClient(api_token=ADMIN_TOKEN, url=server.url)


def test_download_waits_for_the_store_to_come_back(
    server_on: tuple[LiveServer, str],
    own_s3: SeaweedS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, _ = server_on
    data = os.urandom(12 * MIB)
    (tmp_path / "w.bin").write_bytes(data)
    with _sdk(server, monkeypatch) as c:
        with c.start_run(experiment_id="faults") as run:
            run.log_artifact(str(tmp_path / "w.bin"))
        own_s3.stop()
        # While it is down the server answers 503 (retryable), not 500.
        api = httpx.Client(
            base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        r = api.get(f"/runs/{run.id}/artifacts/w.bin")
        assert r.status_code == 503, r.text
        assert "not reachable right now" in r.json()["error"]["message"]
        back = _back_after(own_s3, 2)
        got = Path(c.download_artifacts(run.id, "w.bin", tmp_path / "out"))
        back.join()
    assert got.read_bytes() == data


def test_upload_waits_for_the_store_and_nothing_half_visible(
    server_on: tuple[LiveServer, str],
    own_s3: SeaweedS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, bucket = server_on
    data = os.urandom(10 * MIB)  # two parts on the way into the bucket
    (tmp_path / "u.bin").write_bytes(data)
    with _sdk(server, monkeypatch) as c:
        with c.start_run(experiment_id="faults") as run:
            own_s3.stop()
            back = _back_after(own_s3, 2)
            run.log_artifact(str(tmp_path / "u.bin"))
            back.join()
        files = c.list_artifacts(run.id)
    assert [(f.path, f.size) for f in files] == [("u.bin", len(data))]
    keys = own_s3.keys(bucket)
    digest = hashlib.sha256(data).hexdigest()
    assert [k for k in keys if "/blobs/" in k] == [
        f"podstack/blobs/sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    ]
    assert not [k for k in keys if "/tmp/" in k]
    assert own_s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads") is None


def test_store_stopped_mid_download_cuts_then_resumes(
    server_on: tuple[LiveServer, str],
    own_s3: SeaweedS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, _ = server_on
    data = os.urandom(48 * MIB)
    (tmp_path / "big.bin").write_bytes(data)
    with _sdk(server, monkeypatch) as c:
        with c.start_run(experiment_id="faults") as run:
            run.log_artifact(str(tmp_path / "big.bin"))
        url = f"{server.url}/api/v1/runs/{run.id}/artifacts/big.bin"
        received = 0
        with httpx.stream("GET", url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
            assert r.status_code == 200
            stream = r.iter_bytes(MIB)
            received += len(next(stream))
            own_s3.kill()  # mid-stream: connections reset
            with pytest.raises(httpx.HTTPError):
                for chunk in stream:
                    received += len(chunk)
        assert received < len(data)  # the cut is visible to the client, never a short file
        back = _back_after(own_s3, 1)
        got = Path(c.download_artifacts(run.id, "big.bin", tmp_path / "out"))
        back.join()
    assert got.read_bytes() == data

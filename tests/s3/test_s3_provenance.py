"""Provenance on the S3 store (issue 23): bytes changed in the bucket behind Podstack's back are
found on download (the SDK names the file), on deploy (the model server is never started on
them) and by ``verify-store``; putting the bytes back makes all three pass again. A real server
over a socket whose artifacts live in the suite's SeaweedFS bucket."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from podstack import MLOpsClient
from podstack.errors import DeploymentFailed
from podstack.server.artifacts.store_s3 import S3BlobStore
from podstack.server.db.session import Database
from podstack.server.provenance.store_check import verify_store
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.server.deployments.conftest import X_TRAIN, Y_TRAIN, stop_all_model_servers

pytestmark = [pytest.mark.one_db, pytest.mark.timeout(240)]


@pytest.fixture
def sdk(
    s3_live_server: LiveServer, db: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MLOpsClient]:
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    monkeypatch.delenv("PODSTACK_TRUSTED_KEYS", raising=False)
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=s3_live_server.url)
    yield c
    c.close()
    stop_all_model_servers()


def _unique_model() -> object:
    from sklearn.tree import DecisionTreeClassifier

    # The bucket is content-addressed and shared by this worker's S3 tests: a random seed
    # makes this test's pickle (and so its blob) its own.
    return DecisionTreeClassifier(random_state=secrets.randbelow(2**31)).fit(X_TRAIN, Y_TRAIN)


def test_a_damaged_blob_in_the_bucket_is_found_on_download_deploy_and_by_verify_store(
    sdk: MLOpsClient, s3_live_server: LiveServer, db: Database, tmp_path: Path
) -> None:
    with sdk.start_run(experiment_id="s3-provenance") as run:
        run.log_model(_unique_model(), "model", input_example=X_TRAIN[:2])
    v = sdk.create_model_version("s3-signed", run.id, "model").version
    assert sdk.verify_model_version("s3-signed", v).valid
    files = sdk._version_files("s3-signed", v)
    target = max(files, key=lambda f: f.size)  # the weights
    store = s3_live_server.app.state.store
    assert isinstance(store, S3BlobStore)
    key = store.key_for(target.sha256)
    original = store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
    store.client.put_object(Bucket=store.bucket, Key=key, Body=b"evil" + original[4:])
    try:
        with pytest.raises(Exception) as exc:
            sdk.download_model_version("s3-signed", v, tmp_path / "dl")
        assert target.path in str(exc.value)
        with pytest.raises(DeploymentFailed) as failed:
            sdk.deploy_model("s3-signed", v, endpoint_name="s3-signed")
        assert sdk.get_deployment("s3-signed").status == "failed", failed.value
        report = verify_store(db, store)
    finally:
        store.client.put_object(Bucket=store.bucket, Key=key, Body=original)
    assert target.sha256 in report.corrupted and not report.ok
    assert ("s3-signed", v, target.path, target.sha256) in report.damaged_files
    # The bytes back as they were: every path accepts the version again.
    assert verify_store(db, store).ok
    sdk.download_model_version("s3-signed", v, tmp_path / "ok")
    assert (tmp_path / "ok" / target.path).read_bytes() == original

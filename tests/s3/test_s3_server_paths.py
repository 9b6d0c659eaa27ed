"""Every server path that reads or writes blobs, on the S3 store (proxied transfers): REST
upload/download (ranges, ETag, refusals), the registry's version files, the UI's downloads,
the SDK on both backends, gc, backup/restore, and deployments. Blobs exist only in the bucket.

The database is the usual test database but plays no part in what is checked: one_db.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path

import httpx
import pytest

from podstack import MLOpsClient
from podstack.server.artifacts.store_factory import open_uri
from podstack.server.artifacts.store_s3 import PART_SIZE, S3BlobStore
from podstack.server.backup import service as backup_service
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.registry import gc
from tests.conftest import LiveServer, signed_in
from tests.s3.conftest import aws_env, bucket_blob_keys, local_blob_files
from tests.s3_server import SeaweedS3
from tests.server.registry.helpers import make_run, new_version

pytestmark = pytest.mark.one_db
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _store(settings: Settings, s3: SeaweedS3) -> S3BlobStore:
    with aws_env(s3):
        store = open_uri(settings.artifacts_uri)
    assert isinstance(store, S3BlobStore)
    return store


def test_upload_download_roundtrip_lives_only_in_the_bucket(
    s3_api: httpx.Client, s3_settings: Settings, s3_server: SeaweedS3, s3_bucket: str
) -> None:
    run_id = s3_api.post("/runs", json={"experiment_id": "s3"}).json()["id"]
    big = os.urandom(PART_SIZE + 4321)  # a multipart upload into the bucket
    for path, data in (("small.txt", b"hello s3"), ("weights/big.bin", big)):
        r = s3_api.put(
            f"/runs/{run_id}/artifacts/{path}",
            content=data,
            headers={"X-Content-SHA256": _sha(data)},
        )
        assert r.status_code == 201, r.text
        assert r.json()["sha256"] == _sha(data)
        got = s3_api.get(f"/runs/{run_id}/artifacts/{path}")
        assert got.status_code == 200 and got.content == data
        assert got.headers["etag"] == f'"{_sha(data)}"'
    store = _store(s3_settings, s3_server)
    assert store.key_for(_sha(big)) in bucket_blob_keys(s3_server, s3_bucket)
    assert local_blob_files(s3_settings.home) == []  # nothing on the server's disk
    # A resumed download (Range) and a cached one (If-None-Match).
    r = s3_api.get(f"/runs/{run_id}/artifacts/weights/big.bin", headers={"Range": "bytes=100-"})
    assert r.status_code == 206 and r.content == big[100:]
    r = s3_api.get(
        f"/runs/{run_id}/artifacts/small.txt", headers={"If-None-Match": f'"{_sha(b"hello s3")}"'}
    )
    assert r.status_code == 304


def test_a_mismatching_upload_leaves_nothing_in_the_bucket(
    s3_api: httpx.Client, s3_server: SeaweedS3, s3_bucket: str
) -> None:
    run_id = s3_api.post("/runs", json={"experiment_id": "s3"}).json()["id"]
    before = s3_server.keys(s3_bucket)
    for data in (b"tiny", os.urandom(PART_SIZE + 1)):
        r = s3_api.put(
            f"/runs/{run_id}/artifacts/bad.bin",
            content=data,
            headers={"X-Content-SHA256": "0" * 64},
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "CHECKSUM_MISMATCH"
        assert "Nothing was stored" in r.json()["error"]["message"]
    assert s3_server.keys(s3_bucket) == before
    assert s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads") is None
    assert s3_api.get(f"/runs/{run_id}/artifacts", params={"path": ""}).json()["items"] == []


def test_content_removed_from_the_bucket_is_a_clear_error(
    s3_api: httpx.Client, s3_settings: Settings, s3_server: SeaweedS3
) -> None:
    run_id = make_run(s3_api, {"gone.bin": b"will vanish"})
    _store(s3_settings, s3_server).delete(_sha(b"will vanish"))
    r = s3_api.get(f"/runs/{run_id}/artifacts/gone.bin")
    assert r.status_code == 500
    assert "missing" in r.json()["error"]["message"]


def test_registry_files_and_ui_downloads(s3_api: httpx.Client, s3_live_server: LiveServer) -> None:
    files = {"model/model.onnx": b"onnx-bytes", "model/config.json": b'{"a": 1}'}
    run_id = make_run(s3_api, files)
    new_version(s3_api, "s3-model", run_id, "model")
    r = s3_api.get("/registered-models/s3-model/versions/1/files/model.onnx")
    assert r.status_code == 200 and r.content == b"onnx-bytes"
    web = signed_in(s3_live_server.url)
    try:
        base = "/models/s3-model/versions/1/download"
        # Whole version, and a selection of files: zips streamed from the bucket.
        for params, names in (
            ({}, {"config.json", "model.onnx"}),
            ({"path": ["model.onnx", "config.json"]}, {"config.json", "model.onnx"}),
        ):
            r = web.get(base, params=params)
            assert r.status_code == 200, r.text
            with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
                assert set(zf.namelist()) == names
                assert zf.read("model.onnx") == b"onnx-bytes"
        # One file: its verified single-file download.
        r = web.get(base, params={"path": "config.json"}, follow_redirects=True)
        assert r.status_code == 200 and r.content == b'{"a": 1}'
    finally:
        web.close()


def test_sdk_artifacts_and_version_download(s3_client: MLOpsClient, tmp_path: Path) -> None:
    src = tmp_path / "export"
    (src / "sub").mkdir(parents=True)
    payload = os.urandom(PART_SIZE + 99)
    (src / "sub" / "weights.bin").write_bytes(payload)
    (src / "readme.txt").write_text("hi")
    with s3_client.start_run(experiment_id="s3-sdk") as run:
        run.log_params({"lr": 0.1})
        run.log_artifact(str(src))
    s3_client.register_model("s3-sdk-model")
    s3_client.create_model_version("s3-sdk-model", source_run_id=run.id, artifact_path="export")
    out = Path(s3_client.download_model_version("s3-sdk-model", 1, tmp_path / "out"))
    assert (out / "sub" / "weights.bin").read_bytes() == payload
    got = Path(s3_client.download_artifacts(run.id, "export/readme.txt", tmp_path / "arts"))
    assert got.read_text() == "hi"


def test_gc_reclaims_unreferenced_blobs_in_the_bucket(
    s3_api: httpx.Client, s3_settings: Settings, s3_server: SeaweedS3, db: Database
) -> None:
    store = _store(s3_settings, s3_server)
    for d in list(store.iter_digests()):  # earlier tests' blobs (their rows are wiped)
        store.delete(d)
    make_run(s3_api, {"kept.bin": b"referenced"})
    orphan = store.put_iter([b"orphan in the bucket"]).sha256
    abandoned = store.client.create_multipart_upload(
        Bucket=store.bucket, Key=store.location.key("tmp/upload-abandoned")
    )
    report = gc.collect(db, store, grace_seconds=0)  # dry run
    assert report.digests == [orphan] and report.deleted is False
    assert report.stale_uploads >= 1
    assert store.exists(orphan)
    report = gc.collect(db, store, delete=True, grace_seconds=0)
    assert report.digests == [orphan]
    assert not store.exists(orphan) and store.exists(_sha(b"referenced"))
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads") or []
    assert abandoned["UploadId"] not in [u["UploadId"] for u in uploads]
    # A blob reused (deduplicated) within the grace period is kept even if unreferenced.
    reused = store.put_iter([b"reused"]).sha256
    assert gc.collect(db, store, delete=True, grace_seconds=3600).digests == []
    assert store.exists(reused)


def test_gc_removes_kserve_copies_of_deleted_versions_only(
    s3_api: httpx.Client, s3_settings: Settings, s3_server: SeaweedS3, db: Database
) -> None:
    """A version published for KServe (copied by path under models/) leaves its copy behind
    when it is deleted: gc reports it, removes it with --delete, and keeps every copy of a
    version that still exists (and every blob)."""
    store = _store(s3_settings, s3_server)
    for model, version in store.published_versions():  # earlier tests' (their rows are wiped)
        store.delete_published(model, version)
    run_id = make_run(s3_api, {"model.pt": b"kserve weights"})
    for _ in range(2):
        new_version(s3_api, "kserve-gc", run_id)
    files = [("model.pt", _sha(b"kserve weights"))]
    for v in (1, 2):
        store.publish_version("kserve-gc", v, files)
    assert s3_api.delete("/registered-models/kserve-gc/versions/2").status_code == 204

    report = gc.collect(db, store, grace_seconds=0)  # dry run: nothing removed
    assert (report.orphan_version_copies, report.orphan_version_copy_bytes) == (1, 14)
    assert set(store.published_versions()) >= {("kserve-gc", 1), ("kserve-gc", 2)}
    report = gc.collect(db, store, delete=True, grace_seconds=0)
    assert report.orphan_version_copies == 1
    copies = store.published_versions()
    assert ("kserve-gc", 1) in copies and ("kserve-gc", 2) not in copies
    assert store.exists(_sha(b"kserve weights"))  # the blob is version 1's too
    assert gc.collect(db, store, grace_seconds=0).orphan_version_copies == 0


def test_backup_from_the_bucket_restores_into_another(
    s3_api: httpx.Client,
    s3_settings: Settings,
    s3_server: SeaweedS3,
    db: Database,
    scratch_database_url: str,
    tmp_path: Path,
) -> None:
    run_id = make_run(s3_api, {"model.pt": b"weights in s3"})
    store = _store(s3_settings, s3_server)
    summary = backup_service.backup(db.engine, store, tmp_path / "bk")
    assert summary.blobs >= 1
    assert backup_service.verify(tmp_path / "bk")["blobs"] == summary.blobs
    other_bucket = s3_server.new_bucket("restored")
    target = _store(
        s3_settings.model_copy(update={"artifacts_uri": f"s3://{other_bucket}/p"}), s3_server
    )
    target_db = Database(scratch_database_url)
    try:
        backup_service.restore(target_db.engine, target, tmp_path / "bk")
    finally:
        target_db.dispose()
    assert b"".join(target.iter_blob(_sha(b"weights in s3"))) == b"weights in s3"
    assert run_id  # the rows came along (checked by the backup tests on both databases)


def test_large_single_ui_download_redirects_to_a_presigned_url(
    s3_settings: Settings, s3_server: SeaweedS3
) -> None:
    """Direct mode: the browser fetches a large file from the bucket itself, for a few
    minutes only; proxied mode and small files are streamed by the server."""
    from types import SimpleNamespace

    from podstack.server.web.versions import PRESIGNED_DOWNLOAD_MIN_BYTES, presigned_download

    store = _store(s3_settings, s3_server)
    data = os.urandom(1000)
    blob = store.put_iter([data])
    big = PRESIGNED_DOWNLOAD_MIN_BYTES
    direct = s3_settings.model_copy(update={"artifacts_proxy": False})
    ctx = SimpleNamespace(state=SimpleNamespace(store=store), settings=direct)
    url = presigned_download(ctx, ("dir/model.bin", blob.sha256), big)
    assert url is not None and "X-Amz-Expires=300" in url
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == data
    assert "model.bin" in r.headers["content-disposition"]
    assert presigned_download(ctx, ("m.bin", blob.sha256), big - 1) is None
    proxied = SimpleNamespace(state=ctx.state, settings=s3_settings)  # artifacts_proxy=True
    assert presigned_download(proxied, ("m.bin", blob.sha256), big) is None

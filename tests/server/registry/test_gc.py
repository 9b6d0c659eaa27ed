"""Garbage collection: only blobs referenced by nothing (no run artifact, no version snapshot)
and older than the grace period are reclaimed; dry run by default."""

from __future__ import annotations

import hashlib
import os
import time

import httpx
import pytest

from podstack.server.artifacts.store import BlobStore
from podstack.server.artifacts.store_factory import open_store
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.registry import gc
from tests.server.registry.helpers import make_run, new_version

DAY = 24 * 3600


def _age(store: BlobStore, digest: str, seconds: float) -> None:
    path = store.path_for(digest)
    old = time.time() - seconds
    os.utime(path, (old, old))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.local_store  # ages blob files on disk; the bucket's gc: tests/s3
def test_gc_reclaims_only_old_unreferenced_blobs(
    api: httpx.Client, db: Database, settings: Settings
) -> None:
    store = BlobStore(settings.artifacts_path)
    for d in list(store.iter_digests()):  # earlier tests' blobs (their rows are wiped)
        store.delete(d)
    run_keep = make_run(api, {"run-only.bin": b"run artifact"})
    run_gone = make_run(api, {"model.pt": b"version snapshot", "scratch.bin": b"scratch"})
    new_version(api, "gc-model", run_gone, "model.pt")
    # Blobs nothing references (e.g. an upload refused after its bytes were stored).
    orphan_old = store.put_iter([b"orphan, old"]).sha256
    orphan_new = store.put_iter([b"orphan, fresh (an upload in flight)"]).sha256
    for digest in store.iter_digests():
        if digest != orphan_new:
            _age(store, digest, 2 * DAY)
    stale_tmp = store.tmp_dir / "upload-crashed"
    stale_tmp.write_bytes(b"half an upload")
    old = time.time() - 2 * DAY
    os.utime(stale_tmp, (old, old))
    fresh_tmp = store.tmp_dir / "upload-inflight"
    fresh_tmp.write_bytes(b"being written")

    report = gc.collect(db, store)  # dry run
    assert report.deleted is False
    assert report.digests == [orphan_old]
    assert report.reclaimable == 1 and report.reclaimable_bytes == len(b"orphan, old")
    assert report.skipped_recent == 1 and report.stale_uploads == 1
    assert store.exists(orphan_old) and stale_tmp.exists()

    report = gc.collect(db, store, delete=True)
    assert report.digests == [orphan_old]
    assert not store.exists(orphan_old)
    assert store.exists(orphan_new)  # younger than the grace period
    assert not stale_tmp.exists() and fresh_tmp.exists()
    for data in (b"run artifact", b"version snapshot", b"scratch"):
        assert store.exists(_sha(data))
    fresh_tmp.unlink()

    # Once the version and its run are gone, the snapshot's blob becomes reclaimable; a blob
    # still referenced by another run's artifact is not.
    api.delete("/registered-models/gc-model/versions/1")
    assert api.delete(f"/runs/{run_gone}").status_code == 204
    report = gc.collect(db, store, delete=True, grace_seconds=0)
    assert set(report.digests) == {_sha(b"version snapshot"), _sha(b"scratch"), orphan_new}
    assert store.exists(_sha(b"run artifact"))
    assert api.get(f"/runs/{run_keep}/artifacts/run-only.bin").content == b"run artifact"


def test_version_snapshot_keeps_blob_alive_after_run_artifact_is_replaced(
    api: httpx.Client, db: Database, settings: Settings
) -> None:
    store = open_store(settings)  # the live server's store: a folder or a bucket
    run = make_run(api, {"model.pt": b"registered bytes"}, finish=False)
    new_version(api, "pinned", run)
    # The run's path now points at new bytes; only the version still needs the old blob.
    api.put(f"/runs/{run}/artifacts/model.pt", content=b"newer bytes")
    report = gc.collect(db, store, delete=True, grace_seconds=0)
    assert _sha(b"registered bytes") not in report.digests
    r = api.get("/registered-models/pinned/versions/1/files/model.pt")
    assert r.content == b"registered bytes"

"""The blob-store contract, on both stores: the local disk and an S3 bucket (a real SeaweedFS,
tests/s3_server.py). Every caller uses only these methods, so what holds here holds for every
server path that reads or writes blobs. The database plays no part: one_db."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest

from podstack.errors import IntegrityError, NotFound, PayloadTooLarge
from podstack.server.artifacts import location
from podstack.server.artifacts.store import BlobStore
from podstack.server.artifacts.store_factory import ArtifactStore, open_uri
from podstack.server.artifacts.store_s3 import PART_SIZE, S3BlobStore
from tests.s3_server import SeaweedS3

pytestmark = pytest.mark.one_db
MIB = 1024 * 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return open_uri(str(tmp_path / "artifacts"))
    return open_uri(request.getfixturevalue("s3_uri"))


def _visible_keys(store: ArtifactStore, s3: SeaweedS3 | None) -> list[str]:
    """Everything under the store (files or objects), to prove a refusal left nothing."""
    if isinstance(store, S3BlobStore):
        assert s3 is not None
        return s3.keys(store.bucket)
    assert isinstance(store, BlobStore)
    return sorted(str(p) for p in store.root.rglob("*") if p.is_file())


def _uploads_in_progress(store: ArtifactStore) -> list[str]:
    if isinstance(store, S3BlobStore):
        got = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads") or []
        return [u["Key"] for u in got]
    return []


def _s3(request: pytest.FixtureRequest, store: ArtifactStore) -> SeaweedS3 | None:
    return request.getfixturevalue("s3_server") if isinstance(store, S3BlobStore) else None


@pytest.mark.parametrize("size", [0, 1000, PART_SIZE + 12345])
def test_put_is_content_addressed_verified_and_deduplicated(
    store: ArtifactStore, size: int
) -> None:
    data = os.urandom(size)
    chunks = [data[i : i + MIB] for i in range(0, len(data), MIB)] or [b""]
    blob = store.put_iter(chunks)
    assert (blob.sha256, blob.size) == (_sha(data), size)
    assert store.exists(blob.sha256)
    assert b"".join(store.iter_blob(blob.sha256)) == data
    info = store.stat(blob.sha256)
    assert info is not None and info.size == size
    # Same content again (declared digest this time): nothing new, same answer.
    assert store.put_iter([data], expected_sha256=blob.sha256) == blob
    assert [b.sha256 for b in store.iter_blobs()] == [blob.sha256]
    assert _uploads_in_progress(store) == []


def test_s3_keys_follow_the_content_address(s3_uri: str, s3_server: SeaweedS3) -> None:
    store = open_uri(s3_uri)
    assert isinstance(store, S3BlobStore)
    blob = store.put_iter([b"hello"])
    d = blob.sha256
    assert store.key_for(d) == f"podstack/blobs/sha256/{d[:2]}/{d[2:4]}/{d}"
    assert s3_server.keys(store.bucket) == [store.key_for(d)]
    # The S3 checksum is stored with the object: any S3 tool can verify it.
    head = store.client.head_object(
        Bucket=store.bucket, Key=store.key_for(d), ChecksumMode="ENABLED"
    )
    assert head.get("ChecksumSHA256")


@pytest.mark.parametrize("size", [100, PART_SIZE + 1])
def test_wrong_declared_digest_leaves_nothing(
    request: pytest.FixtureRequest, store: ArtifactStore, size: int
) -> None:
    s3 = _s3(request, store)
    before = _visible_keys(store, s3)
    with pytest.raises(IntegrityError) as err:
        store.put_iter([os.urandom(size)], expected_sha256="0" * 64)
    assert err.value.details["expected"] == "0" * 64
    assert _visible_keys(store, s3) == before
    assert _uploads_in_progress(store) == []
    assert not store.exists("0" * 64)


def test_over_max_bytes_leaves_nothing(
    request: pytest.FixtureRequest, store: ArtifactStore
) -> None:
    s3 = _s3(request, store)
    before = _visible_keys(store, s3)
    with pytest.raises(PayloadTooLarge):
        store.put_iter([b"x" * PART_SIZE, b"y" * PART_SIZE], max_bytes=PART_SIZE + 10)
    assert _visible_keys(store, s3) == before
    assert _uploads_in_progress(store) == []


def test_put_async_streams_in_parts(store: ArtifactStore) -> None:
    data = os.urandom(2 * PART_SIZE + 7)

    async def body():  # type: ignore[no-untyped-def]
        for i in range(0, len(data), MIB):
            yield data[i : i + MIB]

    # In a thread of its own: a browser test earlier in the same xdist worker can leave an
    # event loop marked as running in this thread (Playwright's sync API), and anyio.run
    # refuses to nest.
    with ThreadPoolExecutor(1) as pool:
        blob = pool.submit(anyio.run, lambda: store.put_async(body())).result()
    assert blob.sha256 == _sha(data)
    assert b"".join(store.iter_blob(blob.sha256)) == data


def test_an_aborted_stream_leaves_nothing(
    request: pytest.FixtureRequest, store: ArtifactStore
) -> None:
    """A client that disconnects mid-upload: the generator raises part-way."""
    s3 = _s3(request, store)
    before = _visible_keys(store, s3)

    def cut():  # type: ignore[no-untyped-def]
        yield b"a" * PART_SIZE
        yield b"b" * MIB
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.put_iter(cut())
    assert _visible_keys(store, s3) == before
    assert _uploads_in_progress(store) == []


def test_corrupted_blob_fails_the_stream_before_its_last_chunk(
    request: pytest.FixtureRequest, store: ArtifactStore
) -> None:
    data = os.urandom(3 * MIB)
    blob = store.put_iter([data])
    bad = bytes([data[0] ^ 1]) + data[1:]
    if isinstance(store, S3BlobStore):  # changed behind Podstack's back
        store.client.put_object(Bucket=store.bucket, Key=store.key_for(blob.sha256), Body=bad)
    else:
        assert isinstance(store, BlobStore)
        store.path_for(blob.sha256).write_bytes(bad)
    got = 0
    with pytest.raises(IntegrityError):
        for chunk in store.iter_blob(blob.sha256):
            got += len(chunk)
    assert got < len(data)


def test_open_blob_seeks_and_materialize_verifies(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(PART_SIZE + 100)
    blob = store.put_iter([data])
    with store.open_blob(blob.sha256) as fh:
        fh.seek(-10, os.SEEK_END)
        assert fh.read() == data[-10:]
        fh.seek(5)
        assert fh.read(4) == data[5:9]
    dest = tmp_path / "out" / "model.bin"
    store.materialize(blob.sha256, dest)
    assert dest.read_bytes() == data
    assert dest.stat().st_mode & 0o077 == 0  # owner-only
    with pytest.raises(FileNotFoundError):
        store.open_blob("f" * 64)


def test_unknown_or_malformed_digest(store: ArtifactStore) -> None:
    with pytest.raises(NotFound):
        list(store.iter_blob("a" * 64))
    with pytest.raises(NotFound):
        store.exists("../../etc/passwd")
    assert store.stat("a" * 64) is None
    assert store.delete("a" * 64) is False


def test_delete_and_reuse_dates(store: ArtifactStore) -> None:
    blob = store.put_iter([b"some bytes"])
    first = store.last_used(blob.sha256)
    assert first is not None and abs(first - time.time()) < 120
    store.touch(blob.sha256)
    again = store.last_used(blob.sha256)
    assert again is not None and again >= first
    assert store.delete(blob.sha256) is True
    assert not store.exists(blob.sha256)
    assert list(store.iter_blobs()) == []


def test_stale_multipart_uploads_are_listed_and_removed(s3_uri: str) -> None:
    store = open_uri(s3_uri)
    assert isinstance(store, S3BlobStore)
    key = store.location.key("tmp/upload-crashed")
    mpu = store.client.create_multipart_upload(Bucket=store.bucket, Key=key)
    assert store.stale_uploads(older_than_seconds=3600) == []  # young: maybe still live
    stale = store.stale_uploads(older_than_seconds=-60)
    assert [(s.key, s.upload_id) for s in stale] == [(key, mpu["UploadId"])]
    assert store.sweep_tmp(older_than_seconds=-60) == 1
    assert _uploads_in_progress(store) == []


def test_publish_version_copies_inside_the_bucket(s3_uri: str, s3_server: SeaweedS3) -> None:
    store = open_uri(s3_uri)
    assert isinstance(store, S3BlobStore)
    a, b = store.put_iter([b"weights"]), store.put_iter([b"{}"])
    files = [("model.onnx", a.sha256), ("meta/config.json", b.sha256)]
    uri = store.publish_version("fraud-model", 3, files)
    assert uri == f"s3://{store.bucket}/podstack/models/fraud-model/3/"
    c = s3_server.client()
    base = "podstack/models/fraud-model/3/"
    assert c.get_object(Bucket=store.bucket, Key=base + "model.onnx")["Body"].read() == b"weights"
    assert c.get_object(Bucket=store.bucket, Key=base + "meta/config.json")["Body"].read() == b"{}"
    assert store.publish_version("fraud-model", 3, files) == uri  # idempotent
    # The same name and version again after a delete and re-create: other bytes of the same
    # size replace the old copy (a size check alone would keep serving the old model).
    other = store.put_iter([b"WEIGHTS"])
    store.publish_version("fraud-model", 3, [("model.onnx", other.sha256)])
    assert c.get_object(Bucket=store.bucket, Key=base + "model.onnx")["Body"].read() == b"WEIGHTS"
    with pytest.raises(NotFound):
        store.publish_version("fraud-model", 4, [("x", "e" * 64)])


# ---------------------------------------------------------------- PODSTACK_ARTIFACTS_URI


@pytest.mark.parametrize(
    "uri, kind",
    [
        ("/var/lib/podstack/artifacts", Path),
        ("file:///srv/artifacts", Path),
        ("relative/dir", Path),
        ("s3://my-models", location.S3Location),
        ("s3://my-models/teams/vision/", location.S3Location),
    ],
)
def test_uris_a_server_can_serve(uri: str, kind: type) -> None:
    assert isinstance(location.parse(uri), kind)


@pytest.mark.parametrize(
    "uri, says",
    [
        ("gs://bucket/models", "'gs' storage is not supported"),
        ("https://example.com/x", "'https' storage is not supported"),
        ("s3:/bucket/prefix", "is not a valid URI"),
        ("s3://Bad_Bucket/x", "is not a valid S3 bucket name"),
        ("s3://ab/x", "is not a valid S3 bucket name"),
        ("s3://bucket/a/../b", "the prefix"),
        ("s3://bucket/a//b", "the prefix"),
    ],
)
def test_uris_it_refuses_say_what_is_valid(uri: str, says: str) -> None:
    with pytest.raises(ValueError) as err:
        location.parse(uri)
    assert says in str(err.value) and "s3://" in str(err.value)

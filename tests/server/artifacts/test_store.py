"""The blob store, the artifact path rule, and the service functions the registry calls."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest

from podstack.errors import IntegrityError, NotFound, PayloadTooLarge, ValidationFailed
from podstack.schemas import tracking as tsch
from podstack.schemas.artifact_paths import (
    MAX_PATH_LENGTH,
    parent_dirs,
    safe_join,
    validate_artifact_path,
)
from podstack.server.artifacts import service
from podstack.server.artifacts.models import ArtifactFile as ArtifactRow
from podstack.server.artifacts.store import CHUNK, BlobStore, StoredBlob
from podstack.server.db.session import Database
from podstack.server.tracking import service as tracking


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "artifacts")


# ---------------------------------------------------------------- BlobStore


def test_put_is_content_addressed_and_deduplicated(store: BlobStore) -> None:
    data = os.urandom(CHUNK * 2 + 5)
    a = store.put_iter([data[:100], data[100:]])
    b = store.put_iter([data])
    assert a == b == StoredBlob(_sha(data), len(data))
    path = store.path_for(a.sha256)
    assert path == store.root / "blobs" / "sha256" / a.sha256[:2] / a.sha256
    assert path.read_bytes() == data
    assert list(store.iter_digests()) == [a.sha256]
    assert list(store.tmp_dir.iterdir()) == []


def test_put_with_wrong_expected_digest_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(IntegrityError) as err:
        store.put_iter([b"abc"], expected_sha256=_sha(b"abd"))
    assert err.value.details["actual"] == _sha(b"abc")
    assert list(store.iter_digests()) == []
    assert list(store.tmp_dir.iterdir()) == []
    assert store.put_iter([b"abc"], expected_sha256=_sha(b"abc").upper()).sha256 == _sha(b"abc")


def test_put_over_max_bytes_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(PayloadTooLarge, match="limit of 10 bytes"):
        store.put_iter([b"12345", b"678901"], max_bytes=10)
    assert list(store.iter_digests()) == []
    assert list(store.tmp_dir.iterdir()) == []


def test_put_async_streams(store: BlobStore) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for i in range(3):
            yield bytes([i]) * 1000

    # A fresh thread: the worker's main thread may already run an event loop (the browser
    # tests' Playwright sync API keeps one there for the session).
    with ThreadPoolExecutor(1) as pool:
        blob = pool.submit(anyio.run, lambda: store.put_async(chunks())).result()
    assert blob.size == 3000
    assert store.path_for(blob.sha256).read_bytes() == b"".join(bytes([i]) * 1000 for i in range(3))


def test_put_file_and_delete(store: BlobStore, tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"file content")
    blob = store.put_file(f)
    assert store.exists(blob.sha256)
    assert store.delete(blob.sha256) is True
    assert store.delete(blob.sha256) is False
    assert not store.exists(blob.sha256)


def test_iter_blob_verifies_and_withholds_last_chunk(store: BlobStore) -> None:
    data = os.urandom(CHUNK * 3 + 1)
    blob = store.put_iter([data])
    assert b"".join(store.iter_blob(blob.sha256)) == data
    store.path_for(blob.sha256).write_bytes(bytes([data[0] ^ 1]) + data[1:])
    got = bytearray()
    with pytest.raises(IntegrityError, match="corrupted"):
        for chunk in store.iter_blob(blob.sha256):
            got += chunk
    assert len(got) < len(data)  # the corrupted blob was never delivered whole


def test_unknown_or_malformed_digest(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        list(store.iter_blob("0" * 64))
    with pytest.raises(NotFound):
        store.path_for("../../etc/passwd")


# ---------------------------------------------------------------- paths

GOOD = [
    "model.pt",
    "checkpoints/best_model.pt",
    "a/b/c/d.txt",
    "données/モデル v1.bin",
    ".hidden",
    "a/.b",
    "..a",
    "a..",
    "x" * MAX_PATH_LENGTH,
    "with space/and:colon",
]


@pytest.mark.parametrize("path", GOOD)
def test_valid_paths(path: str) -> None:
    assert validate_artifact_path(path) == path


BAD = {
    "": "empty",
    "/abs": "absolute",
    "/": "absolute",
    "C:/x": "absolute",
    "c:x": "absolute",
    "../x": "parent_segment",
    "a/../b": "parent_segment",
    "a/..": "parent_segment",
    "./a": "dot_segment",
    "a/./b": "dot_segment",
    "a//b": "empty_segment",
    "a/": "empty_segment",
    "a\x00b": "nul",
    "a\nb": "control_character",
    "a\x7fb": "control_character",
    "a\x85b": "control_character",
    "a\\b": "backslash",
    "x" * (MAX_PATH_LENGTH + 1): "too_long",
}


@pytest.mark.parametrize(("path", "reason"), BAD.items(), ids=list(BAD.values()))
def test_invalid_paths(path: str, reason: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        validate_artifact_path(path)
    assert err.value.details["reason"] == reason
    assert "Invalid artifact path" in err.value.message
    assert err.value.status == 422


def test_directory_mode() -> None:
    assert validate_artifact_path("", directory=True) == ""
    assert validate_artifact_path("/", directory=True) == ""
    assert validate_artifact_path("a/b/", directory=True) == "a/b"
    for bad in ("a//", "/a", "a/../b", "a//b/"):
        with pytest.raises(ValidationFailed):
            validate_artifact_path(bad, directory=True)


def test_parent_dirs() -> None:
    assert parent_dirs("a/b/c.txt") == ["a", "a/b"]
    assert parent_dirs("c.txt") == []


def test_safe_join(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a/b.txt") == tmp_path.resolve() / "a" / "b.txt"
    assert safe_join(tmp_path, "") == tmp_path.resolve()
    for hostile in ("../evil", "/etc/passwd", "a/../../x", "a\\..\\x"):
        with pytest.raises(ValidationFailed):
            safe_join(tmp_path, hostile)
    outside = tmp_path.parent / "outside-target"
    outside.mkdir(exist_ok=True)
    (tmp_path / "link").symlink_to(outside)
    with pytest.raises(ValidationFailed, match="outside"):
        safe_join(tmp_path, "link/x.txt")


# ---------------------------------------------------------------- service (registry API)


def _record(db: Database, run_id: str, files: dict[str, bytes]) -> None:
    with db.session() as s:
        for path, data in files.items():
            service.record_upload(s, "admin", run_id, path, StoredBlob(_sha(data), len(data)))


def _new_run(db: Database) -> str:
    with db.session() as s:
        return tracking.create_run(s, "admin", tsch.RunCreate(experiment_id="svc")).id


def test_manifest_file_directory_and_root(db: Database) -> None:
    run_id = _new_run(db)
    files = {"model.pt": b"m", "ckpt/a.bin": b"aa", "ckpt/sub/b.bin": b"bbb", "ckpt.txt": b"t"}
    _record(db, run_id, files)
    with db.session(readonly=True) as s:
        one = service.manifest(s, run_id, "model.pt")
        assert [(e.path, e.size, e.sha256) for e in one] == [("model.pt", 1, _sha(b"m"))]
        d = service.manifest(s, run_id, "ckpt")
        assert [e.path for e in d] == ["ckpt/a.bin", "ckpt/sub/b.bin"]  # not "ckpt.txt"
        assert [e.path for e in service.manifest(s, run_id, "ckpt/")] == [e.path for e in d]
        everything = service.manifest(s, run_id, "")
        assert sorted(e.path for e in everything) == sorted(files)
        assert isinstance(everything[0], service.ManifestEntry)


def test_manifest_errors(db: Database) -> None:
    run_id = _new_run(db)
    _record(db, run_id, {"model.pt": b"m"})
    with db.session(readonly=True) as s:
        with pytest.raises(NotFound) as err:
            service.manifest(s, run_id, "best_model.pt")
        assert "'best_model.pt'" in err.value.message and "'model.pt'" in err.value.message
        assert err.value.details["available"] == ["model.pt"]
        with pytest.raises(NotFound, match="does not exist"):
            service.manifest(s, "run-nope", "model.pt")
        with pytest.raises(ValidationFailed):
            service.manifest(s, run_id, "../model.pt")
    empty = _new_run(db)
    with db.session(readonly=True) as s, pytest.raises(NotFound, match="no artifacts yet"):
        service.manifest(s, empty, "")


def test_referenced_digests(db: Database) -> None:
    a, b = _new_run(db), _new_run(db)
    _record(db, a, {"x": b"1", "y": b"2"})
    _record(db, b, {"z": b"1"})
    with db.session(readonly=True) as s:
        assert service.referenced_digests(s) == {_sha(b"1"), _sha(b"2")}


def test_listing_across_batches_and_pages(db: Database) -> None:
    run_id = _new_run(db)
    files = {f"f{i:03d}.txt": b"x" for i in range(230)}
    files |= {f"d{i:03d}/{n}": b"y" for i in range(150) for n in ("a", "b/c")}
    with db.session() as s:
        for path, data in files.items():
            s.add(ArtifactRow(run_id=run_id, path=path, size=len(data), sha256=_sha(data)))
    with db.session(readonly=True) as s:
        full, token = service.list_artifacts(s, run_id, limit=1000)
        assert token is None
        expected = sorted({p.split("/")[0] for p in files})
        assert [e.path for e in full] == expected
        assert [e.is_dir for e in full] == [p.startswith("d") for p in expected]
        paged, token = [], None
        while True:
            items, token = service.list_artifacts(s, run_id, limit=7, page_token=token)
            paged += items
            if token is None:
                break
        assert paged == full
        rec, _ = service.list_artifacts(s, run_id, recursive=True, limit=1000)
        assert [e.path for e in rec] == sorted(files)


def test_dedup_refreshes_blob_age_so_gc_grace_protects_it(tmp_path: Path) -> None:
    """A re-upload of old, unreferenced content is about to be referenced: gc's grace period
    (based on mtime) must see it as fresh, or gc could delete it under the new row."""
    import os
    import time

    from podstack.server.artifacts.store import BlobStore

    store = BlobStore(tmp_path)
    blob = store.put_iter([b"same bytes"])
    path = store.path_for(blob.sha256)
    old = time.time() - 7 * 24 * 3600
    os.utime(path, (old, old))
    assert store.put_iter([b"same bytes"]).sha256 == blob.sha256
    assert path.stat().st_mtime > time.time() - 60

"""Content-addressed blob store on a local filesystem.

A blob is written to a temp file in the store while hashing, fsynced, then renamed to
``blobs/sha256/<aa>/<digest>``. Rename is atomic on POSIX, so a half-written upload is never
visible under its digest, identical content is stored once, and readers can verify bytes
against the name. Memory use is one chunk, whatever the file size.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from podstack.errors import IntegrityError, NotFound, PayloadTooLarge
from podstack.server import file_modes

CHUNK = 1024 * 1024
# An upload cut off by a crash (SIGKILL, power loss) leaves its temp file behind. A live upload
# writes its file at every chunk, so one untouched for this long belongs to no live upload,
# whichever replica started it: opening the store removes those and nothing younger.
TMP_GRACE_SECONDS = 6 * 3600
log = logging.getLogger("podstack.server.artifacts")


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob as garbage collection and downloads see it."""

    sha256: str
    size: int
    mtime: float  # when it was written or last reused (epoch seconds)


@dataclass(frozen=True)
class StaleUpload:
    """What an unfinished upload left behind: a temp file/object, or an S3 multipart upload."""

    key: str
    size: int
    upload_id: str | None = None


def valid_digest(sha256: str) -> bool:
    return len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)


def check_size(size: int, max_bytes: int | None) -> None:
    """The upload size limit, for every store's writer: 413 once ``size`` passes it."""
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLarge(
            f"Artifact exceeds the limit of {max_bytes} bytes.", {"limit_bytes": max_bytes}
        )


class _Writer:
    def __init__(self, store: BlobStore, max_bytes: int | None) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.hasher = hashlib.sha256()
        self.size = 0
        fd, name = tempfile.mkstemp(prefix="upload-", dir=store.tmp_dir)
        self.fh = os.fdopen(fd, "wb", buffering=0)
        self.tmp = Path(name)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        check_size(self.size, self.max_bytes)
        self.hasher.update(chunk)
        self.fh.write(chunk)

    def commit(self, expected_sha256: str | None) -> StoredBlob:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        digest = self.hasher.hexdigest()
        if expected_sha256 and expected_sha256.lower() != digest:
            self.abort()
            raise IntegrityError(
                "Uploaded bytes do not match the declared sha256.",
                {"expected": expected_sha256, "actual": digest},
            )
        final = self.store.path_for(digest)
        if final.exists():
            self.tmp.unlink(missing_ok=True)  # dedup: same content already stored
            # Refresh its age: `podstack gc` only reclaims unreferenced blobs older than a
            # grace period, and this one is about to be referenced by a new row.
            self.store.touch(digest)
        else:
            file_modes.private_dirs(final.parent)
            os.replace(self.tmp, final)
            _fsync_dir(final.parent)
        return StoredBlob(digest, self.size)

    def abort(self) -> None:
        try:
            self.fh.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """The local-disk store. ``S3BlobStore`` (store_s3.py) offers the same public methods, so
    callers work on either through these methods alone (none opens a blob by path)."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.tmp_dir = self.root / "tmp"
        # Owner-only directories (blob files are 0600: mkstemp creates them so).
        file_modes.private_dirs(self.blobs)
        file_modes.private_dirs(self.tmp_dir)
        self.sweep_tmp()

    def sweep_tmp(self, older_than_seconds: float = TMP_GRACE_SECONDS) -> int:
        """Deletes temp files of uploads nobody has written to for ``older_than_seconds``
        (left by a crash); returns how many. Safe while other replicas upload."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        for entry in os.scandir(self.tmp_dir):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass  # another replica swept it first
        if removed:
            log.info("removed %d stale temp file(s) of interrupted uploads", removed)
        return removed

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    @property
    def uri(self) -> str:
        return str(self.root)

    def check(self) -> None:
        """Nothing to check beyond what opening did (directories created, writable)."""

    def path_for(self, sha256: str) -> Path:
        """This store's file for a digest: for the store's own code and its tests. Other
        callers use the methods below, which the object store offers too."""
        if not valid_digest(sha256):
            raise NotFound("Unknown blob digest.", {"sha256": sha256})
        return self.blobs / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def stat(self, sha256: str) -> BlobInfo | None:
        try:
            st = self.path_for(sha256).stat()
        except FileNotFoundError:
            return None
        return BlobInfo(sha256, st.st_size, st.st_mtime)

    def last_used(self, sha256: str) -> float | None:
        """When the blob was written or last reused (None if absent): its mtime."""
        info = self.stat(sha256)
        return None if info is None else info.mtime

    def touch(self, sha256: str) -> None:
        """Marks a blob as just used (a deduplicated upload), for gc's grace period."""
        os.utime(self.path_for(sha256))

    def open_blob(self, sha256: str) -> BinaryIO:
        """A seekable read-only file for the blob (FileNotFoundError if missing)."""
        return open(self.path_for(sha256), "rb")

    def materialize(self, sha256: str, dest: Path, *, link: bool = False) -> None:
        """Puts the blob's bytes at ``dest``: a hard link when ``link`` and the filesystem
        allows (no copy for a model server's files), else an owner-only copy."""
        src = self.path_for(sha256)
        if not src.exists():
            raise FileNotFoundError(f"blob {sha256} is missing from {self.root}")
        dest = Path(dest)
        file_modes.private_dirs(dest.parent)
        if link:
            try:
                os.link(src, dest)
                return
            except OSError:
                pass
        shutil.copyfile(src, dest)
        dest.chmod(file_modes.FILE_MODE)

    def put_iter(
        self,
        chunks: Iterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredBlob:
        w = _Writer(self, max_bytes)
        try:
            for chunk in chunks:
                w.write(chunk)
        except BaseException:
            w.abort()
            raise
        return w.commit(expected_sha256)

    async def put_async(
        self,
        chunks: AsyncIterator[bytes],
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredBlob:
        import anyio.to_thread

        w = _Writer(self, max_bytes)
        try:
            async for chunk in chunks:
                if chunk:
                    w.write(chunk)
            return await anyio.to_thread.run_sync(w.commit, expected_sha256)
        except BaseException:
            w.abort()
            raise

    def put_file(self, path: Path, *, max_bytes: int | None = None) -> StoredBlob:
        with open(path, "rb") as fh:
            return self.put_iter(iter(lambda: fh.read(CHUNK), b""), max_bytes=max_bytes)

    def iter_blob(self, sha256: str, *, verify: bool = True) -> Iterator[bytes]:
        """Streams a blob; with ``verify`` the last chunk is only released after the hash
        matched, so a corrupted blob fails the transfer instead of passing silently."""
        path = self.path_for(sha256)
        if not path.exists():
            raise NotFound("Artifact content is missing from the store.", {"sha256": sha256})
        h = hashlib.sha256()
        pending: bytes | None = None
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                if pending is not None:
                    yield pending
                if verify:
                    h.update(chunk)
                pending = chunk
        if verify and h.hexdigest() != sha256:
            raise IntegrityError("Stored artifact is corrupted.", {"sha256": sha256})
        if pending is not None:
            yield pending

    def delete(self, sha256: str) -> bool:
        path = self.path_for(sha256)
        if path.exists():
            path.unlink()
            return True
        return False

    def iter_digests(self) -> Iterator[str]:
        for sub in self.blobs.iterdir():
            if sub.is_dir():
                for f in sub.iterdir():
                    yield f.name

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob with its size and age."""
        for digest in self.iter_digests():
            info = self.stat(digest) if valid_digest(digest) else None
            if info is not None:
                yield info

    def stale_uploads(self, older_than_seconds: float = TMP_GRACE_SECONDS) -> list[StaleUpload]:
        """Temp files of uploads nobody has written to for ``older_than_seconds``."""
        cutoff = time.time() - older_than_seconds
        out: list[StaleUpload] = []
        for entry in os.scandir(self.tmp_dir) if self.tmp_dir.exists() else []:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if entry.is_file(follow_symlinks=False) and st.st_mtime < cutoff:
                out.append(StaleUpload(entry.path, st.st_size))
        return out

    def remove_stale(self, item: StaleUpload) -> None:
        Path(item.key).unlink(missing_ok=True)

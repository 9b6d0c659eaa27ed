"""The S3 blob store's streaming pieces: the multipart writer every upload goes through
(``_S3Writer``) and the seekable ranged-GET reader behind ``open_blob`` (``_RangeReader``),
with the part size they use.

They are the store's internals, split from ``store_s3.py`` (which holds ``S3BlobStore``, the
only user) to keep each module readable; ``PART_SIZE`` is re-exported from there.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import uuid
from typing import TYPE_CHECKING, Any

from podstack.errors import IntegrityError
from podstack.server.artifacts.store import StoredBlob, check_size, valid_digest

if TYPE_CHECKING:
    # Type-only: store_s3.py imports this module, so a runtime import would be circular.
    from podstack.server.artifacts.store_s3 import S3BlobStore

log = logging.getLogger("podstack.server.artifacts")

# 8 MiB parts: S3's minimum is 5 MiB (except the last); 10,000 parts of 8 MiB reach 78 GiB,
# above the default 64 GiB artifact limit. Larger uploads grow the part size (see _part_size).
PART_SIZE = 8 * 1024 * 1024
_MAX_PARTS = 10_000


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _part_size(max_bytes: int | None) -> int:
    if not max_bytes:
        return PART_SIZE
    needed = -(-max_bytes // _MAX_PARTS)
    return max(PART_SIZE, -(-needed // (1024 * 1024)) * 1024 * 1024)


class _S3Writer:
    """One upload in progress: buffers a part, uploads it, hashes everything it is given."""

    def __init__(
        self, store: S3BlobStore, expected_sha256: str | None, max_bytes: int | None
    ) -> None:
        self.store = store
        self.expected = expected_sha256.lower() if expected_sha256 else None
        self.max_bytes = max_bytes
        self.part_size = _part_size(max_bytes)
        self.hasher = hashlib.sha256()
        self.size = 0
        self.buf = bytearray()
        self.upload_id: str | None = None
        self.key: str | None = None
        self.parts: list[dict[str, Any]] = []

    def feed(self, chunk: bytes) -> bool:
        """Takes ``chunk``; True when a full part is buffered and :meth:`flush` should run."""
        self.size += len(chunk)
        check_size(self.size, self.max_bytes)
        self.hasher.update(chunk)
        self.buf += chunk
        return len(self.buf) >= self.part_size

    def flush(self) -> None:
        while len(self.buf) >= self.part_size:
            part = bytes(self.buf[: self.part_size])
            del self.buf[: self.part_size]
            self._upload_part(part)

    def write(self, chunk: bytes) -> None:
        if self.feed(chunk):
            self.flush()

    def _upload_part(self, data: bytes) -> None:
        c, bucket = self.store.client, self.store.bucket
        if self.upload_id is None:
            # Straight to the final key when the digest is declared (and not already
            # stored); otherwise to a temp key, copied under its digest once known.
            if self.expected and valid_digest(self.expected):
                self.key = self.store.key_for(self.expected)
            else:
                self.key = self.store.location.key(f"tmp/upload-{uuid.uuid4().hex}")
            mpu = c.create_multipart_upload(
                Bucket=bucket,
                Key=self.key,
                ChecksumAlgorithm="SHA256",
                ContentType="application/octet-stream",
            )
            self.upload_id = mpu["UploadId"]
        number = len(self.parts) + 1
        checksum = _b64(hashlib.sha256(data).digest())
        r = c.upload_part(
            Bucket=bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
            ChecksumSHA256=checksum,
        )
        self.parts.append(
            {"PartNumber": number, "ETag": r["ETag"], "ChecksumSHA256": r.get("ChecksumSHA256")}
        )

    def commit(self) -> StoredBlob:
        digest = self.hasher.hexdigest()
        if self.expected and self.expected != digest:
            self.abort()
            raise IntegrityError(
                "Uploaded bytes do not match the declared sha256.",
                {"expected": self.expected, "actual": digest},
            )
        store = self.store
        final = store.key_for(digest)
        if self.upload_id is None:
            store._put_small(final, bytes(self.buf), digest)
            return StoredBlob(digest, self.size)
        if self.buf:
            self._upload_part(bytes(self.buf))
            self.buf.clear()
        parts = [{k: v for k, v in p.items() if v is not None} for p in self.parts]
        if self.key == final and store.exists(digest):
            self.abort()  # someone stored the same content meanwhile: dedup
            store.touch(digest)
            return StoredBlob(digest, self.size)
        store.client.complete_multipart_upload(
            Bucket=store.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
        )
        self.upload_id = None
        if self.key != final:
            tmp_key = self.key
            try:
                if store.exists(digest):
                    store.touch(digest)
                else:
                    store._copy_within(tmp_key, final)
            finally:
                store.client.delete_object(Bucket=store.bucket, Key=tmp_key)
        store._check_size(digest, self.size)
        return StoredBlob(digest, self.size)

    def abort(self) -> None:
        if self.upload_id is not None:
            try:
                self.store.client.abort_multipart_upload(
                    Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id
                )
            except Exception as exc:  # gc aborts what is left over; the caller's error wins
                log.warning("could not abort multipart upload %s: %s", self.key, exc)
            self.upload_id = None
        self.buf.clear()


class _RangeReader(io.RawIOBase):
    """A seekable, read-only view of one object, read with ranged GETs: format detection can
    open a multi-gigabyte model and read its zip directory without downloading it."""

    def __init__(self, client: Any, bucket: str, key: str, size: int) -> None:
        self._client, self._bucket, self._key, self._size = client, bucket, key, size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b: Any) -> int:
        if self._pos >= self._size or len(b) == 0:
            return 0
        end = min(self._size, self._pos + len(b)) - 1
        r = self._client.get_object(
            Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-{end}"
        )
        data = r["Body"].read()
        n = len(data)
        b[:n] = data
        self._pos += n
        return n

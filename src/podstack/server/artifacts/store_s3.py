"""Content-addressed blob store on S3-compatible object storage (AWS S3, MinIO, SeaweedFS,
Ceph RGW, R2), through boto3.

Same contract as the local store (store.py): a blob lives under its sha256,
``<prefix>/blobs/sha256/<ab>/<cd>/<digest>``, is written once and never overwritten, and is
only visible once complete and verified:

- small blobs (one part) are PUT straight to their key with ``ChecksumSHA256`` (the store
  recomputes it and refuses a mismatch) and ``If-None-Match: *`` (never overwrite);
- larger ones stream as a multipart upload, each part carrying its own SHA-256 checksum, to
  their final key when the caller declared the digest, else to ``<prefix>/tmp/`` and then
  server-side copied to their digest's key. A multipart upload is invisible until completed,
  and a digest mismatch aborts it, so a bad upload never appears under any blob key.

Memory is one part buffer per upload, whatever the size. Endpoint, credentials and region
come only from what boto3 reads itself (AWS_ENDPOINT_URL[_S3], AWS_ACCESS_KEY_ID, profiles...).
The multipart writer and the ranged reader are in store_s3_io.py.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from podstack.errors import IntegrityError, NotFound, ServiceUnavailable
from podstack.server import file_modes
from podstack.server.artifacts.location import S3Location
from podstack.server.artifacts.store import (
    CHUNK,
    TMP_GRACE_SECONDS,
    BlobInfo,
    StaleUpload,
    StoredBlob,
    valid_digest,
)

# Re-exported: callers and tests import the part size from here, with the store.
from podstack.server.artifacts.store_s3_io import PART_SIZE as PART_SIZE
from podstack.server.artifacts.store_s3_io import _b64, _RangeReader, _S3Writer

log = logging.getLogger("podstack.server.artifacts")


class StoreMisconfigured(ServiceUnavailable):
    """The object store cannot be used as configured (raised at start, never per request)."""


def make_client(*, max_pool: int = 32) -> Any:
    """A boto3 S3 client configured only from the standard AWS variables and files.

    Path-style addressing when an endpoint is configured (MinIO, SeaweedFS, Ceph: most
    self-hosted stores do not route bucket subdomains); AWS's own choice otherwise.
    """
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()

    def build(addressing: dict[str, Any]) -> Any:
        config = Config(
            s3=addressing,
            # SigV4 everywhere, presigned URLs included (boto3 would presign with SigV2,
            # which AWS no longer accepts in newer regions).
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": 4},
            max_pool_connections=max_pool,
            connect_timeout=10,
            read_timeout=60,
            # Only send/verify checksums where an operation asks for them: some S3-compatible
            # stores reject the CRC trailers newer boto3 adds to every upload by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return session.client("s3", config=config)

    client = build({})
    if "amazonaws.com" not in str(client.meta.endpoint_url):
        client = build({"addressing_style": "path"})
    return client


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or str(status or "")


def _is_missing(exc: Exception) -> bool:
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound")


@contextmanager
def _reachable(store: S3BlobStore) -> Iterator[None]:
    """Turns "the object store does not answer" (stopped, restarting, network cut) into a
    503, which clients retry (the SDK does, within PODSTACK_RETRY_SECONDS), instead of a 500."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        yield
    except (BotoConnectionError, HTTPClientError, ClientError) as exc:
        # A 5xx from the store (InternalError, SlowDown, ServiceUnavailable: one that is
        # starting or overloaded) is as transient as no answer; its 4xx are real answers.
        if isinstance(exc, ClientError) and _status(exc) < 500:
            raise
        log.warning("object store %s unreachable: %s", store.endpoint, exc)
        raise ServiceUnavailable(
            f"The artifact store ({store.uri}) is not reachable right now; retry shortly.",
            {"uri": store.uri},
        ) from exc


def _status(exc: Exception) -> int:
    meta = getattr(exc, "response", {}).get("ResponseMetadata", {})
    return int(meta.get("HTTPStatusCode") or 0)


class S3BlobStore:
    """The object-store twin of :class:`~podstack.server.artifacts.store.BlobStore`."""

    kind = "s3"

    def __init__(self, location: S3Location, *, client: Any = None, check: bool = True) -> None:
        self.location = location
        self.bucket = location.bucket
        self.prefix = location.prefix
        self.client = client if client is not None else make_client()
        self._blobs_prefix = location.key("blobs/sha256/")
        self._touch_prefix = location.key("touched/sha256/")
        self._tmp_prefix = location.key("tmp/")
        if check:
            self.check()

    def __repr__(self) -> str:
        return f"S3BlobStore({self.location.uri!r})"

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def check(self) -> None:
        """Fails with a clear message unless the bucket exists and these credentials can read
        and write it (one HEAD of the bucket; a server refuses to start otherwise)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        where = f"bucket {self.bucket!r} at {self.endpoint}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (NoCredentialsError, PartialCredentialsError):
            raise StoreMisconfigured(
                f"No S3 credentials for {self.uri}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE / an instance role).",
                {"uri": self.uri},
            ) from None
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                msg = f"The S3 {where} does not exist; create it first (aws s3 mb s3://{self.bucket})."
            elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                msg = (
                    f"Access to the S3 {where} was denied ({code}): check AWS_ACCESS_KEY_ID / "
                    "AWS_SECRET_ACCESS_KEY (or the profile) and the bucket policy."
                )
            else:
                msg = f"The S3 {where} answered {code}: {exc}"
            raise StoreMisconfigured(msg, {"uri": self.uri, "code": code}) from None
        except BotoCoreError as exc:
            raise StoreMisconfigured(
                f"Cannot reach the S3 endpoint for {self.uri} ({self.endpoint}): {exc}. Check "
                "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and that the store is running.",
                {"uri": self.uri},
            ) from None

    # ---------------------------------------------------------------- keys

    def key_for(self, sha256: str) -> str:
        if not valid_digest(sha256):
            raise NotFound("Unknown blob digest.", {"sha256": sha256})
        return f"{self._blobs_prefix}{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def _touch_key(self, sha256: str) -> str:
        return f"{self._touch_prefix}{sha256}"

    # ---------------------------------------------------------------- reading

    def stat(self, sha256: str) -> BlobInfo | None:
        try:
            with _reachable(self):
                h = self.client.head_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ServiceUnavailable:
            raise
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise
        return BlobInfo(sha256, int(h["ContentLength"]), h["LastModified"].timestamp())

    def exists(self, sha256: str) -> bool:
        return self.stat(sha256) is not None

    def iter_blob(self, sha256: str, *, verify: bool = True) -> Iterator[bytes]:
        """Streams a blob; with ``verify`` the last chunk is only released after the hash
        matched (as the local store does)."""
        key = self.key_for(sha256)
        try:
            with _reachable(self):
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ServiceUnavailable:
            raise
        except Exception as exc:
            if _is_missing(exc):
                raise NotFound(
                    "Artifact content is missing from the store.", {"sha256": sha256}
                ) from None
            raise
        h = hashlib.sha256()
        pending: bytes | None = None
        try:
            # A store that dies mid-stream fails the transfer (a 503 if nothing was sent
            # yet); clients resume with Range.
            with _reachable(self):
                for chunk in body.iter_chunks(CHUNK):
                    if not chunk:
                        continue
                    if pending is not None:
                        yield pending
                    if verify:
                        h.update(chunk)
                    pending = chunk
        finally:
            body.close()
        if verify and h.hexdigest() != sha256:
            raise IntegrityError("Stored artifact is corrupted.", {"sha256": sha256})
        if pending is not None:
            yield pending

    def open_blob(self, sha256: str) -> BinaryIO:
        """A seekable read-only file for the blob (ranged GETs; nothing downloaded upfront)."""
        info = self.stat(sha256)
        if info is None:
            raise FileNotFoundError(f"blob {sha256} is missing from {self.uri}")
        raw = _RangeReader(self.client, self.bucket, self.key_for(sha256), info.size)
        return io.BufferedReader(raw, buffer_size=256 * 1024)  # type: ignore[return-value]

    def materialize(self, sha256: str, dest: Path, *, link: bool = False) -> None:
        """Writes the blob to ``dest`` (owner-only), verified against its digest; nothing is
        left at ``dest`` if the copy fails. (``link`` is for the local store's hard links;
        bytes in a bucket are always copied down.)"""
        dest = Path(dest)
        file_modes.private_dirs(dest.parent)
        fd, name = tempfile.mkstemp(prefix=".part-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in self.iter_blob(sha256, verify=True):
                    fh.write(chunk)
            os.replace(name, dest)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    def presigned_get(self, sha256: str, filename: str, expires: int = 300) -> str:
        """A short-lived URL the browser downloads the blob from directly, as ``filename``."""
        from urllib.parse import quote

        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.key_for(sha256),
                    "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(filename)}",
                    "ResponseContentType": "application/octet-stream",
                },
                ExpiresIn=expires,
            )
        )

    # ---------------------------------------------------------------- writing

    def _put_small(self, key: str, data: bytes, digest: str) -> None:
        """One PUT; the store checks ``ChecksumSHA256`` and ``If-None-Match`` keeps an existing
        blob untouched (the same content is already there: dedup)."""
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ChecksumSHA256=_b64(bytes.fromhex(digest)),
                IfNoneMatch="*",
                ContentType="application/octet-stream",
            )
        except Exception as exc:
            code = _error_code(exc)
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                self.touch(digest)
                return
            if code in ("BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"):
                raise IntegrityError(
                    "The object store refused the upload: its SHA-256 checksum did not match.",
                    {"sha256": digest},
                ) from None
            raise

    def _copy_within(
        self, src_key: str, dest_key: str, metadata: dict[str, str] | None = None
    ) -> None:
        """Server-side copy (multipart copy above 5 GiB, done by boto3's managed copy)."""
        from boto3.s3.transfer import TransferConfig

        extra: dict[str, Any] = {"ContentType": "application/octet-stream"}
        if metadata:
            extra.update(Metadata=metadata, MetadataDirective="REPLACE")
        self.client.copy(
            {"Bucket": self.bucket, "Key": src_key},
            self.bucket,
            dest_key,
            ExtraArgs=extra,
            Config=TransferConfig(
                multipart_threshold=4 * 1024**3, multipart_chunksize=512 * 1024**2
            ),
        )

    def _check_size(self, sha256: str, size: int) -> None:
        info = self.stat(sha256)
        if info is None or info.size != size:
            raise IntegrityError(
                "The object store holds a different size than was uploaded.",
                {"sha256": sha256, "expected": size, "actual": None if info is None else info.size},
            )

    def last_used(self, sha256: str) -> float | None:
        """When the blob was written or last reused (None if absent): the newer of the
        object's date and its reuse marker's."""
        info = self.stat(sha256)
        if info is None:
            return None
        try:
            h = self.client.head_object(Bucket=self.bucket, Key=self._touch_key(sha256))
        except Exception as exc:
            if _is_missing(exc):
                return info.mtime
            raise
        return max(info.mtime, float(h["LastModified"].timestamp()))

    def touch(self, sha256: str) -> None:
        """Marks a blob as just used (a deduplicated upload): ``podstack gc`` keeps blobs
        touched within its grace period. Objects cannot be re-dated without rewriting them,
        and blobs are never rewritten, so a tiny marker object carries the date."""
        self.client.put_object(Bucket=self.bucket, Key=self._touch_key(sha256), Body=b"")

    def put_iter(
        self,
        chunks: Iterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredBlob:
        w = _S3Writer(self, expected_sha256, max_bytes)
        try:
            with _reachable(self):
                for chunk in chunks:
                    if chunk:
                        w.write(chunk)
                return w.commit()
        except BaseException:
            w.abort()
            raise

    async def put_async(
        self,
        chunks: AsyncIterator[bytes],
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredBlob:
        import anyio.to_thread

        w = _S3Writer(self, expected_sha256, max_bytes)
        try:
            with _reachable(self):
                async for chunk in chunks:
                    if chunk and w.feed(chunk):
                        await anyio.to_thread.run_sync(w.flush)
                return await anyio.to_thread.run_sync(w.commit)
        except BaseException:
            await anyio.to_thread.run_sync(w.abort)
            raise

    def put_file(
        self, path: Path, *, max_bytes: int | None = None, expected_sha256: str | None = None
    ) -> StoredBlob:
        with open(path, "rb") as fh:
            return self.put_iter(
                iter(lambda: fh.read(CHUNK), b""),
                max_bytes=max_bytes,
                expected_sha256=expected_sha256,
            )

    # ---------------------------------------------------------------- published versions

    def version_prefix(self, model: str, version: int) -> str:
        """Where a version's files are laid out by path for tools that read a folder
        (KServe's storage initializer): ``<prefix>/models/<model>/<version>/``."""
        return self.location.key(f"models/{model}/{version}/")

    def version_uri(self, model: str, version: int) -> str:
        return f"s3://{self.bucket}/{self.version_prefix(model, version)}"

    def publish_version(self, model: str, version: int, files: Iterable[tuple[str, str]]) -> str:
        """Copies a version's blobs, inside the bucket, to their paths under
        :meth:`version_prefix` (no byte passes through Podstack) and returns its s3:// URI.
        Each copy records its sha256 (object metadata), so a re-deploy copies nothing, while
        a copy left by an earlier model of the same name and version number (deleted and
        created again) is replaced, however alike its size."""
        base = self.version_prefix(model, version)
        for rel, sha in files:
            info = self.stat(sha)
            if info is None:
                raise NotFound(
                    f"File {rel!r} of {model} v{version} is missing from the store.",
                    {"sha256": sha, "path": rel},
                )
            dest = base + rel
            try:
                held = self.client.head_object(Bucket=self.bucket, Key=dest)
                if held.get("Metadata", {}).get("sha256") == sha:
                    continue
            except Exception as exc:
                if not _is_missing(exc):
                    raise
            self._copy_within(self.key_for(sha), dest, {"sha256": sha})
        return self.version_uri(model, version)

    def published_versions(self) -> dict[tuple[str, int], tuple[int, int]]:
        """Every version copy under ``models/``: (model, version) -> (objects, bytes)."""
        base = self.location.key("models/")
        out: dict[tuple[str, int], tuple[int, int]] = {}
        for o in self._list(base):
            model, _, rest = o["Key"][len(base) :].partition("/")
            version, _, rel = rest.partition("/")
            if not model or not version.isdigit() or not rel:
                continue  # not a copy this store wrote: left alone
            n, size = out.get((model, int(version)), (0, 0))
            out[(model, int(version))] = (n + 1, size + int(o["Size"]))
        return out

    def delete_published(self, model: str, version: int) -> None:
        """Removes a version's copy (its blobs stay: they are the store's, and gc's)."""
        keys = [o["Key"] for o in self._list(self.version_prefix(model, version))]
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    # ---------------------------------------------------------------- housekeeping

    def delete(self, sha256: str) -> bool:
        if not self.exists(sha256):
            return False
        self.client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))
        self.client.delete_object(Bucket=self.bucket, Key=self._touch_key(sha256))
        return True

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            yield from page.get("Contents", [])

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob with its size and age (the newer of its write and last touch)."""
        touched = {
            o["Key"].rsplit("/", 1)[-1]: o["LastModified"].timestamp()
            for o in self._list(self._touch_prefix)
        }
        for o in self._list(self._blobs_prefix):
            digest = o["Key"].rsplit("/", 1)[-1]
            if not valid_digest(digest):
                continue
            mtime = max(o["LastModified"].timestamp(), touched.get(digest, 0.0))
            yield BlobInfo(digest, int(o["Size"]), mtime)

    def iter_digests(self) -> Iterator[str]:
        for info in self.iter_blobs():
            yield info.sha256

    def stale_uploads(self, older_than_seconds: float = TMP_GRACE_SECONDS) -> list[StaleUpload]:
        """Leftovers of uploads nobody finished, older than the grace period: temp objects
        (a server died between completing and copying) and multipart uploads never completed
        or aborted (a server or a direct-upload client that went away)."""
        cutoff = time.time() - older_than_seconds
        out: list[StaleUpload] = []
        for o in self._list(self._tmp_prefix):
            if o["LastModified"].timestamp() < cutoff:
                out.append(StaleUpload(o["Key"], int(o["Size"]), None))
        for mpu in self._iter_multipart_uploads():
            initiated: datetime = mpu["Initiated"]
            if initiated.timestamp() < cutoff:
                out.append(StaleUpload(mpu["Key"], 0, mpu["UploadId"]))
        return out

    def _iter_multipart_uploads(self) -> Iterator[dict[str, Any]]:
        """This store's own multipart uploads (proxied uploads: under tmp/ or straight to a
        blob key). Direct uploads stage under uploads/ and are swept by their owner,
        transfers.service.abort_stale_uploads, which knows which ones are still live."""
        for prefix in (self._tmp_prefix, self._blobs_prefix):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                yield from page.get("Uploads", []) or []

    def remove_stale(self, item: StaleUpload) -> None:
        if item.upload_id:
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=item.key, UploadId=item.upload_id
                )
            except Exception as exc:
                if _error_code(exc) not in ("NoSuchUpload", "404"):
                    raise
        else:
            self.client.delete_object(Bucket=self.bucket, Key=item.key)

    def sweep_tmp(self, older_than_seconds: float = TMP_GRACE_SECONDS) -> int:
        stale = self.stale_uploads(older_than_seconds)
        for item in stale:
            self.remove_stale(item)
        return len(stale)

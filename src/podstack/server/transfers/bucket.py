"""What direct transfers do in the bucket (no database here): presign, multipart bookkeeping,
verification of an uploaded object, promotion to its content address.

Uploads land under ``<prefix>/uploads/<upload id>`` (the staging key), never under a digest
name: only after the server has confirmed the object's size and sha256 is it copied, inside
the bucket, to ``<prefix>/blobs/sha256/...``. So a blob under a digest name always holds that
digest's bytes, even with a store that ignores ``x-amz-checksum-sha256``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from podstack.schemas.transfers import MAX_PARTS

log = logging.getLogger("podstack.server.transfers")

CHUNK = 1024 * 1024
STAGING_DIR = "uploads"
# Above this, one CopyObject is not allowed (S3's limit); boto3's managed copy then copies in
# parts, still inside the bucket.
_COPY_PART = 256 * 1024 * 1024


def is_object_store(store: Any) -> bool:
    """The S3 store (server/artifacts/store_s3.py) exposes its boto3 client and bucket; the
    local filesystem store has neither and is always proxied."""
    return hasattr(store, "client") and hasattr(store, "bucket") and hasattr(store, "key_for")


def _signer(store: Any) -> Any:
    """A client that presigns with Signature Version 4. boto3 may presign S3 URLs with the
    legacy version 2, which signs neither ``Content-Length`` nor ``x-amz-checksum-sha256``
    (and does sign ``Content-Type``): a v2 URL would accept any bytes. Same endpoint,
    region, credentials chain and settings as the store's own client."""
    client = store.client
    # Built even when the store's client says "s3v4": its presigned URLs were seen to come
    # out as version 2 all the same.
    cached = getattr(store, "_podstack_presigner", None)
    if cached is None:
        import boto3
        from botocore.config import Config

        cached = boto3.session.Session().client(
            "s3",
            endpoint_url=client.meta.endpoint_url,
            region_name=client.meta.region_name,
            config=client.meta.config.merge(Config(signature_version="s3v4")),
        )
        store._podstack_presigner = cached
    return cached


def staging_key(store: Any, upload_id: str) -> str:
    prefix = str(getattr(store, "prefix", "") or "").strip("/")
    rest = f"{STAGING_DIR}/{upload_id}"
    return f"{prefix}/{rest}" if prefix else rest


def staging_prefix(store: Any) -> str:
    return staging_key(store, "")


def b64_sha256(hex_digest: str) -> str:
    """S3's spelling of a sha256 (``x-amz-checksum-sha256``): base64 of the raw digest."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _missing(exc: Exception) -> bool:
    return _code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


def part_layout(size: int, part_size: int) -> tuple[int, int]:
    """(part size, part count) for ``size`` bytes: the configured part size, grown when the
    file would need more than S3's 10,000 parts (whole MiB, so parts stay aligned)."""
    mib = 1024 * 1024
    needed = -(-size // MAX_PARTS)
    if needed > part_size:
        part_size = -(-needed // mib) * mib
    return part_size, max(1, -(-size // part_size))


def part_size_of(number: int, size: int, part_size: int) -> int:
    return min(part_size, size - (number - 1) * part_size)


# ---------------------------------------------------------------- blobs


def stored_size(store: Any, sha256: str) -> int | None:
    """Size of the stored blob ``sha256``, or None if the store does not hold it."""
    info = store.stat(sha256)
    return None if info is None else int(info.size)


def presign_get(store: Any, sha256: str, expires: int) -> str:
    return str(
        _signer(store).generate_presigned_url(
            "get_object",
            Params={"Bucket": store.bucket, "Key": store.key_for(sha256)},
            ExpiresIn=expires,
        )
    )


# ---------------------------------------------------------------- uploads


def presign_put(store: Any, key: str, sha256: str, size: int, expires: int) -> tuple[str, dict]:
    """A presigned PUT that only succeeds with exactly these bytes: the length and the
    checksum header are part of the signature, and the store verifies the checksum."""
    checksum = b64_sha256(sha256)
    url = _signer(store).generate_presigned_url(
        "put_object",
        Params={
            "Bucket": store.bucket,
            "Key": key,
            "ContentLength": size,
            "ChecksumSHA256": checksum,
        },
        ExpiresIn=expires,
    )
    return str(url), {"x-amz-checksum-sha256": checksum}


def start_multipart(store: Any, key: str) -> str:
    # SHA256 part checksums: the store verifies each part as it arrives.
    done = store.client.create_multipart_upload(
        Bucket=store.bucket, Key=key, ChecksumAlgorithm="SHA256"
    )
    return str(done["UploadId"])


def presign_part(
    store: Any, key: str, s3_upload_id: str, number: int, sha256: str, size: int, expires: int
) -> tuple[str, dict]:
    checksum = b64_sha256(sha256)
    url = _signer(store).generate_presigned_url(
        "upload_part",
        Params={
            "Bucket": store.bucket,
            "Key": key,
            "UploadId": s3_upload_id,
            "PartNumber": number,
            "ContentLength": size,
            "ChecksumSHA256": checksum,
        },
        ExpiresIn=expires,
    )
    return str(url), {"x-amz-checksum-sha256": checksum}


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str
    checksum: str | None  # base64 sha256, when the store reports it


def list_parts(store: Any, key: str, s3_upload_id: str) -> list[Part] | None:
    """The parts in the bucket, by number; None if the multipart upload no longer exists."""
    parts: list[Part] = []
    marker = 0
    try:
        while True:
            page = store.client.list_parts(
                Bucket=store.bucket, Key=key, UploadId=s3_upload_id, PartNumberMarker=marker
            )
            for p in page.get("Parts", []):
                parts.append(
                    Part(p["PartNumber"], int(p["Size"]), p["ETag"], p.get("ChecksumSHA256"))
                )
            if not page.get("IsTruncated"):
                break
            marker = int(page["NextPartNumberMarker"])
    except Exception as exc:
        if _missing(exc):
            return None
        raise
    return sorted(parts, key=lambda p: p.number)


def complete_multipart(
    store: Any, key: str, s3_upload_id: str, parts: list[Part], client_sums: dict[int, str]
) -> str | None:
    """Assembles the parts; returns None, or the store's reason for refusing."""
    listed = []
    for p in parts:
        entry: dict[str, Any] = {"PartNumber": p.number, "ETag": p.etag}
        checksum = p.checksum or client_sums.get(p.number)
        if checksum:
            entry["ChecksumSHA256"] = checksum
        listed.append(entry)
    try:
        store.client.complete_multipart_upload(
            Bucket=store.bucket,
            Key=key,
            UploadId=s3_upload_id,
            MultipartUpload={"Parts": listed},
        )
    except Exception as exc:
        code = _code(exc)
        if code in ("InvalidPart", "InvalidPartOrder", "BadDigest", "InvalidRequest"):
            return f"{code}: {exc}"
        raise
    return None


def abort_multipart(store: Any, key: str, s3_upload_id: str) -> None:
    try:
        store.client.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=s3_upload_id)
    except Exception as exc:
        if not _missing(exc):
            raise


def staged_size(store: Any, key: str) -> int | None:
    try:
        return int(store.client.head_object(Bucket=store.bucket, Key=key)["ContentLength"])
    except Exception as exc:
        if _missing(exc):
            return None
        raise


@dataclass(frozen=True)
class Check:
    """What the bucket holds at a staging key: size, sha256 and how the sha256 was known."""

    size: int
    sha256: str
    how: str  # "store checksum" | "server hash"


def check_staged(store: Any, key: str) -> Check | None:
    """Size and sha256 of the staged object (None if there is none). The sha256 comes from
    the store's own full-object checksum when it has one (it verified the bytes on arrival);
    a multipart object only has a checksum of its parts' checksums, so it is read back and
    hashed here: bytes from the bucket to the server, never from the client."""
    try:
        head = store.client.head_object(Bucket=store.bucket, Key=key, ChecksumMode="ENABLED")
    except Exception as exc:
        if _missing(exc):
            return None
        raise
    size = int(head["ContentLength"])
    checksum = head.get("ChecksumSHA256")
    kind = head.get("ChecksumType")
    if checksum and "-" not in checksum and kind in (None, "FULL_OBJECT"):
        return Check(size, base64.b64decode(checksum).hex(), "store checksum")
    h = hashlib.sha256()
    body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"]
    try:
        while chunk := body.read(CHUNK):
            h.update(chunk)
    finally:
        body.close()
    return Check(size, h.hexdigest(), "server hash")


def promote(store: Any, key: str, sha256: str) -> None:
    """Copies the verified staged object to its content address (inside the bucket; written
    once: an existing blob of the same digest already holds these bytes) and drops the
    staging copy."""
    final = store.key_for(sha256)
    if stored_size(store, sha256) is not None:
        store.touch(sha256)  # reused: gc's grace period starts again
    else:
        from boto3.s3.transfer import TransferConfig

        try:
            store.client.copy(
                {"Bucket": store.bucket, "Key": key},
                store.bucket,
                final,
                Config=TransferConfig(
                    multipart_threshold=_COPY_PART, multipart_chunksize=_COPY_PART
                ),
            )
        except Exception as exc:
            if _missing(exc) or _code(exc) not in ("InternalError", "500", "NotImplemented"):
                raise
            # Some stores fail server-side copies of certain objects (SeaweedFS 4.x, after a
            # part of the multipart upload was sent twice). The bytes then pass through this
            # server once more, verified again by the store's own writer.
            log.warning("server-side copy of %s failed (%s); copying through the server", key, exc)
            _copy_through(store, key, sha256)
    drop_staged(store, key)


def _copy_through(store: Any, key: str, sha256: str) -> None:
    body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"]
    try:
        store.put_iter(iter(lambda: body.read(CHUNK), b""), expected_sha256=sha256)
    finally:
        body.close()


def drop_staged(store: Any, key: str) -> None:
    try:
        store.client.delete_object(Bucket=store.bucket, Key=key)
    except Exception as exc:
        if not _missing(exc):
            raise


# ---------------------------------------------------------------- sweeping


def staged_multiparts(store: Any) -> list[tuple[str, str, datetime]]:
    """(key, S3 upload id, initiated) of every multipart upload under the staging prefix."""
    out: list[tuple[str, str, datetime]] = []
    kwargs: dict[str, Any] = {"Bucket": store.bucket, "Prefix": staging_prefix(store)}
    while True:
        page = store.client.list_multipart_uploads(**kwargs)
        for u in page.get("Uploads", []) or []:
            out.append((u["Key"], u["UploadId"], u["Initiated"]))
        if not page.get("IsTruncated"):
            return out
        kwargs["KeyMarker"] = page.get("NextKeyMarker")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")


def staged_objects(store: Any) -> list[tuple[str, datetime]]:
    """(key, last modified) of every object under the staging prefix."""
    out: list[tuple[str, datetime]] = []
    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=staging_prefix(store)
    )
    for page in pages:
        out.extend((o["Key"], o["LastModified"]) for o in page.get("Contents", []) or [])
    return out


def upload_id_of(store: Any, key: str) -> str:
    return key[len(staging_prefix(store)) :].split("/", 1)[0]

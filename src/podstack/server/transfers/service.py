"""Direct transfers: every rule about upload and download grants, once.

An upload asks for a grant for (run, path, sha256, size). The answer, in this order:

1. ``exists``: the store already holds a blob with this sha256 and size, so it is recorded at
   the path at once and no byte moves (dedup);
2. ``proxy``: the store is the local filesystem, proxy mode is on (``PODSTACK_ARTIFACTS_PROXY``)
   or the client asked for it: use ``PUT /runs/{id}/artifacts/{path}`` as before;
3. ``single`` (one presigned PUT) or, above ``artifacts_multipart_threshold_bytes``,
   ``multipart`` (presigned parts). The bytes land under a staging key; ``complete`` checks
   size and sha256 before the blob gets its content address and the artifact is recorded.
   A mismatch deletes the staged object and records nothing.

The same checks as ``PUT /runs/{id}/artifacts/{path}`` apply (artifacts.service.check_upload:
path syntax, run active, no file/directory clash), at the grant and again at completion.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import (
    ChecksumMismatch,
    Conflict,
    NotFound,
    PayloadTooLarge,
    PodstackError,
    ValidationFailed,
)
from podstack.schemas import transfers as sch
from podstack.schemas.artifacts import ArtifactFile
from podstack.server.artifacts import service as artifacts
from podstack.server.artifacts.store import StoredBlob
from podstack.server.audit import service as audit
from podstack.server.config import Settings
from podstack.server.db.base import utcnow
from podstack.server.registry import service as registry
from podstack.server.transfers import bucket
from podstack.server.transfers import repository as repo
from podstack.server.transfers.models import ArtifactUpload

log = logging.getLogger("podstack.server.transfers")

# An upload nobody completed for this long is abandoned: not resumed, and aborted (with its
# parts in the bucket) by ``abort_stale_uploads``, which ``podstack gc`` calls.
UPLOAD_GRACE_SECONDS = 24 * 3600


def _expiry(settings: Settings) -> datetime:
    return utcnow() + timedelta(seconds=settings.artifacts_presign_seconds)


def _proxy_reason(store: Any, settings: Settings, asked: bool) -> str | None:
    if not bucket.is_object_store(store):
        return "The artifact store is a local directory: the server streams the bytes."
    if settings.artifacts_proxy:
        return "Proxy mode is on (PODSTACK_ARTIFACTS_PROXY=true): the server streams the bytes."
    if asked:
        return "The client asked for the proxied route."
    return None


# ---------------------------------------------------------------- upload grants


def request_upload(
    s: Session,
    actor: str,
    store: Any,
    settings: Settings,
    run_id: str,
    body: sch.UploadGrantIn,
) -> sch.UploadGrant:
    """The grant for uploading ``body.path`` of the run (see the module docstring)."""
    if body.size > settings.max_artifact_bytes:
        raise PayloadTooLarge(
            f"{body.path!r} is {body.size} bytes; artifacts are limited to "
            f"{settings.max_artifact_bytes} bytes (PODSTACK_MAX_ARTIFACT_BYTES).",
            {"size": body.size, "limit_bytes": settings.max_artifact_bytes},
        )
    artifacts.check_upload(s, run_id, body.path)
    held = bucket.stored_size(store, body.sha256)
    if held is not None:
        if held != body.size:
            raise ValidationFailed(
                f"The store holds content with sha256 {body.sha256} of {held} bytes, but the "
                f"upload of {body.path!r} declares {body.size}. Hash and measure the file "
                "again (it may have changed) and retry.",
                {"sha256": body.sha256, "declared_size": body.size, "stored_size": held},
            )
        # Refreshes its age, as a deduplicated write does: `podstack gc` only reclaims
        # unreferenced blobs past a grace period.
        store.touch(body.sha256)
        recorded = artifacts.record_upload(
            s, actor, run_id, body.path, StoredBlob(body.sha256, body.size)
        )
        return sch.UploadGrant(
            mode="exists",
            reason="The store already holds this content; it was recorded without a transfer.",
            artifact=recorded,
        )
    reason = _proxy_reason(store, settings, body.proxy)
    if reason is not None:
        return sch.UploadGrant(mode="proxy", reason=reason)
    mode = "multipart" if body.size > settings.artifacts_multipart_threshold_bytes else "single"
    row = repo.resumable(s, run_id, body.path, body.sha256, body.size, actor, mode)
    cutoff = utcnow() - timedelta(seconds=UPLOAD_GRACE_SECONDS)
    if row is None or row.created_at < cutoff:
        row = _start(s, actor, store, settings, run_id, body, mode)
    return _grant(store, settings, row)


def _start(
    s: Session,
    actor: str,
    store: Any,
    settings: Settings,
    run_id: str,
    body: sch.UploadGrantIn,
    mode: str,
) -> ArtifactUpload:
    upload_id = "upl-" + uuid.uuid4().hex
    key = bucket.staging_key(store, upload_id)
    part_size: int | None = None
    s3_upload_id: str | None = None
    if mode == "multipart":
        part_size, _ = bucket.part_layout(body.size, settings.artifacts_part_size_bytes)
        # If the transaction then fails, this multipart upload has no row: the sweep of
        # abort_stale_uploads finds it under the staging prefix and aborts it.
        s3_upload_id = bucket.start_multipart(store, key)
    row = repo.add(
        s,
        ArtifactUpload(
            id=upload_id,
            run_id=run_id,
            path=body.path,
            sha256=body.sha256,
            size=body.size,
            mode=mode,
            part_size=part_size,
            s3_upload_id=s3_upload_id,
            staging_key=key,
            created_by=actor,
            created_at=utcnow(),
        ),
    )
    audit.record(
        s,
        actor,
        "artifact.upload_start",
        "run",
        run_id,
        None,
        {"upload_id": upload_id, "path": body.path, "sha256": body.sha256, "size": body.size},
    )
    return row


def _grant(store: Any, settings: Settings, row: ArtifactUpload) -> sch.UploadGrant:
    expires = settings.artifacts_presign_seconds
    if row.mode == "single":
        url, headers = bucket.presign_put(store, row.staging_key, row.sha256, row.size, expires)
        return sch.UploadGrant(
            mode="single",
            upload_id=row.id,
            url=url,
            headers=headers,
            expires_at=_expiry(settings),
        )
    assert row.part_size is not None
    _, count = bucket.part_layout(row.size, row.part_size)
    return sch.UploadGrant(
        mode="multipart",
        upload_id=row.id,
        part_size=row.part_size,
        part_count=count,
        expires_at=_expiry(settings),
    )


def _own_upload(s: Session, actor: str, run_id: str, upload_id: str) -> ArtifactUpload:
    """The caller's upload ``upload_id`` into ``run_id`` (uploads are per user: another user,
    or a job token of another run, cannot see, complete or abort it)."""
    row = repo.get(s, upload_id)
    if row is None or row.run_id != run_id or row.created_by != actor:
        raise NotFound(
            f"No upload {upload_id!r} of yours is in progress for run {run_id} (it was "
            f"completed, aborted, or never started). Start one with POST "
            f"/api/v1/runs/{run_id}/uploads.",
            {"run_id": run_id, "upload_id": upload_id},
        )
    return row


def presign_parts(
    s: Session,
    actor: str,
    store: Any,
    settings: Settings,
    run_id: str,
    upload_id: str,
    body: sch.PartUrlsIn,
) -> sch.PartUrls:
    """Presigned URLs for parts of a multipart upload, each bound to its size and sha256."""
    row = _own_upload(s, actor, run_id, upload_id)
    if row.mode != "multipart" or row.part_size is None or row.s3_upload_id is None:
        raise Conflict(
            f"Upload {upload_id} is a single PUT, not a multipart upload; it has no parts.",
            {"upload_id": upload_id, "mode": row.mode},
        )
    _, count = bucket.part_layout(row.size, row.part_size)
    numbers = [p.number for p in body.parts]
    bad = sorted({n for n in numbers if n > count})
    if bad or len(set(numbers)) != len(numbers):
        raise ValidationFailed(
            f"Part numbers must be distinct and between 1 and {count} for upload "
            f"{upload_id} ({row.size} bytes in parts of {row.part_size})"
            + (f"; out of range: {bad[:10]}" if bad else "; some are repeated")
            + ".",
            {"part_count": count, "out_of_range": bad[:10]},
        )
    expires = settings.artifacts_presign_seconds
    out = []
    for p in body.parts:
        size = bucket.part_size_of(p.number, row.size, row.part_size)
        url, headers = bucket.presign_part(
            store, row.staging_key, row.s3_upload_id, p.number, p.sha256, size, expires
        )
        out.append(sch.PartUrl(number=p.number, size=size, url=url, headers=headers))
    return sch.PartUrls(parts=out, expires_at=_expiry(settings))


def upload_status(
    s: Session, actor: str, store: Any, run_id: str, upload_id: str
) -> sch.UploadStatus:
    """The upload and, for a multipart one, the parts already in the bucket (to resume)."""
    row = _own_upload(s, actor, run_id, upload_id)
    parts: list[sch.UploadedPart] = []
    count = None
    if row.mode == "multipart" and row.part_size is not None and row.s3_upload_id:
        _, count = bucket.part_layout(row.size, row.part_size)
        listed = bucket.list_parts(store, row.staging_key, row.s3_upload_id) or []
        parts = [sch.UploadedPart(number=p.number, size=p.size) for p in listed]
    return sch.UploadStatus(
        upload_id=row.id,
        run_id=row.run_id,
        path=row.path,
        sha256=row.sha256,
        size=row.size,
        mode=row.mode,  # type: ignore[arg-type]
        part_size=row.part_size,
        part_count=count,
        parts=parts,
        created_by=row.created_by,
        created_at=row.created_at,
    )


# ---------------------------------------------------------------- completion


@dataclass(frozen=True)
class PendingUpload:
    """An upload being completed, detached from the session: verification reads the bucket
    (and may hash gigabytes) outside any database transaction."""

    id: str
    run_id: str
    path: str
    sha256: str
    size: int
    mode: str
    part_size: int | None
    s3_upload_id: str | None
    staging_key: str


@dataclass
class Verdict:
    blob: StoredBlob | None = None
    refusal: PodstackError | None = None
    details: dict[str, Any] = field(default_factory=dict)


def prepare_complete(s: Session, actor: str, run_id: str, upload_id: str) -> PendingUpload:
    """Step 1 of ``complete`` (read-only): the upload is the caller's and its run still
    accepts artifacts."""
    row = _own_upload(s, actor, run_id, upload_id)
    artifacts.check_upload(s, run_id, row.path)
    return PendingUpload(
        row.id,
        row.run_id,
        row.path,
        row.sha256,
        row.size,
        row.mode,
        row.part_size,
        row.s3_upload_id,
        row.staging_key,
    )


def verify_upload(store: Any, up: PendingUpload, body: sch.CompleteIn) -> Verdict:
    """Step 2 (bucket only, no database): assemble the parts, confirm size and sha256 and
    give the blob its content address. Raises ``Conflict`` while bytes are still missing
    (nothing is changed: upload them and complete again). A mismatch deletes what was
    uploaded and returns a refusal for ``finish_upload``."""
    if up.mode == "multipart":
        refusal = _assemble(store, up, body)
        if refusal is not None:
            return refusal
    check = bucket.check_staged(store, up.staging_key)
    if check is None:
        raise Conflict(
            f"Nothing has been uploaded for {up.path!r} yet (upload {up.id}): PUT the file to "
            "the presigned URL of the grant, then complete. Ask for a new grant if it expired.",
            {"upload_id": up.id, "path": up.path},
        )
    if check.size != up.size or check.sha256 != up.sha256:
        bucket.drop_staged(store, up.staging_key)
        return Verdict(
            refusal=ChecksumMismatch(
                f"The uploaded bytes for {up.path!r} do not match what the upload declared "
                f"(declared {up.size} bytes with sha256 {up.sha256}; the bucket received "
                f"{check.size} bytes hashing to {check.sha256}). Nothing was recorded and the "
                "upload was discarded; the file may have changed while it was being sent. "
                "Retry the upload.",
                {
                    "path": up.path,
                    "expected": up.sha256,
                    "actual": check.sha256,
                    "expected_size": up.size,
                    "actual_size": check.size,
                },
            )
        )
    bucket.promote(store, up.staging_key, up.sha256)
    return Verdict(blob=StoredBlob(up.sha256, up.size), details={"verified_by": check.how})


def _assemble(store: Any, up: PendingUpload, body: sch.CompleteIn) -> Verdict | None:
    assert up.part_size is not None and up.s3_upload_id is not None
    parts = bucket.list_parts(store, up.staging_key, up.s3_upload_id)
    if parts is None:
        if bucket.staged_size(store, up.staging_key) is not None:
            return None  # assembled by an earlier attempt of this completion
        raise NotFound(
            f"The bucket no longer has multipart upload {up.id} (aborted or expired). "
            "Start the upload again.",
            {"upload_id": up.id},
        )
    _, count = bucket.part_layout(up.size, up.part_size)
    sizes = {p.number: p.size for p in parts}
    missing = [
        n
        for n in range(1, count + 1)
        if sizes.get(n) != bucket.part_size_of(n, up.size, up.part_size)
    ]
    if missing:
        raise Conflict(
            f"Upload {up.id} of {up.path!r} is missing {len(missing)} of {count} parts "
            f"(first: {missing[:10]}). Upload them (GET the upload to see which are there), "
            "then complete again.",
            {"upload_id": up.id, "missing_parts": missing[:100], "part_count": count},
        )
    extra = [p for p in parts if p.number > count]
    sums = {p.number: bucket.b64_sha256(p.sha256) for p in body.parts}
    reason = None
    if extra:
        reason = f"unexpected parts {[p.number for p in extra][:10]}"
    else:
        reason = bucket.complete_multipart(store, up.staging_key, up.s3_upload_id, parts, sums)
    if reason is None:
        return None
    bucket.abort_multipart(store, up.staging_key, up.s3_upload_id)
    return Verdict(
        refusal=ChecksumMismatch(
            f"The bucket refused to assemble the parts of {up.path!r} ({reason}). Nothing was "
            "recorded and the upload was discarded. Retry the upload.",
            {"upload_id": up.id, "path": up.path, "reason": reason[:500]},
        )
    )


def finish_upload(s: Session, actor: str, up: PendingUpload, blob: StoredBlob) -> ArtifactFile:
    """Step 3: record the verified artifact (the run's checks again, in this transaction) and
    forget the upload."""
    recorded = artifacts.record_upload(s, actor, up.run_id, up.path, blob)
    repo.remove(s, up.id)
    return recorded


def forget_refused(s: Session, actor: str, up: PendingUpload, refusal: PodstackError) -> None:
    """Step 3 of a refused upload: its bytes are already gone from the bucket; forget the
    upload and audit why. The caller commits this, then raises ``refusal``."""
    repo.remove(s, up.id)
    audit.record(
        s,
        actor,
        "artifact.upload_refused",
        "run",
        up.run_id,
        None,
        {"upload_id": up.id, "path": up.path, "reason": refusal.message[:500]},
    )


def abort_upload(s: Session, actor: str, store: Any, run_id: str, upload_id: str) -> None:
    """Discards the caller's upload: its parts or staged object in the bucket, and the row."""
    row = _own_upload(s, actor, run_id, upload_id)
    _discard(store, row)
    repo.remove(s, row.id)
    audit.record(
        s,
        actor,
        "artifact.upload_abort",
        "run",
        run_id,
        {"upload_id": row.id, "path": row.path, "sha256": row.sha256, "size": row.size},
        None,
    )


def _discard(store: Any, row: ArtifactUpload) -> None:
    if not bucket.is_object_store(store):
        return
    if row.s3_upload_id:
        bucket.abort_multipart(store, row.staging_key, row.s3_upload_id)
    bucket.drop_staged(store, row.staging_key)


@dataclass
class StaleReport:
    """What ``abort_stale_uploads`` removed (or, in a dry run, would remove)."""

    uploads: list[str] = field(default_factory=list)  # rows (and their bucket side)
    orphan_multiparts: list[str] = field(default_factory=list)  # bucket only, no row
    orphan_objects: list[str] = field(default_factory=list)  # staged objects, no row


def abort_stale_uploads(
    s: Session,
    store: Any,
    older_than_seconds: float = UPLOAD_GRACE_SECONDS,
    *,
    dry_run: bool = False,
    actor: str = "gc",
) -> StaleReport:
    """Aborts uploads started more than ``older_than_seconds`` ago and never completed:
    their rows, their multipart uploads and staged objects in the bucket; then anything
    under the staging prefix that older and without a row (a run deleted mid-upload, a
    transaction that failed after starting a multipart upload). ``podstack gc`` calls it;
    with ``dry_run`` nothing is removed. Safe while others upload: only old things go."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    report = StaleReport()
    for row in repo.older_than(s, cutoff):
        report.uploads.append(row.id)
        if not dry_run:
            _discard(store, row)
            repo.remove(s, row.id)
            audit.record(
                s,
                actor,
                "artifact.upload_abort",
                "run",
                row.run_id,
                {"upload_id": row.id, "path": row.path, "reason": "abandoned"},
                None,
            )
    if not bucket.is_object_store(store):
        return report
    multiparts = [
        (key, uid) for key, uid, started in bucket.staged_multiparts(store) if started < cutoff
    ]
    objects = [key for key, modified in bucket.staged_objects(store) if modified < cutoff]
    known = repo.known_ids(
        s,
        {bucket.upload_id_of(store, k) for k, _ in multiparts}
        | {bucket.upload_id_of(store, k) for k in objects},
    )
    for key, uid in multiparts:
        if bucket.upload_id_of(store, key) in known:
            continue
        report.orphan_multiparts.append(key)
        if not dry_run:
            bucket.abort_multipart(store, key, uid)
    for key in objects:
        if bucket.upload_id_of(store, key) in known:
            continue
        report.orphan_objects.append(key)
        if not dry_run:
            bucket.drop_staged(store, key)
    if report.uploads or report.orphan_multiparts or report.orphan_objects:
        log.info(
            "%s %d abandoned upload(s), %d orphan multipart upload(s), %d orphan staged object(s)",
            "would abort" if dry_run else "aborted",
            len(report.uploads),
            len(report.orphan_multiparts),
            len(report.orphan_objects),
        )
    return report


# ---------------------------------------------------------------- download grants


def _download_grant(
    store: Any, settings: Settings, sha256: str, size: int, proxy: bool
) -> sch.DownloadGrant:
    reason = _proxy_reason(store, settings, proxy)
    if reason is not None:
        return sch.DownloadGrant(mode="proxy", reason=reason, sha256=sha256, size=size)
    url = bucket.presign_get(store, sha256, settings.artifacts_presign_seconds)
    return sch.DownloadGrant(
        mode="direct", url=url, sha256=sha256, size=size, expires_at=_expiry(settings)
    )


def run_download_grant(
    s: Session, store: Any, settings: Settings, run_id: str, path: str, proxy: bool = False
) -> sch.DownloadGrant:
    """How to fetch file ``path`` of a run: a short-lived presigned GET, or the proxy."""
    row = artifacts.get_file(s, run_id, path)
    return _download_grant(store, settings, row.sha256, row.size, proxy)


def version_download_grant(
    s: Session,
    store: Any,
    settings: Settings,
    name: str,
    version: str,
    path: str,
    proxy: bool = False,
) -> sch.DownloadGrant:
    """How to fetch file ``path`` of a model version."""
    row = registry.version_file(s, name, version, path)
    return _download_grant(store, settings, row.sha256, row.size, proxy)

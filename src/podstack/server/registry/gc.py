"""Garbage collection of the content-addressed store (``podstack gc``).

A blob may be deleted only when nothing references it — no run artifact and no model version
snapshot — and it is older than a grace period. The grace period is what keeps an in-flight
upload safe: its blob is renamed into place (fresh mtime) before the database row that
references it commits, so a young unreferenced blob may simply be about to be referenced.
Abandoned upload temp files (a crashed server), multipart uploads never completed and direct
uploads never finished (transfers.service.abort_stale_uploads) older than the grace period go
too. The same rules hold for the local disk and an S3 bucket: only the store's methods are used.

Order matters: the store is listed *before* the references are read, so any reference
committed before the listing is seen; each candidate is re-checked just before deletion.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from podstack.schemas.registry import GcReport
from podstack.server.artifacts import service as artifacts
from podstack.server.artifacts.store import BlobInfo
from podstack.server.artifacts.store_factory import ArtifactStore
from podstack.server.artifacts.store_s3 import S3BlobStore
from podstack.server.db.session import Database
from podstack.server.registry import repository as repo

DEFAULT_GRACE_SECONDS = 24 * 3600


def referenced_digests(s: Session) -> set[str]:
    """Every digest something still needs: run artifacts and version snapshots."""
    return artifacts.referenced_digests(s) | repo.referenced_digests(s)


def collect(
    db: Database,
    store: ArtifactStore,
    *,
    delete: bool = False,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
    now: Callable[[], float] = time.time,
) -> GcReport:
    """Finds (and with ``delete`` removes) unreferenced blobs older than ``grace_seconds``,
    on the local disk or in the bucket alike (the store's own listing and ages: a file's
    mtime, an object's last write or reuse)."""
    listed: list[BlobInfo] = list(store.iter_blobs())
    with db.session(readonly=True) as s:
        refs = referenced_digests(s)
    cutoff = now() - grace_seconds
    unreferenced = [b for b in listed if b.sha256 not in refs]
    old = [b for b in unreferenced if b.mtime < cutoff]
    stale = store.stale_uploads(grace_seconds)
    # Direct (presigned) uploads are the transfers capability's: it knows which are live.
    from podstack.server.transfers import service as transfers

    with db.session() as s:
        direct = transfers.abort_stale_uploads(s, store, grace_seconds, dry_run=not delete)
    direct_count = len(direct.uploads) + len(direct.orphan_multiparts) + len(direct.orphan_objects)
    report = GcReport(
        deleted=delete,
        grace_seconds=grace_seconds,
        blobs_total=len(listed),
        referenced=len(listed) - len(unreferenced),
        reclaimable=len(old),
        reclaimable_bytes=sum(b.size for b in old),
        skipped_recent=len(unreferenced) - len(old),
        stale_uploads=len(stale) + direct_count,
        stale_upload_bytes=sum(u.size for u in stale),
        digests=sorted(b.sha256 for b in old),
    )
    _collect_version_copies(db, store, report, delete)
    if not delete:
        return report
    # Read the references again right before deleting: one may have committed since the
    # listing (e.g. an upload that deduplicated onto one of these very blobs, which also
    # refreshed its last use: checked again below).
    with db.session(readonly=True) as s:
        refs = referenced_digests(s)
    removed, removed_bytes = [], 0
    for blob in old:
        if blob.sha256 in refs:
            continue
        last_used = store.last_used(blob.sha256)
        if last_used is None or last_used >= cutoff:
            continue
        if store.delete(blob.sha256):
            removed.append(blob.sha256)
            removed_bytes += blob.size
    for item in stale:
        store.remove_stale(item)
    report.reclaimable = len(removed)
    report.reclaimable_bytes = removed_bytes
    report.digests = sorted(removed)
    return report


def _collect_version_copies(
    db: Database, store: ArtifactStore, report: GcReport, delete: bool
) -> None:
    """The object store's copies of versions for KServe (``publish_version``) whose version
    was deleted since: nothing serves from them any more (a deployed version cannot be
    deleted), and a version's copy is only ever made while the version exists."""
    if not isinstance(store, S3BlobStore):
        return  # the local store makes no copies
    published = store.published_versions()
    with db.session(readonly=True) as s:
        live = repo.existing_versions(s, sorted({m for m, _ in published}))
    orphans = {k: v for k, v in published.items() if k not in live}
    report.orphan_version_copies = len(orphans)
    report.orphan_version_copy_bytes = sum(size for _, size in orphans.values())
    if delete:
        for model, version in orphans:
            store.delete_published(model, version)

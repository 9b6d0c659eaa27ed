"""Garbage collection of the content-addressed store (``podstack gc``).

A blob may be deleted only when nothing references it — no run artifact and no model version
snapshot — and it is older than a grace period. The grace period is what keeps an in-flight
upload safe: its blob is renamed into place (fresh mtime) before the database row that
references it commits, so a young unreferenced blob may simply be about to be referenced.
Abandoned upload temp files (a crashed server) older than the grace period go too.

Order matters: the store is listed *before* the references are read, so any reference
committed before the listing is seen; each candidate is re-checked just before deletion.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from podstack.schemas.registry import GcReport
from podstack.server.artifacts import service as artifacts
from podstack.server.artifacts.store import BlobStore
from podstack.server.db.session import Database
from podstack.server.registry import repository as repo

DEFAULT_GRACE_SECONDS = 24 * 3600


def referenced_digests(s: Session) -> set[str]:
    """Every digest something still needs: run artifacts and version snapshots."""
    return artifacts.referenced_digests(s) | repo.referenced_digests(s)


def collect(
    db: Database,
    store: BlobStore,
    *,
    delete: bool = False,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
    now: Callable[[], float] = time.time,
) -> GcReport:
    """Finds (and with ``delete`` removes) unreferenced blobs older than ``grace_seconds``."""
    listed: list[tuple[str, Path, float, int]] = []
    for digest in store.iter_digests():
        path = store.path_for(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        listed.append((digest, path, st.st_mtime, st.st_size))
    with db.session(readonly=True) as s:
        refs = referenced_digests(s)
    cutoff = now() - grace_seconds
    unreferenced = [b for b in listed if b[0] not in refs]
    old = [b for b in unreferenced if b[2] < cutoff]
    stale_tmp = []
    for f in store.tmp_dir.iterdir() if store.tmp_dir.exists() else []:
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        if f.is_file() and st.st_mtime < cutoff:
            stale_tmp.append((f, st.st_size))
    report = GcReport(
        deleted=delete,
        grace_seconds=grace_seconds,
        blobs_total=len(listed),
        referenced=len(listed) - len(unreferenced),
        reclaimable=len(old),
        reclaimable_bytes=sum(b[3] for b in old),
        skipped_recent=len(unreferenced) - len(old),
        stale_uploads=len(stale_tmp),
        stale_upload_bytes=sum(n for _, n in stale_tmp),
        digests=sorted(b[0] for b in old),
    )
    if not delete:
        return report
    # Read the references again right before deleting: one may have committed since the
    # listing (e.g. an upload that deduplicated onto one of these very blobs).
    with db.session(readonly=True) as s:
        refs = referenced_digests(s)
    removed, removed_bytes = [], 0
    for digest, path, _, size in old:
        if digest in refs:
            continue
        try:
            if path.stat().st_mtime >= cutoff:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(digest)
        removed_bytes += size
    for f, _ in stale_tmp:
        f.unlink(missing_ok=True)
    report.reclaimable = len(removed)
    report.reclaimable_bytes = removed_bytes
    report.digests = sorted(removed)
    return report

"""Moving every blob of one store into another (``podstack artifacts migrate``): the local
disk into an S3 bucket, typically, while the server keeps serving from the disk.

Each blob is streamed from the source, verified against its digest as it is read, and written
to the target with that digest declared, so the target verifies it again (S3: its SHA-256
checksum, then the stored size). A blob the target already holds with the same size is
skipped: an interrupted migration simply runs again, and a last pass after the switch only
copies what was uploaded meanwhile. Nothing is deleted from the source.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from podstack.errors import IntegrityError, PodstackError
from podstack.server.artifacts.store import BlobInfo
from podstack.server.artifacts.store_factory import ArtifactStore

log = logging.getLogger("podstack.server.artifacts")
Progress = Callable[[str], None]


@dataclass
class MigrationReport:
    source: str
    target: str
    blobs: int = 0  # in the source
    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0  # already in the target
    failed: dict[str, str] = field(default_factory=dict)  # digest -> reason
    missing: list[str] = field(default_factory=list)  # referenced, in neither store

    @property
    def complete(self) -> bool:
        return not self.failed and not self.missing


def migrate_blobs(
    source: ArtifactStore,
    target: ArtifactStore,
    *,
    referenced: set[str] | None = None,
    jobs: int = 4,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copies every blob of ``source`` missing from ``target``; with ``referenced`` (the
    digests the database needs) also checks each of those ends up in the target."""
    if source.uri == target.uri:
        raise IntegrityError(
            f"The source and target are the same store ({source.uri}); give another --to.",
            {"uri": source.uri},
        )
    report = MigrationReport(source.uri, target.uri)
    blobs = list(source.iter_blobs())
    report.blobs = len(blobs)

    def one(blob: BlobInfo) -> tuple[BlobInfo, str | None]:
        held = target.stat(blob.sha256)
        if held is not None and held.size == blob.size:
            return blob, "skip"
        try:
            stored = target.put_iter(
                source.iter_blob(blob.sha256, verify=True), expected_sha256=blob.sha256
            )
        except PodstackError as exc:
            return blob, f"error: {exc.message}"
        if stored.size != blob.size:
            return blob, f"error: {stored.size} bytes stored instead of {blob.size}"
        return blob, None

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for blob, outcome in pool.map(one, blobs):
            done += 1
            if outcome == "skip":
                report.skipped += 1
            elif outcome is None:
                report.copied += 1
                report.copied_bytes += blob.size
            else:
                report.failed[blob.sha256] = outcome.removeprefix("error: ")
                log.error("could not migrate blob %s: %s", blob.sha256, outcome)
            if progress and (done % 100 == 0 or done == len(blobs)):
                progress(f"{done}/{len(blobs)} blobs checked, {report.copied} copied")
    for digest in sorted(referenced or ()):
        if digest not in report.failed and not target.exists(digest):
            report.missing.append(digest)
    return report

"""Direct uploads to the object store that are still in progress.

A row exists from the moment the server hands out an upload grant until the upload is
completed (the artifact is recorded and the staged object promoted to its content address) or
aborted. It is what lets a client resume a multipart upload after a crash, and what the
garbage collector uses to abort uploads nobody finished (``service.abort_stale_uploads``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from podstack.server.db.base import Base, UTCDateTime, utcnow


class ArtifactUpload(Base):
    __tablename__ = "artifact_uploads"
    # Resuming looks an upload up by what the client is sending, to where.
    __table_args__ = (Index("ix_artifact_uploads_target", "run_id", "path", "sha256"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # Uploads only ever target a run: a model version is an immutable snapshot of a run's
    # artifacts, so its files arrive through the run. Deleting the run drops the row; the
    # S3 side of such an orphan is swept by abort_stale_uploads.
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    # "single" (one presigned PUT) or "multipart" (presigned parts of part_size bytes).
    mode: Mapped[str] = mapped_column(String(16))
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    # The bucket's multipart upload id (multipart only).
    s3_upload_id: Mapped[str | None] = mapped_column(Text)
    # Where the bytes land before verification; promoted to the blob's content address only
    # after size and sha256 are confirmed, so an unverified object never has a digest name.
    staging_key: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

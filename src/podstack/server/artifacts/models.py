"""Which content-addressed blob each logged artifact file points to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from podstack.server.db.base import Base, UTCDateTime, utcnow


class ArtifactFile(Base):
    __tablename__ = "artifact_files"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    # Relative POSIX path inside the run's artifact tree, validated by
    # podstack.schemas.artifact_paths.
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

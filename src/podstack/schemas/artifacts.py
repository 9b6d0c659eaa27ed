"""Wire schemas for run artifacts."""

from __future__ import annotations

from pydantic import Field

from podstack.schemas.common import Schema


class ArtifactFile(Schema):
    """One stored file: where it is in the run's tree and what its bytes are."""

    path: str = Field(description="Relative POSIX path inside the run's artifact tree.")
    size: int = Field(description="Size in bytes.")
    sha256: str = Field(description="Hex sha256 of the content (also its blob address).")


# What the registry snapshots into a model version: the same three facts per file.
ManifestEntry = ArtifactFile


class ArtifactEntry(Schema):
    """A listing row: a file, or (non-recursive listings) a directory collapsed to one row."""

    path: str
    is_dir: bool = False
    size: int | None = Field(default=None, description="Bytes; null for directories.")
    sha256: str | None = Field(default=None, description="Null for directories.")

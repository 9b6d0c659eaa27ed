"""Wire schemas for direct transfers: upload and download grants for the object store.

The SDK asks for a grant before moving a file. ``mode`` says how the bytes move:

- ``exists``: the store already holds this content (same sha256 and size); it was recorded at
  the requested path at once and no byte moves (uploads only);
- ``proxy``: use the server's own streamed routes (local store, proxy mode, or asked for);
- ``single``: one presigned PUT to the bucket, then ``complete``;
- ``multipart``: presigned parts (``parts`` asks for their URLs), then ``complete``;
- ``direct``: a presigned GET from the bucket (downloads).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from podstack.schemas.artifacts import ArtifactFile
from podstack.schemas.common import Input, Schema

Sha256Hex = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-fA-F]{64}$", to_lower=True),
    Field(description="Hex sha256 (64 hexadecimal characters)."),
]
UploadMode = Literal["exists", "proxy", "single", "multipart"]
# S3 allows at most 10,000 parts per upload.
MAX_PARTS = 10_000


class UploadGrantIn(Input):
    path: str = Field(description="Destination path in the run's artifact tree.")
    sha256: Sha256Hex
    size: int = Field(ge=0, description="Size of the file in bytes.")
    proxy: bool = Field(
        default=False,
        description="Ask for the proxied route even if the store allows direct uploads "
        "(for clients that cannot reach the bucket).",
    )


class UploadGrant(Schema):
    mode: UploadMode
    reason: str | None = Field(default=None, description="Why this mode (proxy, exists).")
    upload_id: str | None = None
    # single: the presigned PUT and the headers it must carry (they are part of the signature)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # multipart
    part_size: int | None = None
    part_count: int | None = None
    expires_at: datetime | None = None
    # exists: what was recorded
    artifact: ArtifactFile | None = None


class PartIn(Input):
    number: int = Field(ge=1, le=MAX_PARTS, description="Part number, from 1.")
    sha256: Sha256Hex


class PartUrlsIn(Input):
    parts: list[PartIn] = Field(min_length=1, max_length=1000)


class PartUrl(Schema):
    number: int
    size: int
    url: str
    headers: dict[str, str]


class PartUrls(Schema):
    parts: list[PartUrl]
    expires_at: datetime


class UploadedPart(Schema):
    number: int
    size: int


class UploadStatus(Schema):
    upload_id: str
    run_id: str
    path: str
    sha256: str
    size: int
    mode: Literal["single", "multipart"]
    part_size: int | None = None
    part_count: int | None = None
    parts: list[UploadedPart] = Field(
        default_factory=list, description="Parts already in the bucket (multipart): resume."
    )
    created_by: str
    created_at: datetime


class CompleteIn(Input):
    # Multipart: every part's sha256, which S3 wants again to assemble the object (the server
    # still verifies the whole object's sha256 before recording anything).
    parts: list[PartIn] = Field(default_factory=list, max_length=MAX_PARTS)


class DownloadGrant(Schema):
    mode: Literal["direct", "proxy"]
    reason: str | None = None
    url: str | None = None
    sha256: str
    size: int
    expires_at: datetime | None = None

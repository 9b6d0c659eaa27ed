"""Opens the artifact store ``PODSTACK_ARTIFACTS_URI`` names: the local-disk store for a path,
the S3 store for ``s3://bucket/prefix``. Every process that touches blobs (the server, the
embedded SDK, ``podstack gc``/``backup``/``restore``) opens it here, so they agree."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from podstack.server.artifacts import location
from podstack.server.artifacts.store import BlobStore
from podstack.server.artifacts.store_s3 import S3BlobStore, StoreMisconfigured

if TYPE_CHECKING:
    from podstack.server.config import Settings

# Either store: both offer the same public methods (exists, stat, put_iter, put_async,
# put_file, iter_blob, open_blob, materialize, touch, delete, iter_blobs, stale_uploads...).
ArtifactStore: TypeAlias = BlobStore | S3BlobStore

__all__ = ["ArtifactStore", "StoreMisconfigured", "open_store", "open_uri"]


def open_uri(uri: str, *, check: bool = True) -> ArtifactStore:
    """The store at ``uri``. For S3, ``check`` verifies at once that the bucket exists and
    the credentials work (``StoreMisconfigured`` with a clear message otherwise)."""
    where = location.parse(uri)
    if isinstance(where, location.S3Location):
        return S3BlobStore(where, check=check)
    return BlobStore(where)


def open_store(settings: Settings, *, check: bool = True) -> ArtifactStore:
    return open_uri(settings.artifacts_uri, check=check)

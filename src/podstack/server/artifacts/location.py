"""Where artifacts live, from ``PODSTACK_ARTIFACTS_URI``: the one rule deciding which URIs a
server can serve. A local path (or ``file://``) is the filesystem store; ``s3://bucket/prefix``
is an S3-compatible object store; anything else (``gs://``, a typo such as ``s3:/b``) is
refused with a message naming what is valid, so the server stops at start instead of writing
into a folder literally named ``gs:``.

Pure (no boto3 import): Settings validates the URI with it before anything is opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# S3 bucket naming rules (the common subset every S3-compatible store accepts).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._=+@,-]+$")
_EXAMPLES = (
    "Use a directory path (e.g. /var/lib/podstack/artifacts), a file:// URI, or "
    "s3://<bucket>/<prefix> for an S3-compatible object store (endpoint and credentials from "
    "the standard AWS variables: AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY, AWS_REGION or AWS_PROFILE); leave it unset for "
    "$PODSTACK_HOME/artifacts."
)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # without leading or trailing slash; may be empty

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, rest: str) -> str:
        """``rest`` under this location's prefix (S3 keys have no leading slash)."""
        return f"{self.prefix}/{rest}" if self.prefix else rest


def parse(uri: str) -> Path | S3Location:
    """The location ``uri`` names; ``ValueError`` with an actionable message if none."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", uri) and not re.match(r"^[A-Za-z]:[\\/]", uri):
            # "s3:/bucket" or "gs:/x": a URI with a slash missing, not a directory name.
            raise ValueError(f"PODSTACK_ARTIFACTS_URI={uri!r} is not a valid URI. {_EXAMPLES}")
        return Path(uri).expanduser()
    scheme = scheme.lower()
    if scheme == "file":
        return Path(rest).expanduser()
    if scheme == "s3":
        return _parse_s3(uri, rest)
    raise ValueError(
        f"PODSTACK_ARTIFACTS_URI={uri!r}: {scheme!r} storage is not supported. {_EXAMPLES}"
    )


def _parse_s3(uri: str, rest: str) -> S3Location:
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(
            f"PODSTACK_ARTIFACTS_URI={uri!r}: {bucket!r} is not a valid S3 bucket name "
            "(3-63 characters: lowercase letters, digits, dots and hyphens, starting and ending "
            "with a letter or digit), e.g. s3://my-models/podstack."
        )
    prefix = prefix.strip("/")
    if prefix:
        for segment in prefix.split("/"):
            if segment in (".", "..") or not _PREFIX_SEGMENT.match(segment):
                raise ValueError(
                    f"PODSTACK_ARTIFACTS_URI={uri!r}: the prefix {prefix!r} must be "
                    "slash-separated names of letters, digits and ._=+@,- (no empty, '.' or "
                    "'..' parts), e.g. s3://my-models/teams/vision."
                )
    return S3Location(bucket, prefix)

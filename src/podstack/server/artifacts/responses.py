"""The HTTP answer for one stored blob, shared by every download endpoint (run artifacts,
model version files): ETag / If-None-Match (304), the stored size check, streaming verified
against the sha256, and single-range requests (206) so the SDK can resume a cut download.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from fastapi import Response
from fastapi.responses import StreamingResponse

from podstack.errors import IntegrityError, PodstackError
from podstack.server.artifacts.store_factory import ArtifactStore

OCTET_STREAM = {
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
}
# The OpenAPI ``responses`` of a blob download endpoint.
DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: OCTET_STREAM,
    304: {"description": "Not modified (If-None-Match)"},
}

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d+)\s*-\s*(\d*)\s*$")


def _verified_chunks(
    store: ArtifactStore, sha256: str, what: str, log: logging.Logger
) -> Iterator[bytes]:
    try:
        yield from store.iter_blob(sha256, verify=True)
    except PodstackError as exc:
        # Headers are already sent, so the status cannot change: the connection is cut
        # before the last chunk and the client sees an incomplete body (its size/sha256
        # check then refuses the file), never a bad file.
        log.error("aborting download of %s: %s", what, exc)
        raise


def _slice(chunks: Iterator[bytes], start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start..end`` (inclusive) of ``chunks``. The whole blob is still read and
    verified: a damaged stored copy aborts a ranged download as it does a full one."""
    pos = 0
    for chunk in chunks:
        lo, hi = pos, pos + len(chunk)
        pos = hi
        if hi <= start or lo > end:
            continue
        yield chunk[max(0, start - lo) : min(len(chunk), end + 1 - lo)]


def stream_blob(
    chunks: Iterator[bytes], size: int, range_header: str | None, headers: dict[str, str]
) -> Response:
    """The (possibly ranged) streamed answer for a stored blob of ``size`` bytes. One range
    ``bytes=N-`` or ``bytes=N-M`` is served with 206 (the SDK resumes a cut download so); any
    other Range header is ignored (200, whole content), as RFC 9110 allows."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    m = _RANGE.match(range_header) if range_header else None
    if m is not None:
        start = int(m.group(1))
        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        if start >= size or end < start:
            if hasattr(chunks, "close"):
                chunks.close()
            return Response(
                status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
            )
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        return StreamingResponse(
            _slice(chunks, start, end),
            status_code=206,
            media_type="application/octet-stream",
            headers=headers,
        )
    headers["Content-Length"] = str(size)
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


def blob_download(
    store: ArtifactStore,
    sha256: str,
    size: int,
    path: str,
    conditional: tuple[str | None, str | None],
    log: logging.Logger,
    described: str,
    details: dict[str, Any],
) -> Response:
    """The answer to a GET of the stored file ``path`` (sha256, size as recorded), given the
    request's (If-None-Match, Range) headers.

    ``described`` names the file (``'a.txt' in run r1``) in the error for missing or damaged
    content, whose details are ``details``, and in the log line when a download is cut.
    """
    if_none_match, range_header = conditional
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "X-Content-SHA256": sha256}
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    info = store.stat(sha256)
    on_disk = None if info is None else info.size
    if on_disk != size:
        # Caught before any byte is sent, so this one can still be a proper error response.
        raise IntegrityError(
            f"The stored content of {described} is "
            + ("missing" if on_disk is None else f"damaged ({on_disk} bytes instead of {size})")
            + "; the artifact store was changed outside Podstack.",
            details,
        )
    name = path.rsplit("/", 1)[-1]
    headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
    chunks = _opened(_verified_chunks(store, sha256, described, log), described, details)
    return stream_blob(chunks, size, range_header, headers)


def _opened(chunks: Iterator[bytes], described: str, details: dict[str, Any]) -> Iterator[bytes]:
    """Reads the first chunk before the status line is sent: a store that cannot serve the
    blob right now (an object store restarting answers 5xx for a while) becomes a 503 the
    client retries, not a 200 cut at byte 0, which looks like a damaged copy; a small blob
    found damaged (read whole for its first chunk) becomes an error naming the file."""
    try:
        first = next(chunks)
    except StopIteration:
        return iter(())
    except IntegrityError as exc:
        raise IntegrityError(
            f"The stored content of {described} is damaged (its sha256 no longer matches); "
            "the artifact store was changed outside Podstack.",
            {**details, **(exc.details or {})},
        ) from None
    return itertools.chain([first], chunks)

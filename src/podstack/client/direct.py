"""Bytes straight to and from the bucket, with the presigned URLs of a server grant.

Used by ``transfer.py`` when the server answers a grant with ``single``, ``multipart`` or
``direct``. Rules:

- Requests to the bucket go through their own httpx client: no ``Authorization`` header, no
  Podstack token, no cookies. A presigned URL carries its own signature; the Podstack token
  must never reach the bucket (or whatever sits in front of it).
- Every PUT carries exactly the bytes the URL was signed for: its ``Content-Length`` and
  ``x-amz-checksum-sha256`` are part of the signature, and the store verifies the checksum,
  so a file edited mid-upload is refused (``BadDigest``) instead of stored.
- A multipart upload sends its parts from a small thread pool, each streamed from disk in
  1 MiB chunks (memory: workers x one chunk). A part that fails (connection, 5xx, 429) is
  retried within the client's retry time bound; a URL that expired is re-issued.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from podstack.client.base import RETRY_STATUSES, BaseClient, RetryPolicy, seg
from podstack.errors import IntegrityError, PodstackError, TransportError
from podstack.tls import default_ssl_context

CHUNK = 1024 * 1024
# Parts in flight at once: enough to fill a link to an S3 server, few enough for 2 cores.
PARALLEL_PARTS = 4
BUCKET_TIMEOUT = httpx.Timeout(60.0, connect=10.0, read=300.0)
HINT = (
    "If this machine cannot reach the object store, set PODSTACK_ARTIFACTS_PROXY=true to send "
    "the bytes through the Podstack server instead."
)

Advance = Callable[[int], None]
_lock = threading.Lock()


def bucket_http(client: BaseClient) -> httpx.Client:
    """The client's httpx client for presigned URLs (built once per SDK client, closed with
    it). Deliberately bare: no base URL, no auth header, no cookies, no redirects."""
    http = client.__dict__.get("_bucket_http")
    if http is None:
        with _lock:
            http = client.__dict__.get("_bucket_http")
            if http is None:
                http = httpx.Client(
                    headers={"User-Agent": "podstack-sdk"},
                    timeout=BUCKET_TIMEOUT,
                    follow_redirects=False,
                    verify=default_ssl_context(),
                )
                client.__dict__["_bucket_http"] = http
                weakref.finalize(client, http.close)
    return http


def _where(url: str) -> str:
    """The bucket URL without its query (the signature stays out of messages and logs)."""
    return url.split("?", 1)[0]


def _bucket_error(resp: httpx.Response) -> str:
    text = resp.text[:400] if resp.content else ""
    code = ""
    if "<Code>" in text:
        code = text.split("<Code>", 1)[1].split("</Code>", 1)[0]
    return code or f"HTTP {resp.status_code}"


def _range_body(path: Path, offset: int, length: int, advance: Advance) -> Iterator[bytes]:
    remaining = length
    with open(path, "rb") as fh:
        fh.seek(offset)
        while remaining > 0 and (chunk := fh.read(min(CHUNK, remaining))):
            remaining -= len(chunk)
            advance(len(chunk))
            yield chunk


def sha256_range(path: Path, offset: int, length: int) -> str:
    h = hashlib.sha256()
    for chunk in _range_body(path, offset, length, lambda _: None):
        h.update(chunk)
    return h.hexdigest()


def put(
    client: BaseClient,
    url_for: Callable[[bool], tuple[str, dict[str, str]]],
    path: Path,
    offset: int,
    length: int,
    advance: Advance,
    what: str,
) -> None:
    """PUTs ``length`` bytes of ``path`` from ``offset`` to the URL ``url_for(refresh)``
    gives, retrying transient failures within the client's time bound. ``advance`` is
    rolled back for a failed attempt, so progress bars stay truthful."""
    http = bucket_http(client)
    policy = RetryPolicy(client.retry_seconds, "PUT", f"(bucket) {what}")
    refresh = False
    renewed = 0
    while True:
        url, headers = url_for(refresh)
        refresh = False
        sent = 0

        def counted(n: int) -> None:
            nonlocal sent
            sent += n
            advance(n)

        reason: str
        try:
            resp = http.put(
                url,
                content=_range_body(path, offset, length, counted),
                headers={
                    **headers,
                    "Content-Length": str(length),
                    "Content-Type": "application/octet-stream",
                },
            )
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if resp.status_code in (200, 201, 204):
                return
            reason = _bucket_error(resp)
            if reason in ("BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"):
                raise IntegrityError(
                    f"The object store refused {what}: its bytes no longer match the sha256 "
                    "computed before the upload (the file changed while being sent). Nothing "
                    "was recorded; retry once the file is no longer being written.",
                    {"reason": reason},
                )
            expired = resp.status_code == 403 and renewed < 2
            if expired:
                # Most likely the URL expired (a long queue of parts, a slow link): ask the
                # server for a fresh one, a couple of times at most.
                advance(-sent)
                refresh = True
                renewed += 1
                continue
            if resp.status_code not in RETRY_STATUSES and resp.status_code < 500:
                advance(-sent)
                raise TransportError(
                    f"The object store refused {what} at {_where(url)} ({reason}). {HINT}",
                    {"status": resp.status_code, "reason": reason},
                )
        advance(-sent)
        delay = policy.next_delay(reason)
        if delay is None:
            raise TransportError(
                f"Could not send {what} to the object store at {_where(url)} ({reason}; "
                f"gave up {policy.gave_up()}). Run the same call again to resume: parts "
                f"already in the bucket are not sent again. {HINT}",
                {"reason": reason},
            )
        time.sleep(delay)


def upload_parts(
    client: BaseClient,
    upload_path: str,
    local: Path,
    size: int,
    part_size: int,
    part_count: int,
    present: dict[int, int],
    advance: Advance,
) -> list[dict[str, Any]]:
    """Uploads the parts not yet in the bucket (``present``: number -> size) in parallel and
    returns every part's ``{"number", "sha256"}`` for ``complete``."""
    sums: dict[int, str] = {}
    failed = threading.Event()

    def one(number: int) -> None:
        if failed.is_set():
            return
        offset = (number - 1) * part_size
        length = min(part_size, size - offset)
        digest = sha256_range(local, offset, length)
        sums[number] = digest
        if present.get(number) == length:
            advance(length)  # already in the bucket from an interrupted attempt
            return

        def url_for(_refresh: bool) -> tuple[str, dict[str, str]]:
            doc = client._request(
                "POST",
                upload_path + "/parts",
                json={"parts": [{"number": number, "sha256": digest}]},
            )
            part = doc["parts"][0]
            return part["url"], dict(part["headers"])

        put(client, url_for, local, offset, length, advance, f"part {number} of {local.name}")

    with ThreadPoolExecutor(max_workers=min(PARALLEL_PARTS, part_count)) as pool:
        futures = [pool.submit(one, n) for n in range(1, part_count + 1)]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for f in done:
            if f.exception() is not None:
                failed.set()  # the others stop taking new parts
                break
        wait(futures)
    for f in futures:
        exc = f.exception()
        if exc is not None:
            raise exc
    return [{"number": n, "sha256": sums[n]} for n in sorted(sums)]


@contextmanager
def open_get(
    client: BaseClient,
    url_for: Callable[[bool], str],
    headers: dict[str, str],
    what: str,
) -> Iterator[httpx.Response]:
    """A streamed GET of a presigned URL: opening it is retried like the SDK's own calls,
    and an expired URL is re-issued once. The body is the caller's (transfer.py resumes
    with a Range request after a cut)."""
    http = bucket_http(client)
    policy = RetryPolicy(client.retry_seconds, "GET", f"(bucket) {what}")
    refresh = False
    renewed = 0
    while True:
        url = url_for(refresh)
        refresh = False
        yielded = False
        try:
            with http.stream("GET", url, headers=headers) as resp:
                if resp.status_code in (200, 206):
                    yielded = True
                    yield resp
                    return
                resp.read()
                reason = _bucket_error(resp)
                if resp.status_code == 403 and renewed < 2:
                    refresh = True
                    renewed += 1
                    continue
                if resp.status_code == 404:
                    raise IntegrityError(
                        f"The object store has no copy of {what} although the server recorded "
                        "it (the blob was removed from the bucket behind Podstack's back). "
                        "Ask an administrator to run `podstack verify-backup` or restore it.",
                        {"reason": reason},
                    )
                if resp.status_code not in RETRY_STATUSES and resp.status_code < 500:
                    raise TransportError(
                        f"The object store refused the download of {what} from {_where(url)} "
                        f"({reason}). {HINT}",
                        {"status": resp.status_code, "reason": reason},
                    )
        except httpx.TransportError as exc:
            if yielded:
                raise
            reason = f"{type(exc).__name__}: {exc}"
        except PodstackError:
            raise
        delay = policy.next_delay(reason)
        if delay is None:
            raise TransportError(
                f"Could not download {what} from the object store at {_where(url)} ({reason}; "
                f"gave up {policy.gave_up()}). {HINT}",
                {"reason": reason},
            )
        time.sleep(delay)


def upload_api_path(run_id: str) -> str:
    return f"/runs/{seg(run_id)}/uploads"

"""The SDK's file transfer engine, shared by run artifacts and registry downloads.

- Uploads stream a file from disk in fixed-size chunks (constant memory) with its sha256 in
  ``X-Content-SHA256``: the file is hashed in a first pass, then sent, and the server refuses
  the bytes if they hash differently (end-to-end check; also catches a file edited mid-upload).
- Uploads are retried (the whole file again) after a dropped connection or a 502/503/504,
  with the client's ``Idempotency-Key``, so an upload the server already recorded is not
  recorded twice.
- Downloads stream to ``<name>.part`` beside the target while hashing, resume after a dropped
  connection with a ``Range`` request from the bytes already written, verify size and sha256,
  fsync, then rename atomically: an interrupted or corrupted download never leaves a file
  under its real name. A file already present with the expected digest is not downloaded
  again.
- Rich progress bars for transfers of at least ``PROGRESS_THRESHOLD`` bytes, only when
  ``progress_enabled()`` (stderr is a TTY and ``PODSTACK_PROGRESS`` is not 0).
- Direct transfers (``upload_artifact``, ``download_to(grant_path=...)``): the server is
  asked for a grant first. With an object store it answers with presigned bucket URLs and
  the bytes go straight to or from the bucket (see ``client/direct.py``); otherwise the
  server's own streamed routes are used as above. Identical content already stored is not
  sent at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from podstack.client import direct
from podstack.client.base import BaseClient, RetryPolicy, progress_enabled
from podstack.errors import IntegrityError, PodstackError, TransportError

CHUNK = 1024 * 1024
PROGRESS_THRESHOLD = 4 * 1024 * 1024
# The server answers an upload only after hashing, fsyncing and recording it, which for a
# multi-GB file on a slow disk can take longer than the SDK's usual 60 s read timeout.
UPLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0, read=900.0)

Advance = Callable[[int], None]


def _noop(_: int) -> None:
    return None


class TransferProgress:
    """One live Rich display for a batch of transfers; every call is a no-op when disabled,
    so callers never branch on whether a human is watching."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = progress_enabled() if enabled is None else enabled
        self._progress: Any = None

    def __enter__(self) -> TransferProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _display(self) -> Any:
        # Started on the first bar, so batches of small files never touch the terminal.
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.start()
        return self._progress

    def task(self, description: str, total: int) -> Advance:
        """A bar for ``total`` bytes (only if large enough to be worth one)."""
        if not self.enabled or total < PROGRESS_THRESHOLD:
            return _noop
        progress = self._display()
        task_id = progress.add_task(description, total=total)
        return lambda n: progress.advance(task_id, n)


ProgressArg = TransferProgress | bool | None


@contextlib.contextmanager
def _progress_scope(progress: ProgressArg) -> Iterator[TransferProgress]:
    """Uses the caller's display if given, else a private one (``False`` = none)."""
    if isinstance(progress, TransferProgress):
        yield progress
        return
    with TransferProgress(enabled=False if progress is False else None) as own:
        yield own


def sha256_file(path: str | Path, advance: Advance = _noop) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            advance(len(chunk))
    return h.hexdigest()


def _podstack_cause(exc: BaseException) -> PodstackError | None:
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, PodstackError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; directories cannot be opened this way on Windows.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def upload_file(
    client: BaseClient,
    api_path: str,
    local_file: str | Path,
    *,
    sha256: str | None = None,
    progress: ProgressArg = None,
    method: str = "PUT",
) -> Any:
    """Streams ``local_file`` as the raw body of ``method api_path`` (path without /api/v1)
    and returns the decoded JSON response. The server verifies ``X-Content-SHA256``."""
    local = Path(local_file)
    size = local.stat().st_size
    with _progress_scope(progress) as bars:
        if sha256 is None:
            sha256 = sha256_file(local, bars.task(f"Hashing {local.name}", size))
        advance = bars.task(f"Uploading {local.name}", size)

        def body() -> Iterator[bytes]:
            # Exactly Content-Length bytes, even if the file grows meanwhile (a file that
            # changed is then refused by the server's checksum check, with a clear error).
            remaining = size
            with open(local, "rb") as fh:
                while remaining > 0 and (chunk := fh.read(min(CHUNK, remaining))):
                    remaining -= len(chunk)
                    advance(len(chunk))
                    yield chunk

        headers = {
            "Content-Length": str(size),
            "X-Content-SHA256": sha256,
            "Content-Type": "application/octet-stream",
        }
        # A callable: each attempt of a retried upload sends the file again from its start.
        return client._request(
            method, api_path, content=body, headers=headers, timeout=UPLOAD_TIMEOUT
        )


def proxy_preferred() -> bool:
    """``PODSTACK_ARTIFACTS_PROXY=true`` in the client's environment: this machine cannot
    reach the bucket, so always ask for the server's streamed routes."""
    value = os.environ.get("PODSTACK_ARTIFACTS_PROXY", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def upload_artifact(
    client: BaseClient,
    run_id: str,
    path: str,
    local_file: str | Path,
    proxy_api_path: str,
    *,
    progress: ProgressArg = None,
) -> Any:
    """Uploads ``local_file`` as artifact ``path`` of the run and returns what was recorded
    (``{"path", "size", "sha256"}``). Asks the server for a grant first: content it already
    holds is recorded without sending a byte; with an object store the bytes go straight to
    the bucket (one presigned PUT, or parts in parallel above the server's threshold) and
    the server verifies them before recording; otherwise they stream to ``proxy_api_path``.
    An interrupted multipart upload resumes where it stopped when called again."""
    local = Path(local_file)
    size = local.stat().st_size
    with _progress_scope(progress) as bars:
        sha256 = sha256_file(local, bars.task(f"Hashing {local.name}", size))
        base = direct.upload_api_path(run_id)
        body = {"path": path, "sha256": sha256, "size": size, "proxy": proxy_preferred()}
        grant = client._request("POST", base, json=body)
        mode = grant["mode"]
        if mode == "exists":
            return grant["artifact"]
        if mode == "proxy":
            return upload_file(client, proxy_api_path, local, sha256=sha256, progress=bars)
        upload = f"{base}/{grant['upload_id']}"
        advance = bars.task(f"Uploading {local.name}", size)
        parts: list[dict[str, Any]] = []
        if mode == "single":
            first = (grant["url"], dict(grant["headers"]))

            def url_for(refresh: bool) -> tuple[str, dict[str, str]]:
                if not refresh:
                    return first
                # The same upload again: the server re-issues its URL.
                again = client._request("POST", base, json=body)
                return again["url"], dict(again["headers"])

            direct.put(client, url_for, local, 0, size, advance, local.name)
        else:
            status = client._request("GET", upload)
            present = {p["number"]: p["size"] for p in status["parts"]}
            parts = direct.upload_parts(
                client,
                upload,
                local,
                size,
                grant["part_size"],
                grant["part_count"],
                present,
                advance,
            )
        # The server verifies size and sha256 (for parts, by reading the object back from
        # the bucket, which takes a while for large files) before recording anything.
        return client._request(
            "POST", upload + "/complete", json={"parts": parts}, timeout=UPLOAD_TIMEOUT
        )


def _already_there(
    dest: Path, size: int | None, sha256: str | None, bars: TransferProgress
) -> bool:
    if sha256 is None or not dest.is_file():
        return False
    on_disk = dest.stat().st_size
    if size is not None and on_disk != size:
        return False
    return sha256_file(dest, bars.task(f"Checking {dest.name}", on_disk)) == sha256.lower()


Opener = Callable[[dict[str, str]], AbstractContextManager[httpx.Response]]


def download_to(
    client: BaseClient,
    api_path: str,
    dest_file: str | Path,
    expected_sha256: str | None = None,
    size: int | None = None,
    progress: ProgressArg = None,
    grant_path: str | None = None,
) -> Path:
    """Downloads ``GET api_path`` to ``dest_file`` and returns its path.

    ``expected_sha256``/``size`` (from a listing or manifest) enable skipping a file that is
    already present and detecting content that changed since it was listed; without them the
    response's ``X-Content-SHA256`` and ``Content-Length`` are checked. With ``grant_path``
    the server is asked first how to fetch the file: a presigned bucket URL (the bytes come
    straight from the bucket, verified the same way) or ``api_path``. Raises
    ``IntegrityError`` if the bytes do not match, ``TransportError`` if the transfer was cut
    short; in both cases ``dest_file`` is left as it was and no ``.part`` file remains.
    """
    dest = Path(dest_file)
    with _progress_scope(progress) as bars:
        if _already_there(dest, size, expected_sha256, bars):
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        try:
            opener = _opener(client, api_path, grant_path)
            if opener is not None:
                _stream_to(client, api_path, dest, part, expected_sha256, size, bars, opener)
            else:
                _stream_to(client, api_path, dest, part, expected_sha256, size, bars)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    _fsync_dir(dest.parent)
    return dest


def _opener(client: BaseClient, api_path: str, grant_path: str | None) -> Opener | None:
    """How to open the download: a presigned bucket URL when the server grants one (re-asked
    when it expires), else None (the server's own route)."""
    if grant_path is None:
        return None
    params = {"proxy": "true"} if proxy_preferred() else None
    grant = client._request("GET", grant_path, params=params)
    if grant["mode"] != "direct":
        return None
    current = [str(grant["url"])]

    def url_for(refresh: bool) -> str:
        if refresh:
            current[0] = str(client._request("GET", grant_path, params=params)["url"])
        return current[0]

    def open_(headers: dict[str, str]) -> AbstractContextManager[httpx.Response]:
        return direct.open_get(client, url_for, headers, api_path)

    return open_


def _stream_to(
    client: BaseClient,
    api_path: str,
    dest: Path,
    part: Path,
    expected_sha256: str | None,
    size: int | None,
    bars: TransferProgress,
    opener: Opener | None = None,
) -> None:
    """Streams into ``part``; a connection cut mid-body is resumed with a ``Range`` request
    from the bytes already written (a server that ignores the range sends the whole file
    again, and the part file starts over), within the client's retry time bound. The sha256
    is computed over every byte written, so resuming changes nothing in the check."""
    policy = RetryPolicy(client.retry_seconds, "GET", api_path)
    h = hashlib.sha256()
    received = 0
    expected: str | None = None
    advance: Advance | None = None
    stalled = 0
    with open(part, "wb") as fh:
        while True:
            at_cut = received
            headers = {"Range": f"bytes={received}-"} if received else {}
            try:
                stream = (
                    opener(headers)
                    if opener is not None
                    else client._stream("GET", api_path, headers=headers)
                )
                with stream as resp:
                    served = resp.headers.get("x-content-sha256")
                    if expected_sha256 and served and served.lower() != expected_sha256.lower():
                        raise IntegrityError(
                            f"{api_path} changed since it was listed (expected sha256 "
                            f"{expected_sha256}, the server now has {served}). List it again "
                            "and retry.",
                            {"expected": expected_sha256, "actual": served},
                        )
                    restart = resp.status_code != 206 or (
                        expected is not None and served is not None and served.lower() != expected
                    )
                    if received and restart:
                        # The range was not honoured (or the content changed): start over.
                        fh.seek(0)
                        fh.truncate()
                        h = hashlib.sha256()
                        received = at_cut = 0
                    if expected is None or restart:
                        expected = (expected_sha256 or served or "").lower() or None
                    length = resp.headers.get("content-length")
                    if size is None and length is not None and resp.status_code == 200:
                        size = int(length)
                    if advance is None:
                        advance = bars.task(f"Downloading {dest.name}", size or 0)
                    for chunk in resp.iter_bytes():
                        h.update(chunk)
                        fh.write(chunk)
                        received += len(chunk)
                        advance(len(chunk))
                break
            except PodstackError:
                raise
            except Exception as exc:
                # A server that finds its stored copy corrupted aborts the response before the
                # last chunk (the status was already sent), so this is where it shows: over
                # HTTP as a cut connection, in embedded mode as the app's own exception.
                cause = _podstack_cause(exc)
                if cause is not None:
                    raise cause from exc
                if not isinstance(exc, httpx.HTTPError):
                    raise
                # A cut that repeats where the last one was (a damaged stored copy) is not
                # worth resuming for the whole time bound.
                stalled = stalled + 1 if received == at_cut else 0
                delay = None
                if stalled < 3:
                    delay = policy.next_delay(f"download cut after {received} bytes: {exc}")
                if delay is None:
                    raise TransportError(
                        f"Download of {api_path} was cut short after {received} of "
                        f"{size if size is not None else '?'} bytes ({exc}). The connection "
                        "dropped or the server found its stored copy damaged (see the server "
                        f"log). Nothing was written to {dest}.",
                        {"received": received, "expected_size": size},
                    ) from exc
                time.sleep(delay)
        fh.flush()
        os.fsync(fh.fileno())
    if size is not None and received != size:
        raise IntegrityError(
            f"Download of {api_path} returned {received} bytes, expected {size}. Nothing was "
            f"written to {dest}.",
            {"received": received, "expected_size": size},
        )
    actual = h.hexdigest()
    if expected is not None and actual != expected:
        raise IntegrityError(
            f"Downloaded bytes of {api_path} hash to {actual}, expected {expected}. Nothing "
            f"was written to {dest}.",
            {"expected": expected, "actual": actual},
        )
    os.replace(part, dest)

"""Transport-level plumbing shared by every part of the SDK."""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import math
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx

from podstack.client import json_http
from podstack.client.json_http import JsonHttp
from podstack.errors import PodstackError, TransportError, error_from_payload
from podstack.tls import default_ssl_context

API = "/api/v1"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
log = logging.getLogger("podstack.client")

# Retries (a training script must survive a server restart or a second of 503s): connection
# failures and these statuses are retried with exponential backoff and jitter, honouring
# Retry-After, for at most PODSTACK_RETRY_SECONDS; other 4xx answers never are.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_RETRY_SECONDS = 60.0
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 8.0
# Every call that can change something carries a key, the same for all its attempts: the
# server applies it once and answers repeats with the first result.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENCY_HEADER = "Idempotency-Key"


def seg(value: object) -> str:
    """One URL path segment, percent-encoded (``/``, ``?``, ``#``, ``%`` included).

    ``.`` and ``..`` are encoded too: httpx (like any URL library) would otherwise resolve
    them away before sending, so ``delete_run("..")`` would address another route. Encoded,
    the server receives the value the caller gave and refuses or 404s it."""
    text = str(value)
    if text in (".", ".."):
        return text.replace(".", "%2E")
    return quote(text, safe="")


class PagedList(list):  # type: ignore[type-arg]
    """A page of results; ``next_page_token`` fetches the following page."""

    next_page_token: str | None = None


def wire_float(v: float) -> float | str:
    """A metric value for JSON, which has no NaN/Infinity: the server accepts these
    spellings and returns them back."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def retry_seconds_from_env() -> float:
    raw = os.environ.get("PODSTACK_RETRY_SECONDS", "").strip()
    if not raw:
        return DEFAULT_RETRY_SECONDS
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(
            f"PODSTACK_RETRY_SECONDS must be a number of seconds (0 disables retries), not {raw!r}."
        ) from exc
    return max(0.0, value)


def _retry_after(value: str | None) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RetryPolicy:
    """When and how long to wait before the next attempt of one logical call."""

    def __init__(self, budget: float, method: str, path: str) -> None:
        self.budget = budget
        self.method = method
        self.path = path
        self.started = time.monotonic()
        self.attempt = 0

    def next_delay(self, reason: str, retry_after: float | None = None) -> float | None:
        """The pause before the next attempt, or None when the time bound is spent."""
        self.attempt += 1
        remaining = self.budget - (time.monotonic() - self.started)
        if remaining <= 0:
            return None
        # Full jitter on an exponential ceiling: clients that lost the same server do not
        # come back in lockstep.
        ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.attempt - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            if retry_after > remaining:
                return None  # the server asks for longer than we may wait
            delay = max(delay, retry_after)
        delay = min(delay, remaining)
        log.warning(
            "%s %s failed (%s); retry %d in %.2fs",
            self.method,
            API + self.path,
            reason,
            self.attempt,
            delay,
        )
        return delay

    def gave_up(self) -> str:
        return f"after {self.attempt} attempts over {time.monotonic() - self.started:.1f}s"


def progress_enabled() -> bool:
    """Rich progress bars only for humans: a TTY, and not switched off."""
    if os.environ.get("PODSTACK_PROGRESS", "1").lower() in ("0", "false", "no", "off"):
        return False
    import sys

    return sys.stderr.isatty()


def _error(status: int, content: bytes) -> PodstackError:
    try:
        payload: Any = jsonlib.loads(content)
    except ValueError:
        payload = content.decode("utf-8", "replace")
    return error_from_payload(status, payload)


class _Connections:
    """The client's transports. The httpx client is built on first use: building one loads
    the CA bundle (~15 ms of CPU), which a client that only makes JSON calls over the light
    path never needs, and scripts that create a client per thread paid it per thread."""

    def __init__(self, make_http: Callable[[], httpx.Client], fast: JsonHttp | None) -> None:
        self._make_http = make_http
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()
        self.fast = fast

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            with self._lock:
                if self._http is None:
                    self._http = self._make_http()
        return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
            if self.fast is not None:
                self.fast.close()


class BaseClient:
    """Holds the httpx client (HTTP or embedded) and maps errors to podstack.errors."""

    def __init__(
        self,
        api_token: str | None = None,
        url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        retry_seconds: float | None = None,
    ) -> None:
        url = url if url is not None else os.environ.get("PODSTACK_URL") or None
        api_token = (
            api_token if api_token is not None else (os.environ.get("PODSTACK_API_TOKEN") or None)
        )
        self.url = url.rstrip("/") if url else None
        self.embedded = self.url is None and transport is None
        # In-process calls cannot lose a connection: no retries (nor keys) in embedded mode.
        self.retry_seconds = (
            0.0
            if self.embedded
            else (retry_seconds_from_env() if retry_seconds is None else max(0.0, retry_seconds))
        )
        headers = {"User-Agent": "podstack-sdk"}
        if api_token:
            headers["Authorization"] = f"Bearer {api_token}"
        if self.embedded:
            from podstack.client.embedded import EmbeddedTransport
            from podstack.server.app import create_app
            from podstack.server.config import Settings

            self._app = create_app(Settings(embedded=True, background_workers=False))
            transport = EmbeddedTransport(self._app)
            base_url = "http://embedded"
        else:
            base_url = self.url or "http://embedded"

        def make_http() -> httpx.Client:
            return httpx.Client(
                base_url=base_url,
                headers=headers,
                transport=transport,
                timeout=timeout or DEFAULT_TIMEOUT,
                follow_redirects=False,
                verify=default_ssl_context(),
            )

        # Plain JSON calls to a plain-HTTP server take the lighter path (json_http.py).
        self._json: JsonHttp | None = None
        if transport is None and self.url is not None and json_http.usable_for(self.url):
            self._json = JsonHttp(self.url, headers, timeout or DEFAULT_TIMEOUT)
        self._conns = _Connections(make_http, self._json)
        if self._json is None:
            self._conns.http  # noqa: B018 -- every call needs it: build it now, not mid-call
        # Closes the embedded app (lifespan, DB pool, its event loop) when the client is
        # garbage-collected or, at the latest, at interpreter exit via atexit -- while
        # threads still run, unlike __del__ during finalisation, which could deadlock.
        self._finalizer = weakref.finalize(self, self._conns.close)

    @property
    def _http(self) -> httpx.Client:
        return self._conns.http

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> BaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def _keyed_headers(self, method: str, headers: dict[str, str] | None) -> dict[str, str]:
        headers = dict(headers or {})
        if method.upper() not in IDEMPOTENT_METHODS and not self.embedded:
            headers.setdefault(IDEMPOTENCY_HEADER, str(uuid.uuid4()))
        return headers

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Any:
        """One logical call: retried on connection errors, 429 and 502/503/504 within
        ``retry_seconds``; ``content`` may be a callable giving a fresh body per attempt."""
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        headers = self._keyed_headers(method, kw.pop("headers", None))
        content = kw.pop("content", None)
        policy = RetryPolicy(self.retry_seconds, method, path)
        while True:
            try:
                status, resp_headers, body = self._attempt(
                    method, path, json, params, headers, content, kw
                )
            except TransportError as exc:
                delay = policy.next_delay(str(exc.__cause__ or exc))
                if delay is None:
                    if policy.attempt > 1:
                        exc.message = f"{exc.message} (gave up {policy.gave_up()})"
                        exc.args = (exc.message, *exc.args[1:])
                    raise
                time.sleep(delay)
                continue
            if status in RETRY_STATUSES:
                delay = policy.next_delay(
                    f"HTTP {status}", _retry_after(resp_headers.get("retry-after"))
                )
                if delay is not None:
                    time.sleep(delay)
                    continue
            if status >= 400:
                raise _error(status, body)
            if status == 204 or not body:
                return None
            return jsonlib.loads(body)

    def _attempt(
        self,
        method: str,
        path: str,
        json: Any,
        params: dict[str, Any] | None,
        headers: dict[str, str],
        content: Any,
        kw: dict[str, Any],
    ) -> tuple[int, Any, bytes]:
        """(status, headers, body) of one attempt; TransportError if the server was not
        reached or the connection dropped."""
        if self._json is not None and not kw and content is None:
            try:
                return self._json.request(method, API + path, json, params, headers)
            except json_http.TransportProblem as exc:
                raise TransportError(f"Cannot reach Podstack at {self.url}: {exc}") from exc
        body = content() if callable(content) else content
        try:
            resp = self._http.request(
                method,
                API + path,
                json=json,
                params=params,
                headers=headers or None,
                content=body,
                **kw,
            )
        except httpx.TransportError as exc:
            raise TransportError(f"Cannot reach Podstack at {self.url}: {exc}") from exc
        return resp.status_code, resp.headers, resp.content

    @contextmanager
    def _stream(self, method: str, path: str, **kw: Any) -> Iterator[httpx.Response]:
        """A streamed response; opening it (connection, status) is retried like
        ``_request``, the body is the caller's (see transfer.py for resuming)."""
        policy = RetryPolicy(self.retry_seconds, method, path)
        while True:
            yielded = False
            try:
                with self._http.stream(method, API + path, **kw) as resp:
                    if resp.status_code in RETRY_STATUSES:
                        resp.read()
                        delay = policy.next_delay(
                            f"HTTP {resp.status_code}",
                            _retry_after(resp.headers.get("retry-after")),
                        )
                        if delay is not None:
                            time.sleep(delay)
                            continue
                    if resp.status_code >= 400:
                        resp.read()
                        raise self._error(resp)
                    yielded = True
                    # Errors while the caller reads the body are the caller's to handle
                    # (transfer.py resumes downloads from where they were cut).
                    yield resp
                    return
            except httpx.TransportError as exc:
                if yielded:
                    raise
                delay = policy.next_delay(str(exc))
                if delay is None:
                    raise TransportError(f"Cannot reach Podstack at {self.url}: {exc}") from exc
                time.sleep(delay)

    @staticmethod
    def _error(resp: httpx.Response) -> PodstackError:
        return _error(resp.status_code, resp.content)

    def _paginate(
        self,
        path: str,
        key: str,
        params: dict[str, Any] | None = None,
        max_items: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Follows next_page_token until exhausted (or max_items)."""
        params = dict(params or {})
        seen = 0
        while True:
            page = self._request("GET", path, params=params)
            for item in page[key]:
                yield item
                seen += 1
                if max_items is not None and seen >= max_items:
                    return
            token = page.get("next_page_token")
            if not token:
                return
            params["page_token"] = token

"""Transport-level plumbing shared by every part of the SDK."""

from __future__ import annotations

import json as jsonlib
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from podstack.client import json_http
from podstack.client.json_http import JsonHttp
from podstack.errors import PodstackError, TransportError, error_from_payload

API = "/api/v1"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


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
    ) -> None:
        url = url if url is not None else os.environ.get("PODSTACK_URL") or None
        api_token = (
            api_token if api_token is not None else (os.environ.get("PODSTACK_API_TOKEN") or None)
        )
        self.url = url.rstrip("/") if url else None
        self.embedded = self.url is None and transport is None
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
    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Any:
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        if self._json is not None and not kw:
            try:
                status, content = self._json.request(method, API + path, json, params)
            except json_http.TransportProblem as exc:
                raise TransportError(f"Cannot reach Podstack at {self.url}: {exc}") from exc
        else:
            try:
                resp = self._http.request(method, API + path, json=json, params=params, **kw)
            except httpx.TransportError as exc:
                raise TransportError(f"Cannot reach Podstack at {self.url}: {exc}") from exc
            status, content = resp.status_code, resp.content
        if status >= 400:
            raise _error(status, content)
        if status == 204 or not content:
            return None
        return jsonlib.loads(content)

    @contextmanager
    def _stream(self, method: str, path: str, **kw: Any) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(method, API + path, **kw) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise self._error(resp)
                yield resp
        except httpx.TransportError as exc:
            raise TransportError(f"Cannot reach Podstack at {self.url}: {exc}") from exc

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

"""The SDK's hot path: small JSON API calls to a plain-HTTP server, over urllib3.

Scripts call the SDK in loops (log a metric, resolve an alias, create a version), so the
client's own CPU per call shows in their latency and, on a small machine, competes with the
server. Measured on 2 cores against the same server: httpx spends ~300 us of client CPU per
call (its Client layers plus h11, a pure-Python HTTP parser), urllib3 ~140 us: an alias lookup
went from 1.25 to ~1.0 ms end to end.

httpx stays the SDK's transport for everything else: streamed uploads and downloads, the
embedded (in-process) mode, HTTPS (certificate handling stays httpx's, with its CA bundle and
``SSL_CERT_FILE``) and any URL an HTTP proxy applies to. ``usable_for`` decides, once per
client, and the behaviour seen by callers is the same either way: same request bytes (JSON
encoding, query encoding), no redirects followed, the same timeouts, and transport failures
raised for the caller to map (``TransportProblem``).
"""

from __future__ import annotations

import json as jsonlib
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import urllib3

TransportProblem = urllib3.exceptions.HTTPError
# Connections kept per server; more concurrent calls open extra ones, closed afterwards.
POOL_SIZE = 64


def usable_for(url: str) -> bool:
    """Plain http:// with no proxy configured for that host."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    if not (proxies.get("http") or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname))


def _timeout(t: float | httpx.Timeout) -> urllib3.Timeout:
    if isinstance(t, httpx.Timeout):
        return urllib3.Timeout(connect=t.connect, read=t.read)
    return urllib3.Timeout(connect=t, read=t)


def _query_value(v: Any) -> str:
    # As httpx encodes query values, so both paths send the same query string.
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def encode_query(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        for v in value if isinstance(value, list | tuple) else [value]:
            pairs.append((key, _query_value(v)))
    return urlencode(pairs)


class JsonHttp:
    def __init__(self, base_url: str, headers: dict[str, str], timeout: float | httpx.Timeout):
        self.base_url = base_url.rstrip("/")
        self._headers = {**headers, "Accept": "application/json"}
        self._pool = urllib3.PoolManager(
            num_pools=4, maxsize=POOL_SIZE, retries=False, timeout=_timeout(timeout)
        )

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, bytes]:
        """(status, headers, body) of ``method base_url+path``; raises ``TransportProblem``.
        One attempt: retries are the caller's (client/base.py), with the same policy for
        both transports."""
        url = self.base_url + path
        query = encode_query(params)
        if query:
            url += "?" + query
        headers = {**self._headers, **extra_headers} if extra_headers else self._headers
        body = None
        if json is not None:
            # httpx's own JSON encoding (compact, UTF-8, NaN refused).
            body = jsonlib.dumps(
                json, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            headers = {**headers, "Content-Type": "application/json"}
        resp = self._pool.request(
            method, url, body=body, headers=headers, redirect=False, preload_content=True
        )
        return resp.status, resp.headers, resp.data

    def close(self) -> None:
        self._pool.clear()

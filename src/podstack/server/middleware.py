"""Pure-ASGI middleware: request size limits, Prometheus metrics, security headers.

Pure ASGI (not BaseHTTPMiddleware) so streamed artifact bodies pass through untouched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import ClientDisconnect

from podstack.errors import PayloadTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]
log = logging.getLogger("podstack.server")
# Request headers above this, all together, are refused with 431. uvicorn's httptools parser
# has no bound of its own (a 16 MB header was accepted); browsers and SDKs send a few KiB.
MAX_HEADER_BYTES = 64 * 1024


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit == "bytes" else f"{n:.0f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any],
    *,
    close: bool = True,
) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyReadTimeout(Exception):
    """Raised from ``receive`` when the client stopped sending its body (see
    ``BodyReadTimeoutMiddleware``); the 408 has already been sent when it can be."""


# The client went away (or stalled) mid-request: nothing the server did wrong, and nobody left
# to answer. Logged as one line, never as an unhandled error with a traceback.
_CLIENT_GONE: tuple[type[BaseException], ...] = (
    ClientDisconnect,
    BodyReadTimeout,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    ConnectionResetError,
    BrokenPipeError,
)


def _client_gone(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_client_gone(e) for e in exc.exceptions)
    return isinstance(exc, _CLIENT_GONE)


class CatchAllMiddleware:
    """An unexpected exception becomes the 500 error JSON here, and the connection stays usable.

    Left to Starlette, the 500 is sent and then the exception is re-raised to the server, which
    drops the connection: the client's *next* request on that keep-alive connection failed with
    "connection reset by peer" (seen under concurrent load), on top of the 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(msg: dict[str, Any]) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if _client_gone(exc):
                # WARNING: the lowest level shown without a logging configuration.
                log.warning(
                    "client went away or stalled during %s %s: %s",
                    scope.get("method"),
                    scope.get("path"),
                    exc.__class__.__name__,
                )
                return
            if started:
                raise  # part of a response is out: only closing the connection can tell
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            await _send_error(send, 500, "INTERNAL", "Internal server error.", {}, close=False)


class HeaderLimitMiddleware:
    """Refuses requests whose headers exceed ``MAX_HEADER_BYTES`` with 431."""

    def __init__(self, app: ASGIApp, limit: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", []))
            if size > self.limit:
                await _send_error(
                    send,
                    431,
                    "REQUEST_HEADERS_TOO_LARGE",
                    f"Request headers total {size} bytes; the limit is {self.limit} bytes.",
                    {"limit_bytes": self.limit},
                )
                return
        await self.app(scope, receive, send)


class _TooLarge(PayloadTooLarge):
    """Raised from ``receive`` mid-stream. A PodstackError, so wherever the app lets it
    surface (its own error handler, or here) the caller gets the same 413 with the limit."""


class BodyLimitMiddleware:
    """Refuses bodies over ``limit_for(scope)`` bytes with 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        details = {"limit_bytes": limit}
        message = f"Request body exceeds the limit of {_human(limit)} ({limit} bytes)."
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "BAD_REQUEST", "Invalid Content-Length.", {})
                    return
                if declared > limit:
                    await _send_error(send, 413, "PAYLOAD_TOO_LARGE", message, details)
                    return
        received = 0
        started = False
        answered = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, answered
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    if not started and not answered:
                        # Answer 413 now: FastAPI turns any exception raised while it reads a
                        # body it parses into a 400 "error parsing the body", which would hide
                        # the limit. Whatever the app answers after this is dropped.
                        answered = True
                        await _send_error(send, 413, "PAYLOAD_TOO_LARGE", message, details)
                    raise _TooLarge(message, details)
            return msg

        async def tracking_send(msg: dict[str, Any]) -> None:
            nonlocal started
            if answered:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started and not answered:
                await _send_error(send, 413, "PAYLOAD_TOO_LARGE", message, details)


class BodyReadTimeoutMiddleware:
    """Answers 408 and closes the connection when a request body stops arriving: more than
    ``timeout`` seconds between two chunks. Without it a client that sends headers and part of
    a body, then nothing, holds a connection (and, for uploads, a temp file) forever.

    Only the body is timed: once it is complete, later ``receive`` calls (a streaming response
    waiting for the client to disconnect) wait as long as they need."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.timeout or self.timeout <= 0:
            await self.app(scope, receive, send)
            return
        body_done = False
        started = False
        answered = False
        message = (
            f"The request body stopped arriving: nothing was received for {self.timeout:g} "
            "seconds. Send the whole body without long pauses."
        )

        async def timed_receive() -> dict[str, Any]:
            nonlocal body_done, answered
            if body_done:
                return await receive()
            try:
                with anyio.fail_after(self.timeout):
                    msg = await receive()
            except TimeoutError:
                if not started and not answered:
                    answered = True
                    await _send_error(
                        send, 408, "REQUEST_TIMEOUT", message, {"timeout_seconds": self.timeout}
                    )
                raise BodyReadTimeout(message) from None
            if msg["type"] != "http.request" or not msg.get("more_body", False):
                body_done = True
            return msg

        async def tracking_send(msg: dict[str, Any]) -> None:
            nonlocal started
            if answered:
                return  # the 408 is out; whatever the app answers after it is dropped
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, timed_receive, tracking_send)
        except BodyReadTimeout:
            log.warning("request body timed out on %s %s", scope.get("method"), scope.get("path"))


class MetricsMiddleware:
    """Request counts and latencies per route template (not raw path: bounded cardinality)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry, api_prefix: str = "") -> None:
        self.app = app
        # Routes of included routers report their path without the include prefix.
        self.api_prefix = api_prefix
        self.requests = Counter(
            "podstack_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "podstack_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(msg: dict[str, Any]) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if (
                self.api_prefix
                and template != "unmatched"
                and scope["path"].startswith(self.api_prefix)
                and not template.startswith(self.api_prefix)
            ):
                template = self.api_prefix + template
            self.requests.labels(scope["method"], template, str(status)).inc()
            self.latency.labels(scope["method"], template).observe(time.perf_counter() - start)


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        b"script-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    ),
]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                present = {k.lower() for k, _ in msg.get("headers", [])}
                msg["headers"] = list(msg.get("headers", [])) + [
                    h for h in SECURITY_HEADERS if h[0] not in present
                ]
            await send(msg)

        await self.app(scope, receive, add_headers)

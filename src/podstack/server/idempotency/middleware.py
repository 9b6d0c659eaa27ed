"""Pure-ASGI middleware answering repeats of ``Idempotency-Key`` requests (see service.py).

First attempts cost nothing extra before they run (no lookup): the key row is written in the
request's own transaction and a repeat is detected there, by the row's primary key. The
answer of a keyed request is held back until the request completes, so it can be stored (or
swapped for the first attempt's) before anything is sent; mutations answer small JSON.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool

from podstack.server.idempotency import service
from podstack.server.middleware import ASGIApp, Receive, Scope, Send, _send_error

_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_API = "/api/"


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= service.MAX_KEY_LENGTH and all(33 <= ord(c) < 127 for c in key)


def _rebuildable(scope: Scope) -> bool:
    """Whether a success of this (routed) request can be answered again from its key row."""
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return False
    if f"{endpoint.__module__}:{endpoint.__qualname__}" in service.REBUILDERS:
        return True
    return getattr(scope.get("route"), "status_code", None) == 204


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") not in _MUTATING
            or not scope.get("path", "").startswith(_API)
        ):
            await self.app(scope, receive, send)
            return
        key = _header(scope, service.HEADER.encode())
        if key is None:
            await self.app(scope, receive, send)
            return
        key = key.strip()
        if not _valid_key(key):
            await _send_error(
                send,
                400,
                "BAD_REQUEST",
                "Idempotency-Key must be 1 to 255 visible ASCII characters (the SDK sends a "
                "UUID per call).",
                {"header": "Idempotency-Key"},
                close=False,
            )
            return
        scope.setdefault("state", {})
        pending = service.Pending(
            key=key,
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            scope=scope,
        )

        declared = _header(scope, b"x-content-sha256")
        if declared is not None:
            # Raw uploads: the server refuses bytes that do not hash to the declared sha256,
            # so the header stands for the body (no second hash of gigabytes), and a lost
            # answer of an upload is never rebuilt from its body.
            pending.body_hash.update(declared.strip().lower().encode())
            pending.body = None

        async def hashing_receive() -> dict[str, Any]:
            msg = await receive()
            if msg.get("type") == "http.request" and declared is None:
                pending.feed(msg.get("body", b""))
            return msg

        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def capture(msg: dict[str, Any]) -> None:
            nonlocal start
            if msg["type"] == "http.response.start":
                start = msg
            elif msg["type"] == "http.response.body":
                chunks.append(msg.get("body", b""))

        token = service.current.set(pending)
        try:
            await self.app(scope, hashing_receive, capture)
        except BaseException:
            service.IN_FLIGHT.discard((pending.principal() or "", key))
            raise
        finally:
            service.current.reset(token)
            pending.closed = True
        if start is None:  # pragma: no cover - CatchAllMiddleware always answers
            raise RuntimeError("the application sent no response")
        status: int = start["status"]
        body = b"".join(chunks)
        db = scope["app"].state.db
        principal = pending.principal()
        if pending.recorded and principal is not None:
            try:
                # The hot paths (metric batches, create run/version, 204 answers) are answered
                # again from the key row alone: no second transaction per call for them.
                if status >= 300 or not _rebuildable(scope):
                    headers = dict(start.get("headers", []))
                    ctype = headers.get(b"content-type", b"").decode("latin-1")
                    await run_in_threadpool(
                        service.store_response, db, principal, key, status, ctype or None, body
                    )
            finally:
                service.IN_FLIGHT.discard((principal, key))
        elif (
            principal is not None
            and (pending.conflict or status >= 400)
            # Maybe a repeat of a request that was applied: answer with its first result.
            and await self._replay(scope, send, db, principal, pending)
        ):
            return
        await send(start)
        await send({"type": "http.response.body", "body": body})

    async def _replay(
        self, scope: Scope, send: Send, db: Any, principal: str, pending: service.Pending
    ) -> bool:
        found = await run_in_threadpool(
            service.wait_for_response, db, principal, pending.key, _rebuildable(scope)
        )
        if found is None:
            return False
        if found.fingerprint != pending.fingerprint():
            await _send_error(
                send,
                422,
                "VALIDATION_ERROR",
                f"Idempotency-Key {pending.key!r} was already used for a different request "
                "(another method, path or body). Use a new key for a new request.",
                {"idempotency_key": pending.key},
                close=False,
            )
            return True
        status, ctype = found.status, found.content_type
        body = found.body.encode() if found.body is not None else None
        if ctype == service.WITHHELD:
            await _send_error(
                send,
                409,
                "IDEMPOTENCY_RESULT_LOST",
                "This request (same Idempotency-Key) was already applied, once; its answer held "
                "a secret (a token or signing secret), which the server does not keep, so it "
                "cannot be sent again. Read the current state, or create a new one.",
                {"idempotency_key": pending.key},
                close=False,
            )
            return True
        if status is None:
            rebuilt = await run_in_threadpool(self._rebuild, scope, db, found, pending)
            if rebuilt is None:
                await _send_error(
                    send,
                    409,
                    "IDEMPOTENCY_RESULT_LOST",
                    "This request (same Idempotency-Key) was already applied, once, but the "
                    "server stopped before recording its answer. Read the current state "
                    "instead of repeating it.",
                    {"idempotency_key": pending.key},
                    close=False,
                )
                return True
            status, ctype, body = rebuilt
        headers = [(b"idempotent-replayed", b"true")]
        if ctype:
            headers.append((b"content-type", ctype.encode("latin-1")))
        body = body or b""
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True

    @staticmethod
    def _rebuild(
        scope: Scope, db: Any, found: service.Stored, pending: service.Pending
    ) -> tuple[int, str | None, bytes] | None:
        # The repeat itself was routed (it ran until its transaction met the key): the scope
        # names the endpoint and its path parameters.
        endpoint = scope.get("endpoint")
        route = scope.get("route")
        if endpoint is None:
            return None
        fn = service.REBUILDERS.get(f"{endpoint.__module__}:{endpoint.__qualname__}")
        if fn is None:
            if getattr(route, "status_code", None) == 204:
                return 204, None, b""
            return None
        query = dict(parse_qsl(pending.query))
        body = bytes(pending.body) if pending.body is not None else None
        try:
            with db.session(readonly=True) as s:
                status, payload = fn(s, found.created, scope.get("path_params", {}), query, body)
        except Exception:
            service.log.warning("cannot rebuild the answer to %s", endpoint, exc_info=True)
            return None
        return status, "application/json", json.dumps(payload).encode()

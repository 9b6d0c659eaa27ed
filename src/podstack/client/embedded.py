"""Embedded backend: the real server app, in this process, without a socket.

httpx only ships an *async* ASGI transport, and Starlette's TestClient buffers whole bodies,
which would break constant-memory artifact transfers. This transport runs the app on a
private event loop thread (anyio blocking portal) and streams both ways: the request body is
pulled chunk by chunk from httpx's sync stream, response chunks flow back through a small
bounded channel. Same validation, same errors, same code paths as a remote server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import anyio
import anyio.from_thread
import httpx
from anyio.abc import ObjectReceiveStream

_CHANNEL_DEPTH = 4


class _ResponseStream(httpx.SyncByteStream):
    def __init__(
        self,
        portal: anyio.from_thread.BlockingPortal,
        receive: ObjectReceiveStream[dict[str, Any]],
        first: list[bytes],
        more: bool,
    ) -> None:
        self._portal = portal
        self._receive = receive
        self._first = first
        self._more = more

    def __iter__(self) -> Iterator[bytes]:
        yield from self._first
        while self._more:
            try:
                msg = self._portal.call(self._receive.receive)
            except anyio.EndOfStream:
                break
            if msg["type"] == "error":
                raise msg["exc"]
            if msg.get("body"):
                yield msg["body"]
            self._more = msg.get("more_body", False)

    def close(self) -> None:
        try:
            self._portal.call(self._receive.aclose)
        except RuntimeError:
            pass  # portal already stopped


class EmbeddedTransport(httpx.BaseTransport):
    def __init__(self, app: Any) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._lifespan: AbstractContextManager[Any] | None = None

    def _ensure_started(self) -> anyio.from_thread.BlockingPortal:
        with self._lock:
            if self._portal is None:
                self._portal = self._start_loop()
                lifespan = self.app.router.lifespan_context(self.app)
                self._lifespan = self._portal.wrap_async_context_manager(lifespan)
                self._lifespan.__enter__()
            return self._portal

    def _start_loop(self) -> anyio.from_thread.BlockingPortal:
        """Runs the private event loop in a *daemon* thread: a script that never closes its
        client must still exit (anyio's start_blocking_portal uses a non-daemon thread,
        which the interpreter would wait for forever)."""
        ready = threading.Event()
        holder: dict[str, Any] = {}

        async def serve() -> None:
            async with anyio.from_thread.BlockingPortal() as portal:
                holder["portal"] = portal
                ready.set()
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve)
            except BaseException as exc:  # surfaced to the caller below
                holder["error"] = exc
                ready.set()

        self._thread = threading.Thread(target=run, name="podstack-embedded", daemon=True)
        self._thread.start()
        ready.wait()
        if "error" in holder:
            raise holder["error"]
        return holder["portal"]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        portal = self._ensure_started()
        send_chan, recv_chan = anyio.create_memory_object_stream[dict[str, Any]](_CHANNEL_DEPTH)
        body_iter = iter(request.stream)  # type: ignore[arg-type]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": ("127.0.0.1", 0),
            "server": ("embedded", 80),
            "state": {},
        }
        request_done = False

        async def receive() -> dict[str, Any]:
            nonlocal request_done
            if request_done:
                await anyio.sleep_forever()
            # Reading the caller's file happens on the loop thread; it is this client's
            # private loop, so blocking briefly on local disk is acceptable.
            chunk = next(body_iter, None)
            if chunk is None:
                request_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": chunk, "more_body": True}

        async def send(msg: dict[str, Any]) -> None:
            await send_chan.send(msg)

        async def run_app() -> None:
            async with send_chan:
                try:
                    await self.app(scope, receive, send)
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException as exc:
                    await send_chan.send({"type": "error", "exc": exc})

        portal.start_task_soon(run_app)
        start = portal.call(recv_chan.receive)
        if start["type"] == "error":
            raise start["exc"]
        first: list[bytes] = []
        more = True
        # Pull the first body message so small JSON responses are complete right away.
        try:
            msg = portal.call(recv_chan.receive)
            if msg["type"] == "error":
                raise msg["exc"]
            if msg.get("body"):
                first.append(msg["body"])
            more = msg.get("more_body", False)
        except anyio.EndOfStream:
            more = False
        return httpx.Response(
            status_code=start["status"],
            headers=[(bytes(k), bytes(v)) for k, v in start.get("headers", [])],
            stream=_ResponseStream(portal, recv_chan, first, more),
            request=request,
        )

    def close(self) -> None:
        with self._lock:
            if self._portal is None:
                return
            portal, self._portal = self._portal, None
            try:
                if self._lifespan is not None:
                    self._lifespan.__exit__(None, None, None)
            finally:
                self._lifespan = None
                portal.call(portal.stop)
                if self._thread is not None:
                    self._thread.join(timeout=10)

"""A recording TCP proxy in front of the test S3 server (real sockets, bytes unchanged).

The Podstack server under test is pointed at the proxy as its S3 endpoint, so the presigned
URLs it hands out lead the SDK through it too. The proxy forwards every byte untouched
(signatures stay valid: the Host header is the proxy's, which is what was signed) and keeps
what each client connection sent, so tests can check what reached the bucket: which
presigned requests, how many body bytes, on how many connections, and that no Podstack token
ever did. ``on_head`` lets a test act when a request arrives (stop the S3 server mid-upload);
``down`` makes the bucket unreachable (connections cut and refused) until it is cleared;
``cut_reply_after`` cuts the next connection whose reply passes that many bytes (a download
dropped mid-body).
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

_HEAD = re.compile(rb"(GET|PUT|POST|DELETE|HEAD) (\S+) HTTP/1\.1\r\n(.*?)\r\n\r\n", re.S)


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    conn: int

    @property
    def presigned(self) -> bool:
        return "X-Amz-Signature=" in self.target

    @property
    def length(self) -> int:
        return int(self.headers.get("content-length", "0"))

    @property
    def part_number(self) -> int | None:
        m = re.search(r"[?&]partNumber=(\d+)", self.target)
        return int(m.group(1)) if m else None


@dataclass
class _Conn:
    id: int
    sent: bytearray = field(default_factory=bytearray)
    parsed: int = 0  # bytes of ``sent`` already turned into requests
    body_left: int = 0


class RecordingProxy:
    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.requests: list[Request] = []
        self.on_head: Callable[[Request], None] | None = None
        self.down = False
        self.cut_reply_after: int | None = None
        self._conns: list[_Conn] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    # ------------------------------------------------------------------ for tests

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(bytes(c.sent) for c in self._conns)

    def presigned(self, method: str | None = None) -> list[Request]:
        with self._lock:
            return [
                r for r in self.requests if r.presigned and (method is None or r.method == method)
            ]

    def mark(self) -> int:
        """A position in the request log; ``since(mark)`` is what came after."""
        with self._lock:
            return len(self.requests)

    def since(self, mark: int) -> list[Request]:
        with self._lock:
            return list(self.requests[mark:])

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    # ------------------------------------------------------------------ plumbing

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()  # unreachable: the connection is dropped at once
                continue
            with self._lock:
                conn = _Conn(len(self._conns))
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(client, conn), daemon=True).start()

    def _serve(self, client: socket.socket, conn: _Conn) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()  # the S3 server is down: the client sees a dropped connection
            return
        back = threading.Thread(target=self._reply, args=(upstream, client), daemon=True)
        back.start()
        try:
            while data := client.recv(65536):
                heads = self._record(conn, data)
                for req in heads:
                    if self.on_head is not None:
                        self.on_head(req)
                if self.down:
                    break  # cut mid-request
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _reply(self, src: socket.socket, dst: socket.socket) -> None:
        passed = 0
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                passed += len(data)
                limit = self.cut_reply_after
                if limit is not None and passed > limit:
                    self.cut_reply_after = None
                    dst.shutdown(socket.SHUT_RDWR)  # the client sees the body stop short
                    src.close()
                    return
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _record(self, conn: _Conn, data: bytes) -> list[Request]:
        """Appends ``data`` and parses the request heads it completes (bodies are skipped by
        their Content-Length; every client here sends one)."""
        found: list[Request] = []
        with self._lock:
            conn.sent += data
            while True:
                if conn.body_left:
                    step = min(conn.body_left, len(conn.sent) - conn.parsed)
                    conn.parsed += step
                    conn.body_left -= step
                    if conn.body_left:
                        break
                m = _HEAD.match(conn.sent, conn.parsed)
                if m is None:
                    break
                headers = {}
                for line in m.group(3).split(b"\r\n"):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                req = Request(m.group(1).decode(), m.group(2).decode(), headers, conn.id)
                self.requests.append(req)
                found.append(req)
                conn.parsed = m.end()
                conn.body_left = req.length
        return found

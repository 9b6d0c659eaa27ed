"""Slow and vanishing clients over a real socket: a body that stops arriving is answered 408
and the connection closed; a client that hangs up mid-upload is one log line, no traceback."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer

TIMEOUT = 1.0


@pytest.fixture
def server(settings: Settings, db: Database, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(
        settings.model_copy(update={"body_read_timeout_seconds": TIMEOUT, "home": tmp_path})
    )
    live.start()
    yield live
    live.stop()


def _run_id(server: LiveServer) -> str:
    r = httpx.post(
        server.url + "/api/v1/runs",
        json={"experiment_id": "slow"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _partial(server: LiveServer, method: str, path: str, ctype: str) -> socket.socket:
    """Headers announcing 1000 bytes, then 10 of them, then nothing."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: {ctype}\r\n"
            "Content-Length: 1000\r\n\r\n"
        ).encode()
        + b"0123456789"
    )
    return sock


def _read_until_closed(sock: socket.socket, within: float) -> bytes:
    sock.settimeout(within)
    data = b""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"connection still open after {within} s; received {data[:300]!r}")


@pytest.mark.parametrize(
    ("method", "kind"),
    [("PUT", "upload"), ("POST", "json")],
)
def test_a_stalled_body_is_answered_408_and_closed(
    server: LiveServer, method: str, kind: str
) -> None:
    if kind == "upload":
        path = f"/api/v1/runs/{_run_id(server)}/artifacts/model.bin"
        ctype = "application/octet-stream"
    else:
        path = "/api/v1/registered-models"
        ctype = "application/json"
    started = time.monotonic()
    with _partial(server, method, path, ctype) as sock:
        answer = _read_until_closed(sock, within=TIMEOUT + 5)
    assert time.monotonic() - started < TIMEOUT + 4
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b'"REQUEST_TIMEOUT"' in body and b"stopped arriving" in body
    # Nothing was created.
    r = httpx.get(
        server.url + "/api/v1/registered-models",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.json()["items"] == []


def test_a_slow_but_steady_body_is_not_cut_off(server: LiveServer) -> None:
    """The timeout is between chunks, not for the whole body."""
    run_id = _run_id(server)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            (
                f"PUT /api/v1/runs/{run_id}/artifacts/slow.bin HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 40\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
        )
        for _ in range(4):  # 4 chunks, TIMEOUT/2 apart: 2 s in all, more than TIMEOUT
            sock.sendall(b"0123456789")
            time.sleep(TIMEOUT / 2)
        answer = _read_until_closed(sock, within=10)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]


def test_a_client_hanging_up_mid_upload_is_one_log_line_without_traceback(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/api/v1/runs/{_run_id(server)}/artifacts/model.bin"
    caplog.set_level(logging.INFO)
    sock = _partial(server, "PUT", path, "application/octet-stream")
    time.sleep(0.2)  # the upload has begun
    sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(path in r.getMessage() for r in caplog.records):
        time.sleep(0.05)
    mine = [r for r in caplog.records if path in r.getMessage()]
    assert len(mine) == 1, [r.getMessage() for r in caplog.records]
    assert "went away" in mine[0].getMessage()
    assert mine[0].exc_info is None
    assert "Traceback" not in caplog.text
    # The server is fine.
    assert httpx.get(server.url + "/healthz").status_code == 200

"""`podstack server` as a subprocess: idle keep-alive connections are closed, and a client that
hangs up mid-upload leaves one line in the server's log, no traceback."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.cli.test_server_cmd import (  # noqa: F401  (fixtures)
    database_for_server,
    server_env,
    start_server,
)
from tests.conftest import free_port

TOKEN = "chosen-admin-token-for-timeouts-0123456789"


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    return True


def test_keep_alive_timeout_and_quiet_disconnects(request: pytest.FixtureRequest) -> None:
    start = request.getfixturevalue("start_server")
    base_env: dict[str, str] = request.getfixturevalue("server_env")
    port = free_port()
    env = {
        **base_env,
        "PODSTACK_ADMIN_TOKEN": TOKEN,
        "PODSTACK_KEEP_ALIVE_TIMEOUT_SECONDS": "1",
        "PODSTACK_LOG_LEVEL": "warning",
    }
    server = start("--host", "127.0.0.1", "--port", str(port), env=env)
    server.wait_for_output("Podstack MLOps is running")

    # An idle keep-alive connection is closed after the configured second (uvicorn's own
    # default is 5 s), so idle sockets cannot pile up.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert _closed_within(sock, 4)
        assert time.monotonic() - started < 3

    headers = {"Authorization": f"Bearer {TOKEN}"}
    run = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/runs", json={"experiment_id": "t"}, headers=headers
    )
    assert run.status_code == 201, run.text
    path = f"/api/v1/runs/{run.json()['id']}/artifacts/model.bin"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            (
                f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Length: 100000\r\n\r\n"
            ).encode()
            + b"x" * 1000
        )
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and path not in server.stderr:
        time.sleep(0.05)
    time.sleep(0.3)  # anything else it would log
    lines = [line for line in server.stderr.splitlines() if path in line]
    assert len(lines) == 1 and "went away" in lines[0], server.stderr
    assert "Traceback" not in server.stderr
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    assert server.terminate() == 0

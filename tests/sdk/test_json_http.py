"""The SDK's light JSON path (client/json_http.py): used only where it behaves exactly like
the httpx path, and failing the same way."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from podstack import MLOpsClient
from podstack.client import json_http
from podstack.errors import NotFound, TransportError, ValidationFailed
from tests.conftest import ADMIN_TOKEN, LiveServer

PARAMS = {
    "q": "fraud détection & co/2",
    "labels": ["team-a", "team b"],
    "include_archived": True,
    "dry_run": False,
    "limit": 100,
    "at": "2026-11-26T10:00:00+01:00",
}


def test_query_string_means_what_httpx_sends() -> None:
    ours = parse_qsl(json_http.encode_query(PARAMS), keep_blank_values=True)
    theirs = parse_qsl(httpx.URL("http://x/", params=PARAMS).query.decode(), True)
    assert ours == theirs


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("http://127.0.0.1:8000", {}, True),
        ("https://podstack.example.com", {}, False),  # TLS stays with httpx
        ("http://podstack.internal:8000", {"HTTP_PROXY": "http://proxy:3128"}, False),
        ("http://podstack.internal:8000", {"ALL_PROXY": "http://proxy:3128"}, False),
        (
            "http://podstack.internal:8000",
            {"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "podstack.internal"},
            True,
        ),
    ],
)
def test_used_only_for_plain_http_without_a_proxy(
    url: str, env: dict[str, str], expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert json_http.usable_for(url) is expected
    assert (MLOpsClient(api_token="t", url=url)._json is not None) is expected


def test_calls_and_errors_over_the_light_path(live_server: LiveServer) -> None:
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url)
    assert c._json is not None
    run = c.create_run("light-path")  # POST with a JSON body
    c.log_params(run.id, {"lr": "0.1"})
    assert c.get_run(run.id).params == {"lr": "0.1"}
    with pytest.raises(NotFound) as nf:
        c.get_run("run-0000000000")
    assert "does not exist" in nf.value.message
    with pytest.raises(ValidationFailed):
        c.create_run("x", tags={"": "empty key"})
    c.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    t.join()
    for conn in accepted:
        conn.close()
    sock.close()


def test_a_server_that_does_not_answer_times_out_as_a_transport_error(
    silent_server: str,
) -> None:
    c = MLOpsClient(api_token="t", url=silent_server, timeout=0.3)
    assert c._json is not None
    with pytest.raises(TransportError) as exc:
        c.list_experiments()
    assert silent_server in exc.value.message


def test_nothing_listening_is_a_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    c = MLOpsClient(api_token="t", url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransportError) as exc:
        c.list_experiments()
    assert "Cannot reach Podstack" in exc.value.message


def test_a_client_builds_httpx_only_for_what_needs_it(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Creating a client is cheap (scripts create one per thread): httpx, whose client loads
    the CA bundle, is built only when a call needs it, here an artifact upload."""
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url)
    run = c.create_run("lazy-httpx")
    assert c._conns._http is None
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x" * 1000)
    c.log_artifact(run.id, str(f))
    assert c._conns._http is not None
    assert [a.path for a in c.list_artifacts(run.id)] == ["weights.bin"]
    c.close()

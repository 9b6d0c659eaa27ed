"""The SDK survives faults: retries (backoff, Retry-After, time bound, never for 4xx),
Idempotency-Key reuse across retries, answers dropped after the server applied a request,
transfers cut mid-way, and a real server SIGKILLed and restarted under a training loop."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from podstack import MLOpsClient
from podstack.client.base import DEFAULT_RETRY_SECONDS
from podstack.errors import NotFound, ServiceUnavailable, TransportError, ValidationFailed
from tests.conftest import ADMIN_TOKEN, LiveServer, current_db_kind, free_port
from tests.reliability.servers import ServerProcess, ServerSpec, create_database, drop_database

RESULTS_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
# ``make reliability`` (long): more steps and restarts; the default keeps ``make test`` short
# (each restart is a real server start, seconds on a loaded machine).
LONG = os.environ.get("PODSTACK_RELIABILITY_PROFILE", "short") == "long"
STEPS, STEP_MARKS = (1500, [200, 500, 800, 1100, 1400]) if LONG else (400, [120, 280])
VERSIONS, VERSION_MARKS = (100, [20, 45, 70]) if LONG else (40, [20])


# --------------------------------------------------------------------- a scripted server
class Scripted:
    """A loopback HTTP server answering from a script of (status, headers, body); the last
    entry repeats. Records (method, path, headers) of every request."""

    def __init__(self, script: list[tuple[int, dict[str, str], dict[str, Any]]]) -> None:
        self.script = list(script)
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append((self.command, self.path, dict(self.headers.items())))
                status, headers, body = (
                    outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def make(*script: tuple[int, dict[str, str], dict[str, Any]]) -> Scripted:
        servers.append(Scripted(list(script)))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _err(code: str, message: str = "m") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": {}}}


OK = (200, {}, {"ok": True})
BUSY = (503, {}, _err("SERVICE_UNAVAILABLE", "busy"))

# Both transports: the light urllib3 path (plain JSON) and httpx (anything with options).
TRANSPORTS = {"light": {}, "httpx": {"timeout": 10}}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> dict[str, Any]:
    return TRANSPORTS[request.param]


def _client(url: str, **kw: Any) -> MLOpsClient:
    return MLOpsClient(api_token="t", url=url, **kw)


def test_default_time_bound_is_60s_and_env_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PODSTACK_RETRY_SECONDS", raising=False)
    assert DEFAULT_RETRY_SECONDS == 60
    assert _client("http://127.0.0.1:1").retry_seconds == 60
    monkeypatch.setenv("PODSTACK_RETRY_SECONDS", "7.5")
    assert _client("http://127.0.0.1:1").retry_seconds == 7.5
    assert _client("http://127.0.0.1:1", retry_seconds=3).retry_seconds == 3
    monkeypatch.setenv("PODSTACK_RETRY_SECONDS", "soon")
    with pytest.raises(ValueError, match="PODSTACK_RETRY_SECONDS must be a number"):
        _client("http://127.0.0.1:1")


def test_503_with_retry_after_is_honoured_then_succeeds(
    scripted: Callable[..., Scripted],
    transport: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    srv = scripted((503, {"Retry-After": "1"}, _err("SERVICE_UNAVAILABLE")), OK)
    c = _client(srv.url, retry_seconds=30)
    caplog.set_level(logging.WARNING, logger="podstack.client")
    started = time.monotonic()
    assert c._request("GET", "/ping", **transport) == {"ok": True}
    assert time.monotonic() - started >= 1.0
    assert len(srv.seen) == 2
    (line,) = [r.getMessage() for r in caplog.records if r.name == "podstack.client"]
    # Method, path, reason, attempt and delay, on one line.
    assert line.startswith("GET /api/v1/ping failed (HTTP 503); retry 1 in 1.")


@pytest.mark.parametrize("status", [429, 502, 504])
def test_other_transient_statuses_are_retried(
    scripted: Callable[..., Scripted], transport: dict[str, Any], status: int
) -> None:
    srv = scripted((status, {}, _err("X")), (status, {}, _err("X")), OK)
    assert _client(srv.url, retry_seconds=30)._request("GET", "/ping", **transport) == {"ok": True}
    assert len(srv.seen) == 3


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [(404, "NOT_FOUND", NotFound), (422, "VALIDATION_ERROR", ValidationFailed), (500, "X", None)],
)
def test_4xx_and_500_are_never_retried(
    scripted: Callable[..., Scripted],
    transport: dict[str, Any],
    status: int,
    code: str,
    error: type | None,
) -> None:
    srv = scripted((status, {}, _err(code, "no such thing")), OK)
    started = time.monotonic()
    with pytest.raises(error or Exception) as exc:
        _client(srv.url, retry_seconds=30)._request("POST", "/things", json={}, **transport)
    assert time.monotonic() - started < 1
    assert len(srv.seen) == 1
    assert "no such thing" in str(exc.value)


def test_retries_stop_at_the_time_bound(
    scripted: Callable[..., Scripted], transport: dict[str, Any]
) -> None:
    srv = scripted(BUSY)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        _client(srv.url, retry_seconds=1.5)._request("GET", "/ping", **transport)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 3.0
    assert len(srv.seen) >= 3  # backed off exponentially from 0.25 s, with jitter


def test_a_retry_after_beyond_the_bound_gives_up_at_once(
    scripted: Callable[..., Scripted],
) -> None:
    srv = scripted((503, {"Retry-After": "120"}, _err("SERVICE_UNAVAILABLE", "maintenance")))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="maintenance"):
        _client(srv.url, retry_seconds=5)._request("GET", "/ping")
    assert time.monotonic() - started < 1
    assert len(srv.seen) == 1


def test_zero_disables_retries(
    scripted: Callable[..., Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODSTACK_RETRY_SECONDS", "0")
    srv = scripted(BUSY, OK)
    with pytest.raises(ServiceUnavailable):
        _client(srv.url)._request("GET", "/ping")
    assert len(srv.seen) == 1


def test_connection_refused_is_retried_within_the_bound(transport: dict[str, Any]) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(TransportError) as exc:
        _client(f"http://127.0.0.1:{port}", retry_seconds=1)._request("GET", "/ping", **transport)
    assert 0.9 <= time.monotonic() - started < 3
    assert "Cannot reach Podstack" in exc.value.message and "gave up after" in exc.value.message


def test_a_server_coming_back_is_reached_by_the_retries(transport: dict[str, Any]) -> None:
    port = free_port()
    srv: list[ThreadingHTTPServer] = []

    def start_later() -> None:
        time.sleep(0.8)
        s = Scripted([OK])
        s.httpd.server_close()
        s.httpd.shutdown()
        # Same handler class, now on the port the client has been failing to reach.
        httpd = ThreadingHTTPServer(("127.0.0.1", port), s.httpd.RequestHandlerClass)
        srv.append(httpd)
        httpd.serve_forever()

    threading.Thread(target=start_later, daemon=True).start()
    try:
        got = _client(f"http://127.0.0.1:{port}", retry_seconds=20)._request(
            "GET", "/ping", **transport
        )
        assert got == {"ok": True}
    finally:
        for s in srv:
            s.shutdown()
            s.server_close()


def test_every_change_carries_one_key_reused_across_its_retries(
    scripted: Callable[..., Scripted], transport: dict[str, Any]
) -> None:
    srv = scripted(BUSY, BUSY, (201, {}, {"id": 1}), OK)
    c = _client(srv.url, retry_seconds=30)
    assert c._request("POST", "/things", json={"a": 1}, **transport) == {"id": 1}
    c._request("GET", "/things/1", **transport)
    keys = [h.get("Idempotency-Key") for _, _, h in srv.seen]
    assert keys[0] and keys[0] == keys[1] == keys[2]
    assert keys[3] is None  # reads carry none
    for method in ("PUT", "PATCH", "DELETE"):
        c._request(method, "/things/1", json={"a": 2}, **transport)
    later = [h.get("Idempotency-Key") for _, _, h in srv.seen[4:]]
    assert all(later) and len(set([*later, keys[0]])) == 4  # a new key per logical call


# --------------------------------------------------------------------- a faulty proxy
class FaultProxy:
    """Loopback TCP proxy to a live server. ``drop_answers = n``: the next n responses are
    swallowed and the connection closed once the server *has* answered (it applied the
    request). ``cut_download_after`` / ``cut_upload_after``: the next connection moving that
    many bytes in that direction is cut there. ``upstream`` keeps what clients sent."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.drop_answers = 0
        self.dropped = 0
        self.cut_download_after: int | None = None
        self.cut_upload_after: int | None = None
        self.cuts = 0
        self.upstream = bytearray()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        moved = 0
        try:
            while data := client.recv(65536):
                with self.lock:
                    self.upstream += data[:2048]
                    limit = self.cut_upload_after
                    if limit is not None and moved + len(data) >= limit:
                        self.cut_upload_after = None
                        self.cuts += 1
                        upstream.sendall(data[: max(0, limit - moved)])
                        self._close(client, upstream)
                        return
                moved += len(data)
                upstream.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        moved = 0
        try:
            while data := upstream.recv(65536):
                with self.lock:
                    if self.drop_answers > 0:
                        self.drop_answers -= 1
                        self.dropped += 1
                        self._close(client, upstream)
                        return
                    limit = self.cut_download_after
                    if limit is not None and moved + len(data) >= limit:
                        self.cut_download_after = None
                        self.cuts += 1
                        client.sendall(data[: max(0, limit - moved)])
                        self._close(client, upstream)
                        return
                moved += len(data)
                client.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(live_server: LiveServer) -> Iterator[FaultProxy]:
    p = FaultProxy(live_server.port)
    yield p
    p.close()


def _count(live_server: LiveServer, sql: str, **params: object) -> int:
    engine = create_engine(live_server.settings.database_url)
    try:
        with engine.connect() as c:
            return int(c.execute(text(sql), params).scalar() or 0)
    finally:
        engine.dispose()


def test_answers_lost_after_the_server_applied_are_replayed_not_reapplied(
    proxy: FaultProxy, live_server: LiveServer, tmp_path: Path
) -> None:
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=proxy.url, retry_seconds=30)
    weights = tmp_path / "model.bin"
    weights.write_bytes(os.urandom(10_000))

    proxy.drop_answers = 1
    run = c.create_run("dropped-answers", run_name="r")
    proxy.drop_answers = 1
    c.log_metrics(run.id, {"loss": 0.5, "acc": 0.9}, step=1)
    proxy.drop_answers = 1
    (stored,) = c.log_artifact(run.id, weights)
    proxy.drop_answers = 1
    v1 = c.create_model_version("dropped", run.id, "model.bin")
    proxy.drop_answers = 1
    v2 = c.create_model_version("dropped", run.id, "model.bin")
    proxy.drop_answers = 1
    c.set_model_version_tag("dropped", 1, "k", "v")
    assert proxy.dropped == 6

    assert (v1.version, v2.version) == (1, 2)
    assert stored.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert _count(live_server, "SELECT count(*) FROM runs") == 1
    assert _count(live_server, "SELECT count(*) FROM metrics") == 2
    assert _count(live_server, "SELECT count(*) FROM model_versions") == 2
    assert _count(live_server, "SELECT count(*) FROM artifact_files") == 1
    assert [p.step for p in c.get_metric_history(run.id, "loss")] == [1]


def test_a_download_cut_mid_transfer_resumes_with_a_range_request(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=proxy.url, retry_seconds=30)
    big = tmp_path / "big.bin"
    big.write_bytes(random.Random(3).randbytes(3 * 1024 * 1024 + 123))
    run = c.create_run("resume", run_name="r")
    c.log_artifact(run.id, big)
    proxy.upstream.clear()
    proxy.cut_download_after = 1024 * 1024 + 77
    out = Path(c.download_artifacts(run.id, "big.bin", tmp_path / "dl"))
    assert proxy.cuts == 1
    assert (
        hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    )
    sent = proxy.upstream.decode("latin-1").lower()
    assert "range: bytes=" in sent  # resumed, not restarted
    assert not list((tmp_path / "dl").glob("*.part"))


def test_an_upload_cut_mid_transfer_is_sent_again_and_stored_once(
    proxy: FaultProxy, live_server: LiveServer, tmp_path: Path
) -> None:
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=proxy.url, retry_seconds=30)
    big = tmp_path / "big.bin"
    big.write_bytes(random.Random(4).randbytes(3 * 1024 * 1024))
    run = c.create_run("reupload", run_name="r")
    proxy.upstream.clear()
    proxy.cut_upload_after = 1024 * 1024
    (stored,) = c.log_artifact(run.id, big)
    assert proxy.cuts == 1
    assert stored.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert proxy.upstream.decode("latin-1").count("PUT /api/v1/runs/") == 2
    assert _count(live_server, "SELECT count(*) FROM artifact_files") == 1
    out = Path(c.download_artifacts(run.id, "big.bin", tmp_path / "dl"))
    assert out.read_bytes() == big.read_bytes()


# --------------------------------------------------------------------- kill and restart
def _killer(
    spec: ServerSpec,
    port: int,
    server: list[ServerProcess],
    progress: Callable[[], int],
    marks: list[int],
    done: threading.Event,
) -> int:
    """SIGKILLs and restarts the server (same port, database and store) each time the loop
    passes a mark; returns how many restarts it made."""
    restarts = 0
    for mark in marks:
        while progress() < mark and not done.is_set():
            time.sleep(0.005)
        if done.is_set():
            break
        server[0].kill()
        restarts += 1
        time.sleep(0.3)
        server[0] = ServerProcess(spec, port=port).wait_ready()
    return restarts


def test_training_loops_survive_server_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The real SDK with its default retry bound, a real server process SIGKILLed and
    restarted under a long log_metrics loop and under a version-creation loop: no error
    reaches the script, no point or version is lost or stored twice."""
    monkeypatch.delenv("PODSTACK_RETRY_SECONDS", raising=False)
    caplog.set_level(logging.WARNING, logger="podstack.client")
    url = create_database(tmp_path)
    spec = ServerSpec(database_url=url, home=tmp_path / "home", artifacts=tmp_path / "store")
    port = free_port()
    server = [ServerProcess(spec, port=port).wait_ready()]
    try:
        c = MLOpsClient(api_token=ADMIN_TOKEN, url=server[0].url)
        assert c.retry_seconds == DEFAULT_RETRY_SECONDS
        run = c.create_run("restarts", run_name="training")
        weights = tmp_path / "model.bin"
        weights.write_bytes(os.urandom(4096))
        c.log_artifact(run.id, weights)

        # 1. A long metric-logging loop, the server killed under it (twice; 5x when long).
        steps = STEPS
        done_steps = [0]
        errors: list[BaseException] = []
        finished = threading.Event()

        def training() -> None:
            try:
                for step in range(steps):
                    c.log_metrics(run.id, {"loss": 1 / (step + 1), "acc": step / steps}, step)
                    done_steps[0] = step + 1
            except BaseException as exc:
                errors.append(exc)
            finally:
                finished.set()

        t = threading.Thread(target=training)
        t.start()
        metric_restarts = _killer(spec, port, server, lambda: done_steps[0], STEP_MARKS, finished)
        t.join(300)
        assert errors == [], errors
        assert done_steps[0] == steps
        per_step = {}
        for key in ("loss", "acc"):
            per_step[key] = Counter(p.step for p in c.get_metric_history(run.id, key))
        duplicated = sum(n - 1 for cnt in per_step.values() for n in cnt.values() if n > 1)
        lost = sum(steps - len(cnt) for cnt in per_step.values())
        assert duplicated == 0 and lost == 0, per_step
        metric_retries = len([r for r in caplog.records if r.name == "podstack.client"])

        # 2. A version-creation loop, the server killed under it (once; 3x when long).
        versions = VERSIONS
        created: list[int] = []
        finished.clear()

        def registering() -> None:
            try:
                for _ in range(versions):
                    created.append(c.create_model_version("restarts", run.id, "model.bin").version)
            except BaseException as exc:
                errors.append(exc)
            finally:
                finished.set()

        t = threading.Thread(target=registering)
        t.start()
        version_restarts = _killer(
            spec, port, server, lambda: len(created), VERSION_MARKS, finished
        )
        t.join(300)
        assert errors == [], errors
        assert created == list(range(1, versions + 1))
        stored = sorted(v.version for v in c.list_model_versions("restarts"))
        assert stored == created  # none twice, none lost
        retries = len([r for r in caplog.records if r.name == "podstack.client"])
        # One applied request per logical call: each left exactly one idempotency key.
        engine = create_engine(url)
        with engine.connect() as conn:
            keys = dict(
                conn.execute(
                    text(
                        "SELECT CASE WHEN path LIKE '%/metrics' THEN 'metrics' ELSE 'versions' "
                        "END, count(*) FROM idempotency_keys WHERE path LIKE '%/metrics' "
                        "OR path LIKE '%/versions' GROUP BY 1"
                    )
                ).all()
            )
        engine.dispose()
        assert keys == {"metrics": steps, "versions": versions}
        figures = {
            "db": current_db_kind(),
            "metric_loop_steps": steps,
            "metric_points": 2 * steps,
            "restarts_during_metric_loop": metric_restarts,
            "version_loop_versions": versions,
            "restarts_during_version_loop": version_restarts,
            "sdk_retries_logged": retries,
            "metric_retries_logged": metric_retries,
            "errors_reaching_script": len(errors),
            "duplicates": duplicated + (len(stored) - len(set(stored))),
            "lost": lost + (versions - len(set(stored))),
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / f"sdk-faults-{current_db_kind()}.json").write_text(
            json.dumps(figures, indent=1)
        )
        assert (metric_restarts, version_restarts) == (len(STEP_MARKS), len(VERSION_MARKS))
        c.close()
    finally:
        server[0].kill()
        drop_database(url)


def test_a_damaged_stored_copy_is_not_resumed_for_the_whole_bound(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """The server cuts a download whose stored copy fails its check at the same place every
    time: the SDK stops resuming after a few cuts without progress, well inside the bound."""
    from podstack.server.artifacts.store import BlobStore

    c = MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url, retry_seconds=60)
    data = random.Random(5).randbytes(2 * 1024 * 1024 + 3)
    src = tmp_path / "c.bin"
    src.write_bytes(data)
    run = c.create_run("damaged", run_name="r")
    c.log_artifact(run.id, src)
    blob = BlobStore(live_server.settings.artifacts_path).path_for(hashlib.sha256(data).hexdigest())
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    try:
        started = time.monotonic()
        with pytest.raises(TransportError, match="cut short"):
            c.download_artifacts(run.id, "c.bin", tmp_path / "dl")
        assert time.monotonic() - started < 15
        assert not list((tmp_path / "dl").glob("c.bin*"))
    finally:
        blob.write_bytes(data)

"""SIGKILL a real ``podstack server`` in the middle of work, restart it on the same database
and artifact store, and check what a crash must never do:

- no half artifact visible or downloadable, no partial blob under a digest;
- no orphan rows, no version number handed out twice or skipped;
- every write the server acknowledged is there;
- the interrupted operation can simply be retried;
- temp files of killed uploads do not pile up (the store sweeps old ones when it opens, and
  leaves young ones alone: they may belong to another replica's upload in flight).

Also PostgreSQL cut off under load (PostgreSQL only): only 2xx or 503 with the error JSON
while it is away, never a 500, and service resumes without a restart.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from podstack import MLOpsClient
from podstack.errors import ApprovalRequired, NotFound
from tests.conftest import ADMIN_TOKEN
from tests.reliability.conftest import record
from tests.reliability.integrity import problems
from tests.reliability.servers import ServerProcess, ServerSpec
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

CHUNK = 256 * 1024
BIG_CHUNKS = 96  # a 24 MiB artifact


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _scalar(spec: ServerSpec, sql: str, **params: object) -> object:
    engine = create_engine(spec.database_url)
    try:
        with engine.connect() as c:
            return c.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def _sdk(server: ServerProcess, token: str = ADMIN_TOKEN) -> MLOpsClient:
    return MLOpsClient(api_token=token, url=server.url)


def _big_chunks() -> Iterator[bytes]:
    rnd = random.Random(9)
    for _ in range(BIG_CHUNKS):
        yield rnd.randbytes(CHUNK)


# ---------------------------------------------------------------- uploads


def test_sigkill_mid_upload_leaves_nothing_half_done(
    spec: ServerSpec, start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = start_server(spec)
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(300_000))
    with _sdk(server) as c:
        run = c.create_run("crash-upload", run_name="r")
        c.log_params(run.id, {"lr": "0.1"})
        c.log_metrics(run.id, {"loss": 0.5}, step=1)
        c.log_artifact(run.id, small)
        assert c.create_model_version("crash-model", run.id, "small.bin").version == 1

    stop = threading.Event()
    outcome: dict[str, object] = {}

    def slow_body() -> Iterator[bytes]:
        for chunk in _big_chunks():
            if stop.is_set():
                return
            yield chunk
            time.sleep(0.02)

    def upload() -> None:
        try:
            with server.client() as h:
                outcome["response"] = h.put(
                    f"/runs/{run.id}/artifacts/big.bin", content=slow_body()
                )
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    uploader = threading.Thread(target=upload)
    uploader.start()
    tmp_dir = spec.artifacts / "tmp"

    def upload_under_way() -> bool:
        return any(f.stat().st_size > 2 * CHUNK for f in tmp_dir.iterdir())

    _wait_for(upload_under_way, 60, "the upload to reach the server's temp file")
    server.kill()
    stop.set()
    uploader.join(30)
    assert "response" not in outcome, "the killed upload must not have been acknowledged"
    (partial,) = list(tmp_dir.iterdir())
    assert 0 < partial.stat().st_size < BIG_CHUNKS * CHUNK
    killed_at_bytes = partial.stat().st_size
    # With the server down: the partial upload is no artifact, no blob, no row.
    assert problems(spec.database_url, spec.artifacts) == []
    assert _scalar(spec, "SELECT count(*) FROM artifact_files WHERE path = 'big.bin'") == 0

    # As if the crash was long ago; beside it, a young file (another replica's live upload).
    long_ago = time.time() - 7 * 24 * 3600
    os.utime(partial, (long_ago, long_ago))
    inflight = tmp_dir / "upload-another-replica"
    inflight.write_bytes(b"bytes of an upload still in flight")

    server = start_server(spec)
    assert not partial.exists(), "a stale temp file of a killed upload survived the restart"
    assert inflight.exists(), "the startup sweep removed a young temp file (a live upload?)"
    inflight.unlink()

    with _sdk(server) as c:
        assert [a.path for a in c.list_artifacts(run.id)] == ["small.bin"]
        with pytest.raises(NotFound):
            c.download_artifacts(run.id, "big.bin", tmp_path / "dl-missing")
        assert not (tmp_path / "dl-missing" / "big.bin").exists()
        with server.client() as h:
            assert h.get(f"/runs/{run.id}/artifacts/big.bin").status_code == 404

        # Every acknowledged write is there.
        again = c.get_run(run.id)
        assert again.params == {"lr": "0.1"}
        assert again.metrics["loss"] == 0.5
        assert c.get_model_version("crash-model", 1).version == 1
        out = c.download_artifacts(run.id, "small.bin", tmp_path / "dl")
        assert Path(out).read_bytes() == small.read_bytes()

        # The interrupted upload is simply retried, with the SDK.
        big = tmp_path / "big.bin"
        with open(big, "wb") as fh:
            for chunk in _big_chunks():
                fh.write(chunk)
        (stored,) = c.log_artifact(run.id, big)
        digest = hashlib.sha256(big.read_bytes()).hexdigest()
        assert (stored.size, stored.sha256) == (big.stat().st_size, digest)
        out = c.download_artifacts(run.id, "big.bin", tmp_path / "dl2")
        assert hashlib.sha256(Path(out).read_bytes()).hexdigest() == digest
    assert list(tmp_dir.iterdir()) == []
    assert problems(spec.database_url, spec.artifacts) == []
    record(
        "crash-upload",
        {"killed_after_bytes": killed_at_bytes, "of_bytes": BIG_CHUNKS * CHUNK, "lost": 0},
    )


# ---------------------------------------------------------------- version creation

FILES = 40


def _run_with_model_dir(c: MLOpsClient, tmp_path: Path, experiment: str) -> str:
    model = tmp_path / experiment
    model.mkdir()
    for i in range(FILES):
        (model / f"shard-{i:03}.bin").write_bytes(f"{experiment} shard {i}".encode() * 50)
    run = c.create_run(experiment)
    c.log_artifacts(run.id, model, "model")
    return run.id


def test_sigkill_during_concurrent_version_creation(
    spec: ServerSpec, start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = start_server(spec)
    with _sdk(server) as c:
        run_id = _run_with_model_dir(c, tmp_path, "crash-versions")
    acked: list[int] = []
    refused: list[str] = []
    in_flight = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def creator() -> None:
        with server.client() as h:
            while not stop.is_set():
                with lock:
                    in_flight[0] += 1
                try:
                    r = h.post(
                        "/registered-models/crash-model/versions",
                        json={"source_run_id": run_id, "artifact_path": "model"},
                    )
                except httpx.HTTPError:
                    return  # the server died under this request: not acknowledged
                finally:
                    with lock:
                        in_flight[0] -= 1
                if r.status_code != 201:
                    refused.append(f"{r.status_code} {r.text}")
                    return
                with lock:
                    acked.append(r.json()["version"])

    threads = [threading.Thread(target=creator) for _ in range(6)]
    for t in threads:
        t.start()
    _wait_for(lambda: len(acked) >= 12, 120, "a dozen acknowledged versions")
    _wait_for(lambda: in_flight[0] >= 3, 10, "requests in flight")
    in_flight_at_kill = in_flight[0]
    server.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert refused == []

    server = start_server(spec)
    with _sdk(server) as c:
        numbers = sorted(v.version for v in c.list_model_versions("crash-model"))
        assert numbers == list(range(1, len(numbers) + 1)), "version numbers must be gap-free"
        assert set(acked) <= set(numbers), "an acknowledged version was lost"
        assert len(acked) == len(set(acked))
        # Each version is whole: its full file snapshot, its audit entry.
        per_version = _scalar(
            spec,
            "SELECT count(*) FROM (SELECT version_id FROM version_files GROUP BY version_id "
            "HAVING count(*) = :n) t",
            n=FILES,
        )
        assert per_version == len(numbers)
        assert _scalar(spec, "SELECT count(*) FROM version_files") == FILES * len(numbers)
        audited = _scalar(spec, "SELECT count(*) FROM audit_events WHERE action = 'version.create'")
        assert audited == len(numbers)
        # Retrying simply creates the next version.
        retry = c.create_model_version("crash-model", run_id, "model")
        assert retry.version == len(numbers) + 1
        assert len(c.list_model_version_files("crash-model", retry.version)) == FILES
    assert problems(spec.database_url, spec.artifacts) == []
    record(
        "crash-versions",
        {
            "acknowledged": len(acked),
            "in_flight_at_kill": in_flight_at_kill,
            "committed_unacknowledged": len(numbers) - len(acked),
            "versions_after_restart": len(numbers),
            "lost": len(set(acked) - set(numbers)),
        },
    )


# ---------------------------------------------------------------- approval-driven transitions


def test_sigkill_during_approval_driven_transitions(
    spec: ServerSpec, start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    requests_n = 24
    server = start_server(spec)
    with _sdk(server) as admin:
        admin.create_user("carol", "editor")
        admin.create_user("bob", "viewer")
        carol_token = admin.create_token("ci", username="carol").token
        bob_token = admin.create_token("review", username="bob").token
        admin.register_model("gated")
        admin.set_approval_policy("gated", gated_stages=["Production"], reviewers=["bob"])
    request_ids: dict[str, int] = {}
    with _sdk(server, carol_token) as carol:
        run = carol.create_run("crash-approvals")
        f = tmp_path / "model.bin"
        f.write_bytes(b"weights")
        carol.log_artifact(run.id, f)
        for _ in range(requests_n):
            v = carol.create_model_version("gated", run.id, "model.bin")
            with pytest.raises(ApprovalRequired) as exc:
                carol.transition_model_version_stage("gated", v.version, "Production")
            request_ids[exc.value.details["request_id"]] = v.version

    queue = list(request_ids)
    acked: list[str] = []
    refused: list[str] = []
    sent: list[str] = []
    lock = threading.Lock()

    def reviewer() -> None:
        with server.client(bob_token) as h:
            while True:
                with lock:
                    if not queue:
                        return
                    rid = queue.pop()
                    sent.append(rid)
                try:
                    r = h.post(f"/approval-requests/{rid}/approve", json={"comment": "ok"})
                except httpx.HTTPError:
                    return
                if r.status_code != 200:
                    refused.append(f"{r.status_code} {r.text}")
                    return
                with lock:
                    acked.append(rid)

    # One reviewer working through the queue: a request is always in flight. (Concurrent
    # approvals on one model are the replica suite's business.)
    threads = [threading.Thread(target=reviewer)]
    for t in threads:
        t.start()
    _wait_for(lambda: len(acked) >= 4, 120, "some approvals")
    server.kill()
    in_flight_at_kill = len(sent) - len(acked)  # sent, never answered
    for t in threads:
        t.join(30)
    assert refused == []
    assert len(acked) < requests_n, "the kill came too late to interrupt anything"

    server = start_server(spec)
    pending: list[str] = []
    with _sdk(server, bob_token) as bob:
        for rid, version in request_ids.items():
            req = bob.get_approval_request(rid)
            stage = bob.get_model_version("gated", version).stage
            applied = _scalar(
                spec, "SELECT count(*) FROM stage_transitions WHERE request_id = :r", r=rid
            )
            # All or nothing: approved <=> moved <=> exactly one transition for the request.
            if req.status == "approved":
                assert (stage, applied) == ("Production", 1), rid
            else:
                assert (req.status, stage, applied) == ("pending", "None", 0), rid
                pending.append(rid)
            if rid in acked:
                assert req.status == "approved", f"acknowledged approval of {rid} lost"
        # The interrupted approvals are simply retried.
        for rid in pending:
            assert bob.approve_request(rid).status == "approved"
            assert bob.get_model_version("gated", request_ids[rid]).stage == "Production"
    assert problems(spec.database_url, spec.artifacts) == []
    record(
        "crash-approvals",
        {
            "requests": requests_n,
            "acknowledged": len(acked),
            "in_flight_at_kill": in_flight_at_kill,
            "approved_after_restart": requests_n - len(pending),
            "retried": len(pending),
            "lost": 0,
        },
    )


# ---------------------------------------------------------------- database outage under load


@pytest.mark.postgres_only
def test_postgres_cut_under_load_gives_503_then_recovers(
    spec: ServerSpec, start_server: Callable[..., ServerProcess]
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432)
    try:
        proxied = ServerSpec(
            spec.database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"),
            spec.home,
            spec.artifacts,
        )
        server = start_server(proxied)
        statuses: list[int] = []
        bad: list[str] = []
        acked: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def worker(n: int) -> None:
            with server.client(timeout=30) as h:
                i = 0
                while not stop.is_set():
                    i += 1
                    name = f"exp-{n}-{i}"
                    try:
                        w = h.post("/experiments", json={"name": name})
                        r = h.get("/experiments", params={"limit": 5})
                    except httpx.HTTPError as exc:
                        with lock:
                            bad.append(f"transport error {exc!r}")
                        continue
                    with lock:
                        statuses.extend([w.status_code, r.status_code])
                        if w.status_code == 201:
                            acked.append(name)
                    for resp in (w, r):
                        if resp.status_code == 503:
                            body = resp.json()["error"]
                            if body["code"] != "SERVICE_UNAVAILABLE" or "Traceback" in resp.text:
                                bad.append(resp.text)
                        elif resp.status_code not in (200, 201):
                            bad.append(f"{resp.status_code} {resp.text[:300]}")

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        proxy.cut()
        time.sleep(3)
        during = len(statuses)
        proxy.restore()
        _wait_for(lambda: len(acked) >= 5 and statuses[-1] in (200, 201), 30, "recovery")
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(30)
        assert bad == [], bad[:5]
        assert 503 in statuses[:during], "the outage was not noticed"
        assert statuses[-1] in (200, 201)
        with server.client() as h:
            names = set()
            page: dict[str, object] = {"limit": 1000}
            while True:
                body = h.get("/experiments", params=page).json()
                names |= {e["name"] for e in body["items"]}
                if not body.get("next_page_token"):
                    break
                page["page_token"] = body["next_page_token"]
        assert set(acked) <= names, "an acknowledged write was lost in the outage"
        assert "Traceback" not in server.output
        record(
            "db-outage",
            {
                "requests": len(statuses),
                "answered_503": statuses.count(503),
                "answered_5xx_other": sum(1 for x in statuses if x >= 500 and x != 503),
                "acknowledged_writes": len(acked),
                "lost": len(set(acked) - names),
            },
        )
    finally:
        proxy.restore()
        proxy.close()

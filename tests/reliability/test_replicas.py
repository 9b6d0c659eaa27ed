"""Two ``podstack server`` processes on one PostgreSQL database and one artifact store, both
running their background loops (webhook and email delivery, the scheduler), clients spread
over both:

- version numbers stay gap-free and unique under concurrent creators hitting both replicas,
  including the race to auto-register a new model;
- every webhook and every email is delivered once (not zero, not twice);
- an approval applies once when two reviewers approve on different replicas at the same time,
  and approvals of different requests of one model do not trip over each other;
- a due schedule fires once, though both schedulers see it due.

Receivers are real: an HTTP server for webhooks and scheduler jobs, an SMTP server (aiosmtpd).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text

from podstack import MLOpsClient
from podstack.errors import ApprovalRequired
from tests.conftest import ADMIN_TOKEN, free_port
from tests.reliability.conftest import PROFILE, record
from tests.reliability.integrity import problems
from tests.reliability.servers import ServerProcess, ServerSpec, create_database, drop_database
from tests.server.notifications.receivers import SmtpSink, WebhookReceiver

pytestmark = [pytest.mark.postgres_only, pytest.mark.reliability, pytest.mark.timeout(600)]

LONG = PROFILE == "long"
CREATORS = 16 if LONG else 8
VERSIONS_EACH = 40 if LONG else 10
REQUESTS = 30 if LONG else 8
SCHEDULES = 12 if LONG else 4
ROUNDS = 5 if LONG else 2


@dataclass
class Replicas:
    a: ServerProcess
    b: ServerProcess
    spec: ServerSpec
    hooks: WebhookReceiver
    smtp: SmtpSink

    @property
    def both(self) -> tuple[ServerProcess, ServerProcess]:
        return self.a, self.b

    def sql(self, statement: str, **params: object) -> list[tuple]:
        engine = create_engine(self.spec.database_url)
        try:
            with engine.begin() as c:
                result = c.execute(text(statement), params)
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """One pair for the module (starting servers is the slow part); tests use their own
    names, users and addresses so they do not see each other's data."""
    tmp = tmp_path_factory.mktemp("replicas")
    url = create_database(tmp)
    spec = ServerSpec(database_url=url, home=tmp / "home", artifacts=tmp / "home" / "artifacts")
    hooks = WebhookReceiver().start()
    sink = SmtpSink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    env = {
        "PODSTACK_BACKGROUND_WORKERS": "true",
        "PODSTACK_SMTP_HOST": "127.0.0.1",
        "PODSTACK_SMTP_PORT": str(smtp_port),
        "PODSTACK_SCHEDULER_TICK_SECONDS": "0.5",
        # The webhook receiver listens on loopback, which the egress rules refuse by default.
        "PODSTACK_OUTBOUND_ALLOW": "127.0.0.0/8",
    }
    started: list[ServerProcess] = []
    try:
        # The first start migrates and creates admin; the second joins that deployment.
        for _ in range(2):
            started.append(ServerProcess(spec, **env))
            started[-1].wait_ready()
        yield Replicas(started[0], started[1], spec, hooks, sink)
    finally:
        for server in started:
            server.kill()
        controller.stop()
        hooks.stop()
        drop_database(url)


@pytest.fixture(autouse=True)
def _no_tracebacks(replicas: Replicas) -> Iterator[None]:
    seen = [len(server.output) for server in replicas.both]
    yield
    for server, start in zip(replicas.both, seen, strict=True):
        new = server.output[start:]
        assert "Traceback" not in new, new[-4000:]


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _hook_url(replicas: Replicas, tag: str) -> str:
    # One path per test: each test's webhook is told apart by where its deliveries arrive.
    return f"{replicas.hooks.url}/{tag}"


def _events(replicas: Replicas, tag: str, event_type: str) -> list[dict]:
    return [
        r.json
        for r in list(replicas.hooks.received)
        if r.path == f"/hook/{tag}" and r.json.get("type") == event_type
    ]


def _settle() -> None:
    # Several delivery/scheduler passes of both replicas: a duplicate would show up by now.
    time.sleep(3)


# ---------------------------------------------------------------- versions + webhooks


def test_version_numbers_gap_free_and_webhooks_once(replicas: Replicas, tmp_path: Path) -> None:
    tag = "versions"
    with MLOpsClient(api_token=ADMIN_TOKEN, url=replicas.a.url) as c:
        c.create_webhook(
            _hook_url(replicas, tag),
            events=["version.created", "model.created"],
            model_names=["race-model"],
        )
        run = c.create_run("replicas")
        f = tmp_path / "m.bin"
        f.write_bytes(b"weights")
        c.log_artifact(run.id, f)

    acked: list[int] = []
    failed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CREATORS)

    def creator(n: int) -> None:
        clients = [s.client() for s in replicas.both]
        start.wait()
        try:
            for i in range(VERSIONS_EACH):
                h = clients[(n + i) % 2]
                # The model does not exist yet: the first requests race to register it.
                r = h.post(
                    "/registered-models/race-model/versions",
                    json={"source_run_id": run.id, "artifact_path": "m.bin"},
                )
                with lock:
                    if r.status_code == 201:
                        acked.append(r.json()["version"])
                    else:
                        failed.append(f"{r.status_code} {r.text[:300]}")
        finally:
            for h in clients:
                h.close()

    threads = [threading.Thread(target=creator, args=(n,)) for n in range(CREATORS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    total = CREATORS * VERSIONS_EACH
    assert failed == []
    assert sorted(acked) == list(range(1, total + 1)), "duplicated or skipped version numbers"
    with MLOpsClient(api_token=ADMIN_TOKEN, url=replicas.b.url) as c:
        listed = sorted(v.version for v in c.list_model_versions("race-model"))
    assert listed == list(range(1, total + 1))

    def created() -> list[dict]:
        return _events(replicas, tag, "version.created")

    _wait_for(lambda: len(created()) >= total, 60, "webhooks")
    _settle()
    assert len(created()) == total, "a webhook was delivered more than once"
    assert sorted(e["data"]["version"] for e in created()) == list(range(1, total + 1))
    assert len({e["id"] for e in created()}) == total
    assert len(_events(replicas, tag, "model.created")) == 1, "the model was registered twice"
    assert problems(replicas.spec.database_url, replicas.spec.artifacts) == []
    record(
        "replicas-versions",
        {"creators": CREATORS, "versions": total, "webhooks_delivered": len(created())},
    )


# ---------------------------------------------------------------- approvals + emails


@dataclass
class Approvals:
    tag: str
    model: str
    tokens: dict[str, str]
    request_ids: dict[str, int]  # request id -> version


def _approval_setup(
    replicas: Replicas, tmp_path: Path, tag: str, reviewers: list[str], requests_n: int = REQUESTS
) -> Approvals:
    model = f"reviewed-{tag}"
    tokens = {}
    with MLOpsClient(api_token=ADMIN_TOKEN, url=replicas.a.url) as admin:
        admin.create_webhook(_hook_url(replicas, tag), events=["stage.*"], model_names=[model])
        for name, role in [("carol", "editor")] + [(r, "viewer") for r in reviewers]:
            user = f"{name}-{tag}"
            admin.create_user(user, role, email=f"{user}@example.com")
            tokens[name] = admin.create_token("t", username=user).token
        admin.register_model(model)
        admin.set_approval_policy(
            model, gated_stages=["Production"], reviewers=[f"{r}-{tag}" for r in reviewers]
        )
    request_ids: dict[str, int] = {}
    with MLOpsClient(api_token=tokens["carol"], url=replicas.b.url) as carol:
        run = carol.create_run(f"approvals-{tag}")
        f = tmp_path / "m.bin"
        f.write_bytes(b"weights")
        carol.log_artifact(run.id, f)
        for _ in range(requests_n):
            v = carol.create_model_version(model, run.id, "m.bin")
            with pytest.raises(ApprovalRequired) as exc:
                carol.transition_model_version_stage(model, v.version, "Production")
            request_ids[exc.value.details["request_id"]] = v.version
    return Approvals(tag, model, tokens, request_ids)


def _check_applied_once(replicas: Replicas, ap: Approvals) -> None:
    per_request = dict(
        replicas.sql(
            "SELECT t.request_id, count(*) FROM stage_transitions t JOIN registered_models m "
            "ON m.id = t.model_id WHERE m.name = :m AND t.request_id IS NOT NULL "
            "GROUP BY t.request_id",
            m=ap.model,
        )
    )
    assert per_request == dict.fromkeys(ap.request_ids, 1), "a transition applied twice or never"
    stages = dict(
        replicas.sql(
            "SELECT v.version, v.stage FROM model_versions v JOIN registered_models m "
            "ON m.id = v.model_id WHERE m.name = :m",
            m=ap.model,
        )
    )
    assert {stages[v] for v in ap.request_ids.values()} == {"Production"}

    def applied() -> list[dict]:
        return _events(replicas, ap.tag, "stage.transition_applied")

    _wait_for(lambda: len(applied()) >= len(ap.request_ids), 60, "transition webhooks")
    _settle()
    assert sorted(e["data"]["request_id"] for e in applied()) == sorted(ap.request_ids)
    requested = _events(replicas, ap.tag, "stage.transition_requested")
    assert sorted(e["data"]["request_id"] for e in requested) == sorted(ap.request_ids)


def _subject(raw: str) -> str:
    return str(make_header(decode_header(raw.replace("\r\n", ""))))


def _check_emails_once(replicas: Replicas) -> None:
    """Every email of the outbox reached the SMTP server exactly once."""

    def sent() -> Counter[tuple[str, str]]:
        rows = replicas.sql("SELECT to_address, subject FROM email_messages WHERE status = 'sent'")
        return Counter((to, subject) for to, subject in rows)

    expected = Counter(replicas.sql("SELECT to_address, subject FROM email_messages"))
    _wait_for(lambda: sent() == expected, 60, "every email to be sent")
    _settle()
    with replicas.smtp.lock:
        received = Counter(
            (rcpt, _subject(m["Subject"])) for rcpts, m in replicas.smtp.messages for rcpt in rcpts
        )
    assert received == expected, "an email was sent twice (or not at all)"


def test_racing_reviewers_apply_each_approval_once(replicas: Replicas, tmp_path: Path) -> None:
    ap = _approval_setup(replicas, tmp_path, "race", ["bob", "dave"])
    outcomes: dict[str, list[int]] = {rid: [] for rid in ap.request_ids}
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def reviewer(name: str, server: ServerProcess) -> None:
        with server.client(ap.tokens[name]) as h:
            for rid in ap.request_ids:
                barrier.wait()  # both reviewers approve the same request at the same moment
                try:
                    status = h.post(
                        f"/approval-requests/{rid}/approve", json={"comment": name}
                    ).status_code
                except httpx.HTTPError as exc:
                    status = repr(exc)  # type: ignore[assignment]
                with lock:
                    outcomes[rid].append(status)

    threads = [
        threading.Thread(target=reviewer, args=("bob", replicas.a)),
        threading.Thread(target=reviewer, args=("dave", replicas.b)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    # One approval is enough: exactly one reviewer wins, the other is told it is decided.
    assert {r: sorted(s) for r, s in outcomes.items()} == {r: [200, 409] for r in ap.request_ids}
    _check_applied_once(replicas, ap)
    # Each request mailed both reviewers once, and its decision the requester once.
    _check_emails_once(replicas)
    rows = replicas.sql(
        "SELECT to_address, count(*) FROM email_messages WHERE to_address LIKE '%-race@%' "
        "GROUP BY to_address"
    )
    assert dict(rows) == {
        f"{u}-race@example.com": len(ap.request_ids) for u in ("bob", "dave", "carol")
    }
    record(
        "replicas-approvals",
        {
            "requests": len(ap.request_ids),
            "racing_reviewers": 2,
            "emails": sum(dict(rows).values()),
        },
    )


def test_concurrent_approvals_of_one_models_requests(replicas: Replicas, tmp_path: Path) -> None:
    """Four reviewers each work through their share of one model's requests, two on each
    replica, at the same time: every approval succeeds (no deadlock surfacing as a 500)."""
    names = ["bob", "dave", "erin", "frank"]
    ap = _approval_setup(replicas, tmp_path, "spread", names, requests_n=6 * len(names))
    ids = list(ap.request_ids)
    failures: list[str] = []

    def reviewer(i: int) -> None:
        server = replicas.both[i % 2]
        with server.client(ap.tokens[names[i]]) as h:
            for rid in ids[i :: len(names)]:
                try:
                    r = h.post(f"/approval-requests/{rid}/approve", json={"comment": "ok"})
                except httpx.HTTPError as exc:
                    failures.append(f"{names[i]} {rid}: {exc!r}")
                    continue
                if r.status_code != 200:
                    failures.append(f"{names[i]} {rid}: {r.status_code} {r.text[:300]}")

    threads = [threading.Thread(target=reviewer, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert failures == []
    _check_applied_once(replicas, ap)
    _check_emails_once(replicas)


# ---------------------------------------------------------------- schedules


def test_due_schedules_fire_once_with_two_schedulers(replicas: Replicas) -> None:
    with MLOpsClient(api_token=ADMIN_TOKEN, url=replicas.a.url) as c:
        c.create_experiment("scheduled")
    names = [f"nightly-{i}" for i in range(SCHEDULES)]
    with replicas.a.client() as h:
        for name in names:
            r = h.post(
                "/schedules",
                json={
                    "name": name,
                    "experiment_id": "scheduled",
                    "cron": "0 3 * * *",
                    "executor": {
                        "type": "webhook",
                        "url": _hook_url(replicas, "jobs"),
                        "secret": "s" * 32,
                    },
                    "overlap_policy": "allow",
                },
            )
            assert r.status_code == 201, r.text

    def jobs() -> list[dict]:
        return [
            r.json
            for r in list(replicas.hooks.received)
            if r.path == "/hook/jobs" and r.json.get("type") == "schedule.execution"
        ]

    for round_ in range(ROUNDS):
        # Make every schedule due now (its 03:00 tick, brought forward): both schedulers
        # see it due at their next tick, half a second apart at most.
        replicas.sql(
            "UPDATE schedules SET next_fire_at = now() - make_interval(secs => :s)",
            s=1 + round_,
        )
        want = SCHEDULES * (round_ + 1)
        _wait_for(lambda want=want: len(jobs()) >= want, 60, "scheduled jobs")
        _settle()
        got = jobs()
        per_fire = Counter((j["schedule_name"], j["scheduled_time"]) for j in got)
        assert len(got) == want, f"a schedule fired twice: {per_fire}"
        assert set(per_fire.values()) == {1}
    fired = {j["execution_id"] for j in jobs()}
    rows = replicas.sql(
        "SELECT s.name, count(*) FROM schedule_executions e JOIN schedules s "
        "ON s.id = e.schedule_id GROUP BY s.name"
    )
    assert dict(rows) == dict.fromkeys(names, ROUNDS)
    assert len(fired) == SCHEDULES * ROUNDS
    record("replicas-schedules", {"schedules": SCHEDULES, "rounds": ROUNDS, "fires": len(fired)})

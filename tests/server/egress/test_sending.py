"""At send time: the check runs again, the connection goes to the checked address (no second
lookup a rebinding DNS server could answer differently), redirects are not followed, and what
a receiver answers is recorded as status and size only where viewers can read it. Every
receiver here is on loopback, reached only through the allow-list."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from podstack.server import egress
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.events import signing
from podstack.server.notifications.delivery import DeliveryConfig, process_webhooks
from podstack.server.notifications.models import WebhookAttempt
from podstack.server.schedules.scheduler import FakeClock, Scheduler
from tests.conftest import LiveServer
from tests.server.egress.conftest import Tripwire
from tests.server.notifications.receivers import WebhookReceiver

FAST = DeliveryConfig(timeout_seconds=5, base_delay_seconds=0)
SECRET = "whsec-0123456789abcdef"
LOOPBACK = egress.AllowList.parse("127.0.0.0/8")


class Answering:
    """A loopback HTTP server answering every POST with ``status``, ``body``, ``headers``."""

    def __init__(self, status: int = 200, body: bytes = b"", headers: dict | None = None):
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append(dict(self.headers.items()))
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def answering() -> Iterator[Callable[..., Answering]]:
    made: list[Answering] = []

    def make(*args: Any, **kw: Any) -> Answering:
        made.append(Answering(*args, **kw))
        return made[-1]

    yield make
    for a in made:
        a.close()


def test_allow_listed_loopback_receiver_works_end_to_end(
    strict_api: httpx.Client, api: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    body = {"url": webhook_receiver.url, "events": ["*"], "secret": SECRET}
    # Refused by default...
    assert strict_api.post("/webhooks", json=body).status_code == 422
    # ...accepted and delivered where PODSTACK_OUTBOUND_ALLOW lists loopback (the suite's
    # settings: 127.0.0.0/8,::1).
    hook = api.post("/webhooks", json=body).json()
    d = api.post(f"/webhooks/{hook['id']}/test").json()
    assert d["status"] == "delivered", d
    (got,) = webhook_receiver.received
    assert signing.verify(SECRET, got.headers, got.body)


def test_host_names_in_the_allow_list(answering: Callable[..., Answering]) -> None:
    a = answering(204)
    url = f"http://localhost:{a.port}/hook"
    with pytest.raises(egress.Refused, match=re.escape("'localhost' resolves to 127.0.0.1")):
        egress.check(url, egress.AllowList())
    with egress.EgressClient(egress.AllowList.parse("localhost")) as client:
        assert client.post(url, content=b"{}").status_code == 204
    other = egress.AllowList.parse("*.localhost, 10.0.0.0/8")
    with egress.EgressClient(other) as client, pytest.raises(egress.Refused):
        client.post(url, content=b"{}")
    assert len(a.requests) == 1


def test_every_send_checks_again(
    api: httpx.Client, db: Database, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    """A webhook accepted while an address was allowed is not sent once it no longer is."""
    hook = api.post("/webhooks", json={"url": webhook_receiver.url, "events": ["*"]}).json()
    api.post("/registered-models", json={"name": "m"})
    strict = settings.model_copy(update={"outbound_allow": ""})
    report = process_webhooks(db, FAST, settings=strict)
    assert report.claimed == 1 and report.succeeded == 0
    assert webhook_receiver.received == []
    (d,) = api.get(f"/webhooks/{hook['id']}/deliveries").json()["items"]
    assert d["last_error"] == (
        "not sent: host 127.0.0.1 is a loopback address (allow it with PODSTACK_OUTBOUND_ALLOW)"
    )
    assert d["attempt_log"][0]["status_code"] is None


def test_connects_to_the_checked_address_without_resolving_again(
    monkeypatch: pytest.MonkeyPatch, answering: Callable[..., Answering]
) -> None:
    """DNS rebinding: the first answer for rebind.test is the (allowed) receiver, every later
    one the metadata address. The request goes out after exactly one lookup, to the checked
    address, with the name in the Host header; the next request is checked again and refused
    before any connect."""
    a = answering(204)
    real = socket.getaddrinfo
    asked: list[str] = []
    connects: list[Any] = []
    real_connect = socket.socket.connect

    def rebinding(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host == "rebind.test":
            asked.append(host)
            ip = "127.0.0.1" if len(asked) == 1 else "169.254.169.254"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real(host, port, *args, **kw)

    def connect(self: socket.socket, address: Any) -> Any:
        connects.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(socket.socket, "connect", connect)
    url = f"http://rebind.test:{a.port}/hook"
    with egress.EgressClient(LOOPBACK) as client:
        assert client.post(url, content=b"{}").status_code == 204
        assert asked == ["rebind.test"]  # the check's lookup, and no other
        assert a.requests[0]["Host"] == f"rebind.test:{a.port}"
        with pytest.raises(
            egress.Refused, match=re.escape("169.254.169.254, a cloud metadata address")
        ):
            client.post(url, content=b"{}")
    assert len(asked) == 2 and len(a.requests) == 1
    assert {c[0] for c in connects} == {"127.0.0.1"}, connects


def test_redirects_are_not_followed(
    answering: Callable[..., Answering], tripwire: Tripwire
) -> None:
    a = answering(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    with egress.EgressClient(LOOPBACK) as client:
        r = client.post(a.url, content=b"{}")
    assert r.status_code == 302
    assert tripwire.hosts_connected() == {"127.0.0.1"}, tripwire.connects


def test_a_non_2xx_answer_body_never_reaches_viewers(
    api: httpx.Client,
    live_server: LiveServer,
    make_token: Callable[..., str],
    make_scheduler: Callable[..., Scheduler],
    answering: Callable[..., Answering],
) -> None:
    """Before: the first 300 characters of the answer were in the execution message, which
    viewers read (an SSRF read primitive). Now: status and size only."""
    leak = b"ADMIN-PANEL root:x:0:0 internal-secret " * 20
    a = answering(400, body=leak)
    api.post("/experiments", json={"name": "nightly"})
    sch = api.post(
        "/schedules",
        json={
            "name": "leaky",
            "experiment_id": "nightly",
            "cron": "@daily",
            "executor": {"type": "webhook", "url": a.url + "?token=abc", "secret": SECRET},
        },
    ).json()
    ex = api.post(f"/schedules/{sch['id']}/trigger").json()
    make_scheduler(FakeClock(datetime.fromisoformat(ex["scheduled_time"]))).tick()
    with httpx.Client(
        base_url=live_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {make_token('viewer')}"},
    ) as viewer:
        seen = viewer.get(f"/schedule-executions/{ex['id']}").json()
        listed = viewer.get(f"/schedules/{sch['id']}/executions").text
        page = httpx.get(f"{live_server.url}/schedules/{sch['id']}", headers=viewer.headers).text
    assert seen["status"] == "failed"
    assert seen["message"].endswith(f"POST {a.url} answered HTTP 400 ({len(leak)} bytes)")
    assert "token=abc" not in seen["message"]  # queries may carry credentials
    for text in (str(seen), listed, page):
        assert "answered HTTP 400" in text and "internal-secret" not in text


def test_webhook_answer_bodies_are_kept_bounded_for_admins_only(
    api: httpx.Client, db: Database, settings: Settings, answering: Callable[..., Answering]
) -> None:
    a = answering(500, body=b"x" * 10_000)
    hook = api.post("/webhooks", json={"url": a.url, "events": ["*"]}).json()
    d = api.post(f"/webhooks/{hook['id']}/test").json()
    assert d["last_error"] == "receiver answered HTTP 500 (10000 bytes)"
    with db.session(readonly=True) as s:
        (attempt,) = s.scalars(select(WebhookAttempt)).all()
        assert len(attempt.response_body or "") == 2000  # bounded; deliveries are admin-only

"""Server-side request forgery (issue 13, item 2): every address form an attacker could use to
reach the metadata service, loopback or the private network is refused with a 422 at creation
and update, for notification webhooks (admins) and webhook executors (editors), and nothing is
created or changed. No traffic reaches a refused address: the tripwire records every connect
of this process (the server runs in it) and metadata names are refused before any lookup."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import LiveServer
from tests.server.egress.conftest import Tripwire

ALLOW_ENV = "PODSTACK_OUTBOUND_ALLOW"
SECRET = "s" * 32

# (url, what the message must say)
REFUSED = [
    ("http://169.254.169.254/latest/meta-data/iam/", "169.254.169.254 is a cloud metadata address"),
    (
        "http://metadata.google.internal/computeMetadata/v1/",
        "'metadata.google.internal' is a cloud metadata service",
    ),
    ("http://metadata/computeMetadata/v1/", "'metadata' is a cloud metadata service"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is a cloud metadata address"),
    ("http://10.0.0.5/hook", "10.0.0.5 is a private address"),
    ("http://172.16.3.4/hook", "172.16.3.4 is a private address"),
    ("http://192.168.1.10:8080/hook", "192.168.1.10 is a private address"),
    ("http://127.0.0.1:8000/api/v1/users", "127.0.0.1 is a loopback address"),
    ("http://localhost:8000/hook", "'localhost' resolves to 127.0.0.1, a loopback address"),
    ("http://0.0.0.0:8000/hook", "0.0.0.0 is the unspecified address"),
    ("http://2130706433/hook", "'2130706433' resolves to 127.0.0.1, a loopback address"),
    ("http://0x7f.1/hook", "'0x7f.1' resolves to 127.0.0.1, a loopback address"),
    ("http://127.1/hook", "'127.1' resolves to 127.0.0.1, a loopback address"),
    ("http://[::1]:8000/hook", "::1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback address in IPv6 form"),
    ("http://[::ffff:169.254.169.254]/", "cloud metadata address in IPv6 form"),
    ("http://[fe80::1]/hook", "fe80::1 is a link-local address"),
    ("http://169.254.10.20/hook", "169.254.10.20 is a link-local address"),
    ("http://[fc00::7]/hook", "fc00::7 is a unique-local address"),
    ("http://100.64.1.1/hook", "shared (carrier-grade NAT) address"),
    ("http://224.0.0.251/hook", "224.0.0.251 is a multicast address"),
    ("https://user:pass@hooks.example.com/hook", "user name or password"),
    ("http://admin@127.0.0.1/hook", "user name or password"),
]
IDS = [u.split("//", 1)[1][:40] for u, _ in REFUSED]


def _assert_refused(r: httpx.Response, reason: str, field: str) -> None:
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "VALIDATION_ERROR"
    assert reason in err["message"] and "is refused" in err["message"], err["message"]
    assert err["details"]["field"] == field
    if "user name" in reason:  # its form is wrong: no allow-list makes it acceptable
        assert "without user name or password" in err["message"]
    else:  # where it goes: say how an admin could allow it
        assert ALLOW_ENV in err["message"] and err["details"]["setting"] == ALLOW_ENV


def _no_traffic(tripwire: Tripwire, server: LiveServer) -> None:
    # The only connections made: the test client to the server under test (recorded, so the
    # wire works).
    assert tripwire.connects
    assert tripwire.hosts_connected() <= {"127.0.0.1"}, tripwire.connects
    assert all(a[1] == server.port for a in tripwire.connects), tripwire.connects
    assert not any("metadata" in h for h in tripwire.lookups), tripwire.lookups


@pytest.mark.parametrize(("url", "reason"), REFUSED, ids=IDS)
def test_webhook_url_refused(
    strict_api: httpx.Client,
    strict_server: LiveServer,
    tripwire: Tripwire,
    url: str,
    reason: str,
) -> None:
    r = strict_api.post("/webhooks", json={"url": url, "events": ["*"], "secret": SECRET})
    _assert_refused(r, reason, "url")
    assert strict_api.get("/webhooks").json()["items"] == []
    _no_traffic(tripwire, strict_server)


@pytest.mark.parametrize(("url", "reason"), REFUSED, ids=IDS)
def test_webhook_executor_url_refused_for_editors(
    strict_server: LiveServer,
    strict_api: httpx.Client,
    make_token: Callable[..., str],
    tripwire: Tripwire,
    url: str,
    reason: str,
) -> None:
    assert strict_api.post("/experiments", json={"name": "nightly"}).status_code == 201
    with httpx.Client(
        base_url=strict_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {make_token('editor')}"},
    ) as editor:
        r = editor.post(
            "/schedules",
            json={
                "name": "ssrf",
                "experiment_id": "nightly",
                "cron": "@daily",
                "executor": {"type": "webhook", "url": url, "secret": SECRET},
            },
        )
        _assert_refused(r, reason, "executor.url")
        assert editor.get("/schedules").json()["items"] == []
    _no_traffic(tripwire, strict_server)


def test_updates_to_a_refused_url_change_nothing(
    strict_api: httpx.Client, strict_server: LiveServer, make_token, tripwire: Tripwire
) -> None:  # type: ignore[no-untyped-def]
    # A public-looking name that does not resolve here is accepted (every send checks again).
    hook = strict_api.post("/webhooks", json={"url": "https://hooks.example/podstack"}).json()
    strict_api.post("/experiments", json={"name": "nightly"})
    good = {"type": "webhook", "url": "https://ci.example/hook", "secret": SECRET}
    editor = httpx.Client(
        base_url=strict_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {make_token('editor')}"},
    )
    with editor:
        r = editor.post(
            "/schedules",
            json={
                "name": "nightly",
                "experiment_id": "nightly",
                "cron": "@daily",
                "executor": good,
            },
        )
        assert r.status_code == 201, r.text
        sch = r.json()
        for url, reason in REFUSED[:3] + REFUSED[7:9]:
            r = strict_api.patch(f"/webhooks/{hook['id']}", json={"url": url})
            _assert_refused(r, reason, "url")
            r = editor.patch(
                f"/schedules/{sch['id']}",
                json={"executor": {"type": "webhook", "url": url, "secret": "********"}},
            )
            _assert_refused(r, reason, "executor.url")
        assert strict_api.get(f"/webhooks/{hook['id']}").json()["url"] == hook["url"]
        after = editor.get(f"/schedules/{sch['id']}").json()
        assert after["executor"]["url"] == good["url"] and after["version"] == sch["version"]
    _no_traffic(tripwire, strict_server)

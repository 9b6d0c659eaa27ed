"""Browser sessions end when they should: on sign-out, password, role change and disabling
(per-user session generation), and after idle time. Each test replays a cookie saved before
the event, the way a stolen or forgotten cookie would come back."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from podstack.server.audit.models import AuditEvent
from podstack.server.auth import service as auth_service
from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import LiveServer

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
PASSWORD = "correct horse battery"


def _csrf(c: httpx.Client, path: str = "/models") -> str:
    match = CSRF.search(c.get(path).text)
    assert match, path
    return match.group(1)


def _sign_in(url: str, username: str = "alice", password: str = PASSWORD) -> httpx.Client:
    c = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    r = c.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": _csrf(c, "/login")},
    )
    assert r.status_code == 303, r.text[:300]
    return c


def _replay(url: str, cookie: str) -> httpx.Client:
    """A different client that only has the saved cookie."""
    return httpx.Client(
        base_url=url,
        follow_redirects=False,
        timeout=30,
        cookies={"podstack_session": cookie},
    )


def _signed_in(c: httpx.Client) -> bool:
    page = c.get("/models")
    api = c.get("/api/v1/me")
    assert (page.status_code == 200) == (api.status_code == 200), (page, api)
    if page.status_code == 200:
        return True
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert api.status_code == 401 and api.json()["error"]["code"] == "UNAUTHENTICATED"
    return False


@pytest.fixture
def alice(db: Database) -> str:
    with db.session() as s:
        auth_service.create_user(s, "test", "alice", role="editor", password=PASSWORD)
    return "alice"


@pytest.fixture
def session(live_server: LiveServer, alice: str) -> Iterator[tuple[httpx.Client, str]]:
    c = _sign_in(live_server.url)
    yield c, c.cookies["podstack_session"]
    c.close()


def test_a_cookie_saved_before_logout_is_refused_after(
    live_server: LiveServer, session: tuple[httpx.Client, str], db: Database
) -> None:
    c, saved = session
    assert _signed_in(c)
    r = c.post("/logout", data={"csrf_token": _csrf(c)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    with _replay(live_server.url, saved) as thief:
        assert not _signed_in(thief)
        # The refused cookie is dropped, not left in place.
        r = thief.get("/models")
        assert "podstack_session=null" in r.headers.get("set-cookie", "")
    with db.session(readonly=True) as s:
        assert "user.sign_out" in s.scalars(select(AuditEvent.action)).all()
    # Signing in again works, with a fresh cookie.
    again = _sign_in(live_server.url)
    assert _signed_in(again)
    again.close()


def test_logout_ends_all_of_the_users_sessions_but_not_other_users(
    live_server: LiveServer, session: tuple[httpx.Client, str], db: Database
) -> None:
    c, _ = session
    laptop = _sign_in(live_server.url)
    with db.session() as s:
        auth_service.create_user(s, "test", "bob", role="viewer", password=PASSWORD)
    bob = _sign_in(live_server.url, "bob")
    c.post("/logout", data={"csrf_token": _csrf(c)})
    assert not _signed_in(laptop)
    assert _signed_in(bob)
    laptop.close()
    bob.close()


def test_an_ended_cookie_cannot_sign_the_user_out_of_newer_sessions(
    live_server: LiveServer, session: tuple[httpx.Client, str]
) -> None:
    c, saved = session
    stale_csrf = _csrf(c)
    c.post("/logout", data={"csrf_token": stale_csrf})
    fresh = _sign_in(live_server.url)
    with _replay(live_server.url, saved) as thief:
        r = thief.post("/logout", data={"csrf_token": stale_csrf})
        assert r.status_code == 303
    assert _signed_in(fresh)
    fresh.close()


def test_a_cookie_saved_before_a_password_change_is_refused_after(
    live_server: LiveServer, session: tuple[httpx.Client, str], api: httpx.Client
) -> None:
    _, saved = session
    r = api.patch("/users/alice", json={"password": "a brand new secret"})
    assert r.status_code == 200, r.text
    with _replay(live_server.url, saved) as thief:
        assert not _signed_in(thief)
    new = _sign_in(live_server.url, password="a brand new secret")
    assert _signed_in(new)
    new.close()


def test_clearing_the_password_ends_sessions(
    live_server: LiveServer, session: tuple[httpx.Client, str], api: httpx.Client
) -> None:
    _, saved = session
    assert api.patch("/users/alice", json={"password": None}).status_code == 200
    with _replay(live_server.url, saved) as thief:
        assert not _signed_in(thief)


def test_a_cookie_saved_before_a_role_change_is_refused_after(
    live_server: LiveServer, session: tuple[httpx.Client, str], api: httpx.Client
) -> None:
    _, saved = session
    assert api.patch("/users/alice", json={"role": "viewer"}).json()["role"] == "viewer"
    with _replay(live_server.url, saved) as thief:
        assert not _signed_in(thief)


def test_a_cookie_saved_before_disabling_stays_refused_after_re_enabling(
    live_server: LiveServer, session: tuple[httpx.Client, str], api: httpx.Client
) -> None:
    _, saved = session
    assert api.patch("/users/alice", json={"disabled": True}).status_code == 200
    with _replay(live_server.url, saved) as thief:
        assert not _signed_in(thief)
    assert api.patch("/users/alice", json={"disabled": False}).status_code == 200
    with _replay(live_server.url, saved) as thief:
        assert not _signed_in(thief)


def test_profile_edits_do_not_end_sessions(
    session: tuple[httpx.Client, str], api: httpx.Client
) -> None:
    c, _ = session
    assert api.patch("/users/alice", json={"email": "alice@example.com"}).status_code == 200
    assert _signed_in(c)


@pytest.fixture
def short_idle_server(settings: Settings, db: Database, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(settings.model_copy(update={"session_idle_seconds": 2, "home": tmp_path}))
    server.start()
    yield server
    server.stop()


def test_sessions_expire_after_idle_time_and_activity_keeps_them(
    short_idle_server: LiveServer, alice: str
) -> None:
    c = _sign_in(short_idle_server.url)
    try:
        # Over 3 s of use (longer than the 2 s idle limit), a check every 0.3 s: never idle
        # for 2 s, even when a loaded machine takes a second to answer (a request a second
        # left no room for that).
        started = time.monotonic()
        while time.monotonic() - started < 3.2:
            assert _signed_in(c)
            last_use = time.monotonic()
            time.sleep(0.3)
        # Times are whole seconds (deps.check_session): idle for 2 s ends it within 3 s.
        time.sleep(max(0.0, last_use + 3.3 - time.monotonic()))
        assert not _signed_in(c)
    finally:
        c.close()


def test_idle_expiry_message_is_clear(short_idle_server: LiveServer, alice: str) -> None:
    c = _sign_in(short_idle_server.url)
    saved = c.cookies["podstack_session"]
    c.close()
    time.sleep(3.1)
    with _replay(short_idle_server.url, saved) as thief:
        body = thief.get("/api/v1/me").json()["error"]
    assert body["code"] == "UNAUTHENTICATED"
    assert "without activity" in body["message"] and "sign in again" in body["message"]


def test_the_last_seen_time_is_not_rewritten_on_every_request(
    session: tuple[httpx.Client, str],
) -> None:
    c, _ = session
    c.get("/models")
    # With the default 2 h idle time, ``seen`` is refreshed at most once a minute: a page view
    # right after sign-in does not re-issue the cookie.
    r = c.get("/api/v1/me")
    assert r.status_code == 200 and "set-cookie" not in r.headers


def test_sessions_end_at_their_absolute_lifetime_however_active(
    settings: Settings, db: Database, tmp_path: Path, alice: str
) -> None:
    """The cookie is re-issued as it is used (last-seen time, flashes), which renews its
    signature's age; the sign-in time inside it still caps the session. The idle limit is far
    away, so only the lifetime can end it. The checks are timed from the clock around the
    sign-in, not from fixed sleeps: on a loaded machine a request takes a while, and a fixed
    schedule ran past the lifetime while still asserting the session was alive."""
    lifetime = 5.0
    server = LiveServer(
        settings.model_copy(
            update={
                "session_max_age_seconds": int(lifetime),
                "session_idle_seconds": 600,
                "home": tmp_path,
            }
        )
    )
    server.start()
    try:
        before = time.monotonic()
        c = _sign_in(server.url)
        signed_in_by = time.monotonic()  # the session began between `before` and now
        uses = 0
        # Use it (each answer re-signs the cookie) while it surely lives: a check (two
        # requests) starts only with 1.5 s to spare before the earliest possible end.
        while time.monotonic() < before + lifetime - 1.5:
            assert _signed_in(c)
            uses += 1
            time.sleep(0.4)
        assert uses >= 2, "the machine was too slow to use the session twice in its lifetime"
        # Times are whole seconds (deps.check_session): the session ends between `lifetime`
        # and `lifetime` + 1 s after the sign-in.
        time.sleep(max(0.0, signed_in_by + lifetime + 1.3 - time.monotonic()))
        assert not _signed_in(c)
        c.close()
    finally:
        server.stop()

"""The web UI over plain HTTP: sessions, CSRF, redirects, escaping, headers and the model
list at 10,000 models. (Flows in a real browser are in tests/browser/.)"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from podstack.server.app import create_app
from podstack.server.config import Settings
from podstack.server.db.base import utcnow
from podstack.server.db.session import Database
from podstack.server.registry.models import ModelLabel, RegisteredModel
from podstack.server.web.core import safe_next
from tests.conftest import LiveServer, signed_in

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture
def web(live_server: LiveServer, db: Database) -> Iterator[httpx.Client]:
    c = signed_in(live_server.url)
    yield c
    c.close()


def _csrf(c: httpx.Client, path: str = "/models") -> str:
    return CSRF.search(c.get(path).text).group(1)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/models/x?y=1", "/models/x?y=1"),
        ("", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        ("models", "/"),
    ],
)
def test_safe_next_only_allows_same_site_paths(target: str, expected: str) -> None:
    assert safe_next(target) == expected


def test_pages_redirect_to_login_with_next(live_server: LiveServer, db: Database) -> None:
    r = httpx.get(live_server.url + "/models/abc?tab=x", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fmodels%2Fabc%3Ftab%3Dx"
    # htmx calls get a client-side redirect instead of an HTML page swapped into a fragment.
    r = httpx.get(
        live_server.url + "/models", headers={"HX-Request": "true"}, follow_redirects=False
    )
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/login")


def test_failed_login_is_refused_and_says_why(live_server: LiveServer, db: Database) -> None:
    with httpx.Client(base_url=live_server.url) as c:
        token = _csrf(c, "/login")
        r = c.post("/login", data={"username": "admin", "password": "nope", "csrf_token": token})
        assert r.status_code == 401
        assert "Wrong username or password." in r.text
        assert c.get("/models", follow_redirects=False).status_code == 303


def test_state_changes_require_the_session_csrf_token(web: httpx.Client, api: httpx.Client) -> None:
    for headers, data in (
        ({}, {"name": "m1"}),
        ({}, {"name": "m1", "csrf_token": "wrong"}),
        ({"X-CSRF-Token": "wrong"}, {"name": "m1"}),
    ):
        r = web.post("/models", data=data, headers=headers)
        assert r.status_code == 403
        assert "security token is missing or out of date" in r.text
    assert api.get("/registered-models").json()["items"] == []
    good = web.post("/models", data={"name": "m1", "csrf_token": _csrf(web)})
    assert good.status_code == 303 and good.headers["location"] == "/models/m1"
    # A token from another session does not work either.
    other = signed_in(str(web.base_url))
    r = other.post("/models", data={"name": "m2", "csrf_token": _csrf(web)})
    assert r.status_code == 403
    other.close()


def test_logout_needs_csrf_and_ends_the_session(web: httpx.Client) -> None:
    assert web.post("/logout").status_code == 403
    assert web.get("/models").status_code == 200
    r = web.post("/logout", data={"csrf_token": _csrf(web)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert web.get("/models").status_code == 303


def test_user_text_is_escaped(web: httpx.Client, api: httpx.Client) -> None:
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    assert (
        api.post("/registered-models", json={"name": "m", "description": evil}).status_code == 201
    )
    for path in ("/models", "/models/m"):
        html = web.get(path).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<img src=x" not in html and "<script>alert" not in html


def test_pages_carry_no_inline_scripts_and_security_headers(
    web: httpx.Client, api: httpx.Client
) -> None:
    api.post("/registered-models", json={"name": "m"})
    r = web.get("/models/m")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    for tag in re.findall(r"<script\b[^>]*>", r.text):
        # Only external files or inert JSON data blocks: CSP forbids inline code.
        assert "src=" in tag or 'type="application/json"' in tag, tag


def test_unknown_pages_are_html_404_but_api_stays_json(web: httpx.Client) -> None:
    r = web.get("/no/such/page")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    r = web.get("/api/v1/no-such-endpoint")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = web.get("/models/does-not-exist")
    assert r.status_code == 404 and "does not exist" in r.text


def test_session_cookie_secure_flag_follows_settings(settings: Settings, db: Database) -> None:
    with warnings.catch_warnings():
        # Starlette's TestClient warns about its httpx backend; it is still the simplest way
        # to run an app with its own settings in-process.
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    for secure in (False, True):
        app = create_app(settings.model_copy(update={"secure_cookies": secure}))
        with TestClient(app, base_url="https://testserver") as c:
            r = c.get("/login")
            cookie = r.headers["set-cookie"]
            assert cookie.startswith("podstack_session=")
            assert ("secure" in cookie.lower()) is secure
            assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()


def test_viewer_post_is_refused(live_server: LiveServer, make_token: Any, db: Database) -> None:
    from podstack.server.auth import service as auth_service

    with db.session() as s:
        auth_service.create_user(s, "test", "vera", role="viewer", password="vera-password")
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as c:
        token = _csrf(c, "/login")
        c.post(
            "/login", data={"username": "vera", "password": "vera-password", "csrf_token": token}
        )
        page = c.get("/models")
        assert page.status_code == 200 and "Register Model" not in page.text
        r = c.post("/models", data={"name": "x", "csrf_token": _csrf(c)})
        assert r.status_code == 403 and "needs the editor role" in r.text


def test_model_list_renders_10000_models_paginated(web: httpx.Client, db: Database) -> None:
    now = utcnow()
    with db.session() as s:
        s.add_all(
            RegisteredModel(
                name=f"model-{i:05d}",
                description=f"Model number {i}",
                created_by="bench",
                created_at=now,
                updated_at=now,
                next_version=1,
            )
            for i in range(10_000)
        )
        s.flush()
        ms = s.query(RegisteredModel).filter(RegisteredModel.name.like("model-0%"))
        s.add_all(
            ModelLabel(model_id=m.id, model_name=m.name, label="even" if m.id % 2 == 0 else "odd")
            for m in ms
        )
    t0 = time.perf_counter()
    r = web.get("/models")
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200
    names = re.findall(r'data-model="([^"]+)"', r.text)
    assert names == [f"model-{i:05d}" for i in range(50)]
    assert elapsed < 5, f"/models took {elapsed:.2f}s with 10,000 models"
    nxt = re.search(r'href="(/models\?page_token=[^"]+)" rel="next"', r.text)
    assert nxt is not None
    r2 = web.get(nxt.group(1).replace("&amp;", "&"))
    assert re.findall(r'data-model="([^"]+)"', r2.text)[0] == "model-00050"
    r3 = web.get("/models", params={"q": "number 9999"})
    assert re.findall(r'data-model="([^"]+)"', r3.text) == ["model-09999"]
    r4 = web.get("/models", params={"label": "even"})
    assert len(re.findall(r'data-model="([^"]+)"', r4.text)) == 50


def test_htmx_gets_fragments_but_history_restore_gets_the_page(
    web: httpx.Client, api: httpx.Client
) -> None:
    api.post("/registered-models", json={"name": "m"})
    fragment = web.get("/models", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert 'data-model="m"' in fragment.text
    assert "HX-Request" in fragment.headers["vary"]
    restore = web.get(
        "/models", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in restore.text and 'data-model="m"' in restore.text


def test_sign_in_with_a_revoked_token_says_so(
    live_server: LiveServer, make_token: Any, api: httpx.Client
) -> None:
    value = make_token("editor")
    mine = httpx.get(
        live_server.url + "/api/v1/tokens", headers={"Authorization": f"Bearer {value}"}
    ).json()["items"][0]
    assert api.delete(f"/tokens/{mine['id']}").status_code == 200
    with httpx.Client(base_url=live_server.url) as c:
        r = c.post("/login", data={"password": value, "csrf_token": _csrf(c, "/login")})
        assert r.status_code == 401
        assert "This API token has been revoked." in r.text

"""Health, readiness, metrics and the API docs over a real socket."""

from __future__ import annotations

import httpx

from podstack.server.db.session import Database
from tests.conftest import LiveServer


def test_health_ready_and_metrics(live_server: LiveServer, api: httpx.Client) -> None:
    with httpx.Client(base_url=live_server.url) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}
        api.get("/experiments")
        text = c.get("/metrics").text
    assert (
        'podstack_http_requests_total{method="GET",route="/api/v1/experiments",status="200"}'
        in text
    )
    assert "podstack_http_request_duration_seconds_bucket" in text


def test_openapi_and_docs_are_self_hosted(live_server: LiveServer) -> None:
    # The first /openapi.json builds the schema of every route (seconds of CPU on a busy
    # machine); httpx's default 5 s timeout is for requests, not for that one-time build.
    with httpx.Client(base_url=live_server.url, timeout=60) as c:
        spec = c.get("/api/v1/openapi.json").json()
        assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
        assert "/api/v1/runs" in spec["paths"]
        html = c.get("/api/v1/docs").text
        assert "/api/v1/docs/static/swagger-ui-bundle.js" in html
        assert "cdn" not in html.lower() and "<script>" not in html  # CSP: no inline script
        js = c.get("/api/v1/docs/static/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 100_000
        assert "frame-ancestors 'none'" in js.headers["content-security-policy"]


def test_unknown_endpoint_is_json_404(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url) as c:
        r = c.get("/api/v1/definitely-not-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


def test_session_cookie_api_writes_need_csrf_header(live_server: LiveServer, db: Database) -> None:
    """A signed-in browser's cookie alone cannot change data through the JSON API."""
    from podstack.server.auth import service as auth_service

    with db.session() as s:
        auth_service.create_user(s, "test", "bob", role="editor", password="correct-horse-1")
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as c:
        page = c.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = c.post(
            "/login", data={"username": "bob", "password": "correct-horse-1", "csrf_token": token}
        )
        assert r.status_code in (302, 303), r.text
        assert c.get("/api/v1/me").json()["username"] == "bob"  # reads work with the cookie
        r = c.post("/api/v1/experiments", json={"name": "via-cookie"})
        assert r.status_code == 403 and r.json()["error"]["details"]["reason"] == "csrf"
        # Pages expose the token to same-origin scripts (htmx); with it the write goes through.
        page = c.get("/experiments").text
        csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        r = c.post(
            "/api/v1/experiments", json={"name": "via-cookie"}, headers={"X-CSRF-Token": csrf}
        )
        assert r.status_code == 201, r.text


def test_revoking_the_pasted_token_ends_the_ui_session(
    live_server: LiveServer, db: Database
) -> None:
    from podstack.server.auth import service as auth_service

    with db.session() as s:
        auth_service.create_user(s, "test", "tina", role="viewer")
        issued = auth_service.create_token(s, "test", "tina", "browser")
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as c:
        page = c.get("/login")
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = c.post("/login", data={"username": "", "password": issued.value, "csrf_token": csrf})
        assert r.status_code == 303, r.text
        assert c.get("/api/v1/me").json()["username"] == "tina"
        with db.session() as s:
            auth_service.revoke_token(s, auth_service.Principal("admin", "admin"), issued.token.id)
        r = c.get("/api/v1/me")
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
        assert c.get("/experiments").status_code in (302, 303)  # UI sends them to sign in

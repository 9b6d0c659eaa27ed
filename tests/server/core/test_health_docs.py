"""Health, readiness, metrics and the API docs over a real socket."""

from __future__ import annotations

import httpx

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
    with httpx.Client(base_url=live_server.url) as c:
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

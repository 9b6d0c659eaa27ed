"""`podstack server` warms the app up at start (server/app.py ``_warm_up``): the one-time route
and mapper building happens before the first request, and must never fail silently or stop
the server from starting."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from podstack.server.app import create_app
from podstack.server.config import Settings


def test_warm_up_builds_every_router_without_errors(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)
    app.state.warm_up = True
    # FastAPI still exposes what the warm-up relies on (else it silently does nothing).
    assert any(hasattr(r, "effective_route_contexts") for r in app.router.routes), (
        "no included routers found: update _warm_up for this FastAPI version"
    )
    with caplog.at_level(logging.DEBUG, logger="podstack.server"), TestClient(app) as c:
        assert c.get("/api/v1/me").status_code == 401
    assert not [r for r in caplog.records if "warm-up" in r.getMessage()]

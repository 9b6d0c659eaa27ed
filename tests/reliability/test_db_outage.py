"""PostgreSQL going away under a live server: 503 with the error JSON (never a 500 with a
traceback), and recovery without restarting the server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def proxied_server(
    settings: Settings, db: Database, tmp_path: Path
) -> Iterator[tuple[LiveServer, TcpProxy]]:
    proxy = TcpProxy("127.0.0.1", 5432)
    url = settings.database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    server = LiveServer(settings.model_copy(update={"database_url": url, "home": tmp_path}))
    server.start()
    yield server, proxy
    proxy.restore()
    server.stop()
    proxy.close()


def test_outage_gives_503_then_recovers(proxied_server: tuple[LiveServer, TcpProxy]) -> None:
    server, proxy = proxied_server
    with httpx.Client(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as c:
        assert c.post("/api/v1/experiments", json={"name": "before"}).status_code == 201
        proxy.cut()
        for _ in range(3):
            r = c.get("/api/v1/experiments")
            assert r.status_code == 503, r.text
            err = r.json()["error"]
            assert err["code"] == "SERVICE_UNAVAILABLE"
            assert "Traceback" not in r.text
            assert r.headers.get("retry-after")
        r = c.get("/readyz")
        assert r.status_code == 503
        proxy.restore()
        deadline = time.monotonic() + 20
        while True:
            r = c.get("/api/v1/experiments")
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r.status_code == 200, r.text
        assert [e["name"] for e in r.json()["items"]] == ["before"]
        assert c.post("/api/v1/experiments", json={"name": "after"}).status_code == 201
        assert c.get("/readyz").status_code == 200

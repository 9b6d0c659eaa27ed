"""A server with the egress rules at their defaults (no PODSTACK_OUTBOUND_ALLOW), and a
tripwire that records every outbound connect and name lookup of this process, so tests can
prove that a refused address was never contacted (nor, for metadata names, even looked up)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.server.notifications.receivers import webhook_receiver  # noqa: F401
from tests.server.schedules.conftest import make_scheduler  # noqa: F401


@pytest.fixture(scope="module")
def strict_server(settings: Settings, db: Database) -> Iterator[LiveServer]:
    # The suite's settings allow loopback (for its own receivers); this server does not.
    server = LiveServer(settings.model_copy(update={"outbound_allow": ""}))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def strict_api(strict_server: LiveServer, db: Database) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=strict_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    ) as c:
        yield c


class Tripwire:
    """Instrumentation, not a mock: the real calls go through, and are recorded."""

    def __init__(self) -> None:
        self.connects: list[Any] = []
        self.lookups: list[str] = []

    def hosts_connected(self) -> set[str]:
        return {str(a[0]) for a in self.connects if isinstance(a, tuple)}


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Tripwire:
    wire = Tripwire()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        wire.connects.append(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        wire.connects.append(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        wire.lookups.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return wire

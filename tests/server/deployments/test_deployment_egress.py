"""The deployments' own HTTP (prediction proxy, model-server probes) goes through the egress
gate (DESIGN.md, "Outbound requests"): a KServe URL at a refused address is refused with a
clear error and never contacted, loopback is not allowed in general, and the only exemption
is the exact host:port of a model server this server started, so local deployments keep
working with the rules at their defaults.

The Kubernetes API is not involved: a KServe runtime's URL is what its InferenceService
reported (``runtime["url"]``), routed as the manager routes it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from podstack import MLOpsClient
from podstack.server.artifacts.store import BlobStore
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.deployments import gateway, outbound, target_kinds
from podstack.server.deployments import targets as tg
from podstack.server.deployments.manager import DeploymentManager
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.server.egress.conftest import Tripwire, tripwire  # noqa: F401

from .conftest import X_TRAIN, Y_TRAIN, log_and_register, make_sk_model


class _Answering(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = b'{"model_name": "x", "outputs": []}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[int]:
    """A loopback HTTP server standing in for a reachable model server; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _manager(settings: Settings, db: Database, tmp_path: Path, allow: str) -> DeploymentManager:
    strict = settings.model_copy(update={"outbound_allow": allow})
    return DeploymentManager(db, strict, BlobStore(tmp_path / "store"))


def _route_kserve(mgr: DeploymentManager, name: str, url: str) -> None:
    """Routes ``name`` as the manager does once KServe reported the InferenceService ``url``."""
    k8s = target_kinds.build("cluster", tg.KUBERNETES, {}, mgr.settings, mgr.store)
    mgr._set_route(name, k8s, {"kind": tg.KUBERNETES, "name": name, "url": url})


def _infer(mgr: DeploymentManager, name: str) -> gateway.Forwarded:
    return gateway.forward(mgr, name, "POST", f"/models/{name}/infer", b'{"inputs": []}')


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://10.1.2.3:8080", "host 10.1.2.3 is a private address"),
        ("http://169.254.169.254", "a cloud metadata address"),
        ("http://localhost:{port}", "resolves to 127.0.0.1, a loopback address"),
        ("http://127.0.0.1:{port}", "host 127.0.0.1 is a loopback address"),
    ],
)
def test_kserve_url_at_a_refused_address_is_refused_without_connecting(
    settings: Settings,
    db: Database,
    tmp_path: Path,
    tripwire: Tripwire,  # noqa: F811
    receiver: int,
    url: str,
    problem: str,
) -> None:
    mgr = _manager(settings, db, tmp_path, allow="")
    try:
        target_url = url.format(port=receiver)
        _route_kserve(mgr, "sentiment-api", target_url)
        res = _infer(mgr, "sentiment-api")
        assert res.status == 502
        message = res.body.decode()
        assert "The endpoint URL of deployment 'sentiment-api'" in message
        assert problem in message and "PODSTACK_OUTBOUND_ALLOW" in message
        host = httpx.URL(target_url).host
        ip = "127.0.0.1" if host == "localhost" else host
        assert (ip, httpx.URL(target_url).port or 80) not in tripwire.connects
        assert ip not in tripwire.hosts_connected()
    finally:
        mgr.close()


def test_kserve_url_passes_when_the_admin_allows_it(
    settings: Settings, db: Database, tmp_path: Path, receiver: int
) -> None:
    # A cluster on a private network: the admin lists it (here, loopback stands in for it).
    mgr = _manager(settings, db, tmp_path, allow="127.0.0.1/32")
    try:
        _route_kserve(mgr, "sentiment-api", f"http://127.0.0.1:{receiver}")
        res = _infer(mgr, "sentiment-api")
        assert res.status == 200, res.body
    finally:
        mgr.close()


def test_the_exemption_is_exactly_a_started_childs_address(
    settings: Settings, db: Database, tmp_path: Path, receiver: int
) -> None:
    mgr = _manager(settings, db, tmp_path, allow="")
    try:
        url = f"http://127.0.0.1:{receiver}"
        _route_kserve(mgr, "child", url)
        assert _infer(mgr, "child").status == 502
        outbound.register_child(receiver, "inst-test")
        try:
            assert _infer(mgr, "child").status == 200
            # Not the port next to it, nor the same address by host name.
            for other in (f"http://127.0.0.1:{receiver + 1}", f"http://localhost:{receiver}"):
                _route_kserve(mgr, "other", other)
                assert _infer(mgr, "other").status == 502
        finally:
            outbound.forget_child(receiver, "inst-test")
        assert _infer(mgr, "child").status == 502
    finally:
        mgr.close()


@pytest.fixture
def strict_sdk(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MLOpsClient]:
    """A server with the egress rules at their defaults (the suite's allow loopback)."""
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    server = LiveServer(settings.model_copy(update={"outbound_allow": ""}))
    server.start()
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=server.url)
    yield c
    c.close()
    server.stop()


def test_local_deployment_serves_with_default_egress_rules(strict_sdk: MLOpsClient) -> None:
    log_and_register(strict_sdk, "churn", make_sk_model())
    dep = strict_sdk.deploy_model("churn", version=1, endpoint_name="churn-api")
    assert dep.status == "ready"
    # Through the gateway, which calls the model server on loopback: its own child.
    assert "/api/v1/endpoints/churn-api" in (dep.endpoint_url or "")
    out = strict_sdk.predict("churn-api", X_TRAIN[:4]).as_dict()
    assert out["label"].tolist() == Y_TRAIN[:4].tolist()
    health = strict_sdk.get_deployment("churn-api").health
    assert health is not None and health.ok

"""Forwarding Open Inference Protocol requests to whatever serves a deployment right now.

The endpoint URL users get stays the same across rollouts; the manager's route moves to the
new server only once it is ready, and requests in flight on the old one finish before it is
stopped. A request that could not reach a server (connection refused or closed before any
response, as when a server has just been stopped) is retried once on the fresh route:
inference has no side effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from podstack.server import egress
from podstack.server.deployments import outbound
from podstack.server.deployments.manager import DeploymentManager

# Passed through both ways: the binary tensor data extension's JSON header length.
HEADER_LENGTH = "inference-header-content-length"


@dataclass
class Forwarded:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def v2_error(message: str, status: int) -> Forwarded:
    import json

    return Forwarded(status, json.dumps({"error": message}).encode(), "application/json")


def forward(
    mgr: DeploymentManager,
    name: str,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str] | None = None,
) -> Forwarded:
    """``path`` is below ``/v2`` (e.g. ``/models/<name>/infer``)."""
    for attempt in (0, 1):
        route = mgr.route(name, fresh=attempt > 0)
        if route is None:
            return v2_error(
                f"Deployment {name!r} is not serving (no ready server); check its status with "
                f"GET /api/v1/deployments/{name}.",
                503,
            )
        with mgr.track(route.key):
            try:
                # Through the egress gate: a KServe URL must pass it (or be allowed by
                # PODSTACK_OUTBOUND_ALLOW); a local model server passes as this server's child.
                resp = mgr.http.request(
                    method,
                    f"{route.base_url.rstrip('/')}/v2{path}",
                    content=body,
                    headers={"content-type": "application/json", **(headers or {})}
                    if body
                    else None,
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if attempt == 0:
                    continue
                return v2_error(f"Deployment {name!r} is unreachable: {type(exc).__name__}.", 503)
            except httpx.TimeoutException:
                return v2_error(f"Deployment {name!r} did not answer in time.", 504)
            except egress.Refused as exc:
                # Nothing was sent. 502: the gateway will not call what serves it.
                return v2_error(
                    outbound.refused_message(
                        f"The endpoint URL of deployment {name!r}", route.base_url, exc
                    ),
                    502,
                )
        extra = (
            {HEADER_LENGTH: resp.headers[HEADER_LENGTH]} if HEADER_LENGTH in resp.headers else {}
        )
        return Forwarded(
            resp.status_code,
            resp.content,
            resp.headers.get("content-type", "application/json"),
            extra,
        )
    return v2_error(f"Deployment {name!r} is unreachable.", 503)  # pragma: no cover

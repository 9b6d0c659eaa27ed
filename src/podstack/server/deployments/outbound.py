"""Every HTTP request the deployments code makes (the prediction proxy, a local model server's
readiness and health probes) goes through the egress gate (``server/egress.py``), as every
server-initiated request does: a KServe ``InferenceService`` URL is checked like a webhook's
(cluster addresses are usually private, so an admin lists them in ``PODSTACK_OUTBOUND_ALLOW``),
and the connection goes to the checked address.

One narrow exemption: the loopback ``127.0.0.1:<port>`` of a model server *this server
started* (``register_child`` when it spawns the process; again when it re-attaches to one
whose process still carries the instance id it was started with). Not loopback in general:
any other port on loopback is refused unless the allow-list lists it.
"""

from __future__ import annotations

import threading

import httpx

from podstack.server import egress
from podstack.server.config import Settings

LOOPBACK = "127.0.0.1"
# (address, port) -> instance id of the model server there.
_CHILDREN: dict[tuple[str, int], str] = {}
_LOCK = threading.Lock()
_SHARED: dict[str, egress.EgressClient] = {}


def register_child(port: int, instance: str) -> None:
    with _LOCK:
        _CHILDREN[(LOOPBACK, int(port))] = instance


def forget_child(port: int, instance: str | None = None) -> None:
    with _LOCK:
        key = (LOOPBACK, int(port))
        if instance is None or _CHILDREN.get(key) == instance:
            _CHILDREN.pop(key, None)


def is_own_child(host: str, port: int) -> bool:
    """The exemption: exactly the address and port of a model server this server started."""
    with _LOCK:
        return (host, int(port)) in _CHILDREN


def new_client(settings: Settings, timeout: float | httpx.Timeout) -> egress.EgressClient:
    """A pooled client of its own (the manager's, for predictions; it closes it)."""
    return egress.EgressClient(egress.allow_list(settings), timeout=timeout, exempt=is_own_child)


def shared(settings: Settings) -> egress.EgressClient:
    """A pooled client per allow-list for probes, kept for the life of the process (targets
    are built per use; a client each would open a connection per probe)."""
    value = settings.outbound_allow or ""
    with _LOCK:
        client = _SHARED.get(value)
        if client is None:
            client = new_client(settings, httpx.Timeout(10.0, connect=5.0))
            _SHARED[value] = client
        return client


def refused_message(what: str, url: str, exc: egress.Refused) -> str:
    if exc.unresolved:
        return f"{what} {egress.display_url(url)!r} is not called: {exc.reason}."
    return egress.refusal_message(what, url, exc.reason, address=exc.address)

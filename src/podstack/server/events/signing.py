"""HMAC-SHA256 signatures for outgoing webhooks (notification webhooks and the schedule
webhook executor share this, so receivers verify both the same way).

Signed string: ``f"{id}.{timestamp}.{body}"``. Headers:
``Podstack-Webhook-Id``, ``Podstack-Webhook-Timestamp`` (unix seconds),
``Podstack-Signature: v1=<hex>``. Receivers should reject timestamps older than 5 minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import time

ID_HEADER = "Podstack-Webhook-Id"
TIMESTAMP_HEADER = "Podstack-Webhook-Timestamp"
SIGNATURE_HEADER = "Podstack-Signature"
TOLERANCE_SECONDS = 300


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign_headers(
    secret: str, msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: signature(secret, msg_id, ts, body),
    }


def verify(secret: str, headers: dict[str, str], body: bytes, now: int | None = None) -> bool:
    """Receiver-side check (used by tests and shown in the README)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower[ID_HEADER.lower()]
        ts = int(lower[TIMESTAMP_HEADER.lower()])
        sig = lower[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError):
        return False
    if abs((now or int(time.time())) - ts) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(sig, signature(secret, msg_id, ts, body))

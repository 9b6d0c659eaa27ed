"""MLflow's page tokens: opaque to the client, an offset here (as MLflow's own server does).

Searches in MLflow's API take several order_by keys at once, which a keyset over one key cannot
follow; an offset can, at the price of a page moving when rows are inserted between requests
(MLflow's behaviour too)."""

from __future__ import annotations

import base64
import json

from podstack.server.mlflow_compat.errors import invalid


def offset_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def read_offset(token: str | None) -> int:
    """The offset a ``next_page_token`` stands for (0 without one); INVALID_PARAMETER_VALUE
    for anything that is not a token we issued."""
    if not token:
        return 0
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(doc["offset"])
    except (ValueError, KeyError, TypeError):
        offset = -1
    if offset < 0:
        raise invalid("Invalid page_token: pass the next_page_token of a previous answer.")
    return offset

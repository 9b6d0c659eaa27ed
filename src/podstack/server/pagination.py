"""Keyset pagination: ``limit`` + opaque ``page_token`` -> ``next_page_token``.

The token is the URL-safe base64 of the JSON sort key of the last row returned; the next
page is "rows strictly after that key", so inserts and deletes never make pages skip or
repeat rows (unlike OFFSET). Callers fetch ``limit + 1`` rows to know whether a next page
exists.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from podstack.errors import BadRequest

T = TypeVar("T")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def encode_token(key: list[Any]) -> str:
    raw = json.dumps(key, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None, expected_len: int) -> list[Any] | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Invalid page_token.", {"page_token": token[:200]})
    if not isinstance(key, list) or len(key) != expected_len:
        raise BadRequest("Invalid page_token.", {"page_token": token[:200]})
    return key


def clamp_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 1 or limit > MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}.", {"limit": limit})
    return limit


def page_of(rows: Sequence[T], limit: int, key_of: Any) -> tuple[list[T], str | None]:
    """Splits the limit+1 rows into the page and the token for the next one."""
    items = list(rows[:limit])
    token = encode_token(key_of(items[-1])) if len(rows) > limit and items else None
    return items, token

"""The API's error envelope, checked the same way by every test."""

from __future__ import annotations

import httpx


def api_error(r: httpx.Response, status: int, code: str) -> dict:
    """Asserts ``r`` is the error ``{"error": {code, message, details}}`` with this status and
    code and a non-empty message; returns the error object."""
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code
    assert body["message"]
    return body

"""What the sign-in form says when it refuses: the message fits what the user typed."""

from __future__ import annotations

import html

import httpx

from tests.conftest import LiveServer
from tests.server.auth.test_sign_in_hardening import _attempt


def test_a_wrong_token_without_username_is_called_an_invalid_token(
    live_server: LiveServer,
) -> None:
    with httpx.Client(base_url=live_server.url, timeout=30) as c:
        status, message = _attempt(c, "", "pst_not-a-real-token")
        message = html.unescape(message)
        assert status == 401
        assert "API token is not valid" in message, message
        assert "Enter your username and password" not in message
        # Both fields empty: the user is asked for what is missing.
        status, message = _attempt(c, "", "")
        assert status == 401
        assert "Enter your username and password" in html.unescape(message)
        # Nobody was signed in by either attempt.
        assert c.get("/models", follow_redirects=False).status_code == 303

"""Real receivers (webhook HTTP server, SMTP server) as fixtures for these tests."""

from tests.server.notifications.receivers import smtp_server, webhook_receiver  # noqa: F401

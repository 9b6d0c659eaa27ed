"""SDK methods for the tracking capability."""

from __future__ import annotations

from podstack.client.base import BaseClient


class TrackingAPI(BaseClient):
    pass

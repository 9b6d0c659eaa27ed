"""SDK methods for the admin capability."""

from __future__ import annotations

from podstack.client.base import BaseClient


class AdminAPI(BaseClient):
    pass

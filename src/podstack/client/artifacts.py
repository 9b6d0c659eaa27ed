"""SDK methods for the artifacts capability."""

from __future__ import annotations

from podstack.client.base import BaseClient


class ArtifactsAPI(BaseClient):
    pass

"""Podstack MLOps: model registry, experiment tracking, approvals, schedules, deployments.

The public SDK surface::

    from podstack import MLOpsClient
    client = MLOpsClient(api_token="...")   # or no arguments for the embedded local store
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from podstack import errors
from podstack.errors import PodstackError

if TYPE_CHECKING:
    from podstack.client.client import MLOpsClient

__all__ = ["MLOpsClient", "PodstackError", "__version__", "errors"]


def __getattr__(name: str) -> Any:
    # The SDK (httpx, every capability mixin: ~0.5 s of imports) loads on first use, so that
    # processes importing only part of the package (the model server, the server's workers)
    # do not pay for it.
    if name == "MLOpsClient":
        from podstack.client.client import MLOpsClient

        return MLOpsClient
    raise AttributeError(f"module 'podstack' has no attribute {name!r}")

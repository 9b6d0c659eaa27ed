"""Podstack MLOps: model registry, experiment tracking, approvals, schedules, deployments.

The public SDK surface::

    from podstack import MLOpsClient
    client = MLOpsClient(api_token="...")   # or no arguments for the embedded local store
"""

from __future__ import annotations

__version__ = "0.1.0"

from podstack import errors
from podstack.client.client import MLOpsClient
from podstack.errors import PodstackError

__all__ = ["MLOpsClient", "PodstackError", "__version__", "errors"]

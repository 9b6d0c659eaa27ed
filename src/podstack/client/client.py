"""``MLOpsClient``: the one SDK entry point, composed of one mixin per capability."""

from __future__ import annotations

from podstack.client.admin import AdminAPI
from podstack.client.approvals import ApprovalsAPI
from podstack.client.artifacts import ArtifactsAPI
from podstack.client.base import BaseClient
from podstack.client.deployments import DeploymentsAPI
from podstack.client.notifications import NotificationsAPI
from podstack.client.permissions import PermissionsAPI
from podstack.client.protections import ProtectionsAPI
from podstack.client.provenance import ProvenanceAPI
from podstack.client.registry import RegistryAPI
from podstack.client.schedules import SchedulesAPI
from podstack.client.tracking import TrackingAPI


class MLOpsClient(
    TrackingAPI,
    ArtifactsAPI,
    ApprovalsAPI,
    ProvenanceAPI,
    RegistryAPI,
    ProtectionsAPI,
    DeploymentsAPI,
    NotificationsAPI,
    SchedulesAPI,
    AdminAPI,
    PermissionsAPI,
    BaseClient,
):
    """Client for Podstack MLOps.

    ``MLOpsClient(api_token=None, url=None)``: ``url`` falls back to ``PODSTACK_URL`` and
    ``api_token`` to ``PODSTACK_API_TOKEN``. With no URL at all the client is *embedded*: the
    same server code runs in this process on the local store in ``PODSTACK_HOME``
    (default ``~/.podstack``).
    """

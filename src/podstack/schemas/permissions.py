"""Permissions on registered models and experiments: the wire shapes.

``GET .../permissions`` answers a ``ResourcePermissions``; ``PUT
.../permissions/{grantee_type}/{grantee}`` takes a ``GrantIn`` and answers the ``Grant``.
``GET /registered-models/{name}/protections`` answers ``ModelProtections``; ``PUT
.../protections/aliases/{alias}`` (or ``/stages/{stage}``) takes a ``ProtectionIn`` and answers
the ``Protection``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from podstack.schemas.common import Input, Schema

PermissionLevel = Literal["READ", "EDIT", "MANAGE"]
DefaultPermission = Literal["NONE", "READ", "EDIT", "MANAGE"]
GranteeType = Literal["user", "group"]


class GrantIn(Input):
    permission: PermissionLevel


class Grant(Schema):
    grantee_type: GranteeType
    grantee: str
    permission: PermissionLevel
    granted_by: str
    granted_at: datetime


class ResourcePermissions(Schema):
    # The resource's creator: holds MANAGE without a grant.
    owner: str | None
    # What everyone else holds without a grant (PODSTACK_DEFAULT_PERMISSION).
    default_permission: DefaultPermission
    grants: list[Grant]


class ProtectionIn(Input):
    # A reviewer or directory group whose members may move the alias/stage besides MANAGE
    # holders; null: MANAGE holders only.
    group: str | None = None


class Protection(Schema):
    name: str
    group: str | None


class ModelProtections(Schema):
    aliases: list[Protection]
    stages: list[Protection]

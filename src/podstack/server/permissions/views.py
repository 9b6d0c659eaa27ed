"""Grant and protection rows -> wire responses."""

from __future__ import annotations

from podstack.schemas import permissions as sch
from podstack.server.permissions.models import ModelProtection, ResourceGrant
from podstack.server.permissions.protections import Protections
from podstack.server.permissions.service import Permissions


def grant_view(g: ResourceGrant) -> sch.Grant:
    return sch.Grant(
        grantee_type=g.grantee_type,  # type: ignore[arg-type]
        grantee=g.grantee,
        permission=g.permission,  # type: ignore[arg-type]
        granted_by=g.granted_by,
        granted_at=g.granted_at,
    )


def permissions_view(p: Permissions) -> sch.ResourcePermissions:
    return sch.ResourcePermissions(
        owner=p.owner,
        default_permission=p.default_permission,  # type: ignore[arg-type]
        grants=[grant_view(g) for g in p.grants],
    )


def protection_view(p: ModelProtection) -> sch.Protection:
    return sch.Protection(name=p.name, group=p.group_name)


def protections_view(p: Protections) -> sch.ModelProtections:
    return sch.ModelProtections(
        aliases=[protection_view(r) for r in p.aliases],
        stages=[protection_view(r) for r in p.stages],
    )

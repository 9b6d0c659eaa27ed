"""SDK: who may read, change and manage a registered model or an experiment.

Each model and experiment has an owner (its creator, who holds MANAGE), the server's default
permission for everyone else, and grants of READ, EDIT or MANAGE to users or groups. Managing
grants needs MANAGE on the resource::

    client.grant_model_permission("churn", user="bob", permission="EDIT")
    client.grant_experiment_permission("churn-training", group="ml-reviewers")  # READ
    client.get_model_permissions("churn").grants
    client.revoke_model_permission("churn", user="bob")
"""

from __future__ import annotations

from podstack.client.base import BaseClient, seg
from podstack.schemas import permissions as sch
from podstack.schemas.tracking import Experiment

ExperimentRef = str | Experiment


def _grantee(user: str | None, group: str | None) -> tuple[str, str]:
    """``(grantee_type, grantee)`` from the keyword the caller used. Checked here, not left to
    the server: with both or neither there is no request that could mean what was asked."""
    if (user is None) == (group is None):
        got = "both user= and group=" if user is not None else "neither user= nor group="
        raise ValueError(f"Name exactly one grantee: user='name' or group='name' (got {got}).")
    if user is not None:
        if not user.strip():
            raise ValueError("user= must be a non-empty user name.")
        return "user", user
    assert group is not None
    if not group.strip():
        raise ValueError("group= must be a non-empty group name.")
    return "group", group


def _level(permission: str) -> str:
    # "read" and "READ" mean the same to a person; anything else still reaches the server,
    # whose 422 lists the valid levels (one source of truth for them).
    return permission.strip().upper() if isinstance(permission, str) else permission


def _experiment_ref(experiment: ExperimentRef) -> str:
    return experiment.id if isinstance(experiment, Experiment) else experiment


class PermissionsAPI(BaseClient):
    # ------------------------------------------------------------------ shared
    def _get_permissions(self, base: str) -> sch.ResourcePermissions:
        return sch.ResourcePermissions.model_validate(self._request("GET", f"{base}/permissions"))

    def _grant(self, base: str, user: str | None, group: str | None, permission: str) -> sch.Grant:
        gtype, name = _grantee(user, group)
        body = {"permission": _level(permission)}
        path = f"{base}/permissions/{gtype}/{seg(name)}"
        return sch.Grant.model_validate(self._request("PUT", path, json=body))

    def _revoke(self, base: str, user: str | None, group: str | None) -> None:
        gtype, name = _grantee(user, group)
        self._request("DELETE", f"{base}/permissions/{gtype}/{seg(name)}")

    # ------------------------------------------------------------------ models
    def get_model_permissions(self, name: str) -> sch.ResourcePermissions:
        """The model's owner, the server's default permission and its grants (needs MANAGE)."""
        return self._get_permissions(f"/registered-models/{seg(name)}")

    def grant_model_permission(
        self,
        name: str,
        *,
        user: str | None = None,
        group: str | None = None,
        permission: str = "READ",
    ) -> sch.Grant:
        """Gives one user or group ``permission`` (READ, EDIT or MANAGE) on the model,
        replacing what that grantee held. Raises ``NotFound`` for an unknown user or group,
        ``ValidationFailed`` for an unknown level."""
        return self._grant(f"/registered-models/{seg(name)}", user, group, permission)

    def revoke_model_permission(
        self, name: str, *, user: str | None = None, group: str | None = None
    ) -> None:
        """Removes the grantee's grant; ``NotFound`` when it holds none (an owner and the
        default permission are not grants)."""
        self._revoke(f"/registered-models/{seg(name)}", user, group)

    # ------------------------------------------------------------------ experiments
    def get_experiment_permissions(self, experiment: ExperimentRef) -> sch.ResourcePermissions:
        """Like ``get_model_permissions``; ``experiment`` is an id, a name or an Experiment."""
        return self._get_permissions(f"/experiments/{seg(_experiment_ref(experiment))}")

    def grant_experiment_permission(
        self,
        experiment: ExperimentRef,
        *,
        user: str | None = None,
        group: str | None = None,
        permission: str = "READ",
    ) -> sch.Grant:
        return self._grant(
            f"/experiments/{seg(_experiment_ref(experiment))}", user, group, permission
        )

    def revoke_experiment_permission(
        self, experiment: ExperimentRef, *, user: str | None = None, group: str | None = None
    ) -> None:
        self._revoke(f"/experiments/{seg(_experiment_ref(experiment))}", user, group)

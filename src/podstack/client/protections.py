"""Protected aliases and stages of a registered model (``/registered-models/{name}/protections``).

Only holders of MANAGE on the model, or members of the protection's group, may move a
protected alias or move versions into or out of a protected stage; protecting and
unprotecting need MANAGE.
"""

from __future__ import annotations

from podstack.client.base import BaseClient, seg
from podstack.schemas import permissions as sch


def _path(name: str) -> str:
    return f"/registered-models/{seg(name)}/protections"


class ProtectionsAPI(BaseClient):
    def get_model_protections(self, name: str) -> sch.ModelProtections:
        """The model's protected aliases and stages, each with the group (if any) that may
        move it besides MANAGE holders."""
        return sch.ModelProtections.model_validate(self._request("GET", _path(name)))

    def protect_alias(self, name: str, alias: str, group: str | None = None) -> sch.Protection:
        """Protects ``alias`` (or changes its group): from now on only MANAGE holders, or
        members of ``group``, may set, move, roll back or delete it."""
        return sch.Protection.model_validate(
            self._request("PUT", f"{_path(name)}/aliases/{seg(alias)}", json={"group": group})
        )

    def unprotect_alias(self, name: str, alias: str) -> None:
        self._request("DELETE", f"{_path(name)}/aliases/{seg(alias)}")

    def protect_stage(self, name: str, stage: str, group: str | None = None) -> sch.Protection:
        """Protects ``stage`` (e.g. ``Production``): only MANAGE holders, or members of
        ``group``, may move versions into or out of it."""
        return sch.Protection.model_validate(
            self._request("PUT", f"{_path(name)}/stages/{seg(stage)}", json={"group": group})
        )

    def unprotect_stage(self, name: str, stage: str) -> None:
        self._request("DELETE", f"{_path(name)}/stages/{seg(stage)}")

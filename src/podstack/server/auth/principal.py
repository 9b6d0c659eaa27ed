"""Who is calling, and what their role allows."""

from __future__ import annotations

from dataclasses import dataclass

from podstack.errors import PermissionDenied

ROLES = ("viewer", "editor", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    user_id: int | None = None
    # "run:<id>" for tokens handed to a scheduled job: they may only write to that run.
    scope: str | None = None
    via: str = "token"  # token | session | local

    def has_role(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]

    def require(self, role: str) -> None:
        if not self.has_role(role):
            raise PermissionDenied(
                f"This action needs the {role} role; you ({self.username}) are {self.role}.",
                {"required_role": role, "role": self.role},
            )

    def require_run_access(self, run_id: str) -> None:
        """Scoped tokens may only touch their own run."""
        if self.scope and self.scope.startswith("run:") and self.scope != f"run:{run_id}":
            raise PermissionDenied(
                f"This token is limited to {self.scope[4:]} and cannot change {run_id}.",
                {"scope": self.scope},
            )


LOCAL_ADMIN = Principal(username="local", role="admin", via="local")

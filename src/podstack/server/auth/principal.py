"""Who is calling, and what their role allows."""

from __future__ import annotations

from dataclasses import dataclass

from podstack.errors import PermissionDenied

ROLES = ("viewer", "editor", "admin")
API_PREFIX = "/api/v1"
_RANK = {r: i for i, r in enumerate(ROLES)}


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    user_id: int | None = None
    # "run:<id>" for tokens handed to a scheduled job: they may only write to that run.
    scope: str | None = None
    via: str = "token"  # token | session | local
    # The API token that authenticated this caller (also kept by UI sessions signed in with
    # a pasted token, so revoking the token ends those sessions too).
    token_id: int | None = None

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

    def require_path_in_scope(self, path: str) -> None:
        """A scoped token may do nothing beyond its scope. ``run:<id>`` (the token a scheduled
        job gets) reaches only that run's endpoints, ``/api/v1/runs/<id>`` and below, plus
        ``/api/v1/me``: not other runs, not new runs, not the registry, not admin. Any other
        scope kind is refused everywhere (fail closed)."""
        if not self.scope:
            return
        kind, _, value = self.scope.partition(":")
        # Only API paths can be in scope: a UI route such as /runs/<id>/register shares the
        # run's path shape but registers versions, so the prefix must be present, not stripped
        # when it happens to be there.
        if not path.startswith(API_PREFIX + "/"):
            raise self._outside_scope(kind, value, path)
        rel = path[len(API_PREFIX) :]
        segments = rel.split("/")
        if kind == "run" and value and "." not in segments and ".." not in segments:
            own = f"/runs/{value}"
            if rel in ("/me", own) or rel.startswith(own + "/"):
                return
        raise self._outside_scope(kind, value, path)

    def _outside_scope(self, kind: str, value: str, path: str) -> PermissionDenied:
        return PermissionDenied(
            f"This token is limited to {self.scope} and can only be used on "
            + (f"{API_PREFIX}/runs/{value}/…" if kind == "run" else "nothing")
            + f"; {path} is outside that scope.",
            {"scope": self.scope, "path": path},
        )


LOCAL_ADMIN = Principal(username="local", role="admin", via="local")

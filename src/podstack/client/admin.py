"""SDK methods for the caller, users, API tokens and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from podstack.client.base import BaseClient, seg
from podstack.schemas.audit import AuditEventOut
from podstack.schemas.auth import (
    MeOut,
    ServiceAccountOut,
    TokenCreated,
    TokenOut,
    UserOut,
)

# Distinguishes "leave unchanged" from "clear" (None) in update_user.
_UNSET: Any = object()


class AdminAPI(BaseClient):
    def whoami(self) -> MeOut:
        """The user (and role) this client acts as."""
        return MeOut.model_validate(self._request("GET", "/me"))

    # ------------------------------------------------------------------ users (admins)
    def create_user(
        self,
        username: str,
        role: str = "viewer",
        *,
        password: str | None = None,
        email: str | None = None,
        display_name: str | None = None,
    ) -> UserOut:
        body = {
            "username": username,
            "role": role,
            "password": password,
            "email": email,
            "display_name": display_name,
        }
        return UserOut.model_validate(self._request("POST", "/users", json=body))

    def list_users(self) -> list[UserOut]:
        return [UserOut.model_validate(u) for u in self._paginate("/users", "items")]

    def get_user(self, username: str) -> UserOut:
        return UserOut.model_validate(self._request("GET", f"/users/{seg(username)}"))

    def update_user(
        self,
        username: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password: str | None = _UNSET,
        email: str | None = _UNSET,
        display_name: str | None = _UNSET,
    ) -> UserOut:
        """Changes only what is passed. ``password=None`` removes the password (token-only
        user); ``email=None`` / ``display_name=None`` clear them."""
        body: dict[str, Any] = {}
        if role is not None:
            body["role"] = role
        if disabled is not None:
            body["disabled"] = disabled
        for key, value in (
            ("password", password),
            ("email", email),
            ("display_name", display_name),
        ):
            if value is not _UNSET:
                body[key] = value
        return UserOut.model_validate(self._request("PATCH", f"/users/{seg(username)}", json=body))

    # ------------------------------------------------------------------ tokens
    def create_token(
        self,
        name: str,
        expires_in_days: int | None = None,
        username: str | None = None,
        *,
        expires_at: datetime | None = None,
    ) -> TokenCreated:
        """Creates an API token; ``.token`` holds the value, which is never shown again."""
        body: dict[str, Any] = {"name": name}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        if username is not None:
            body["username"] = username
        return TokenCreated.model_validate(self._request("POST", "/tokens", json=body))

    def list_tokens(self, username: str | None = None, all_users: bool = False) -> list[TokenOut]:
        """Your tokens; admins may pass ``username`` or ``all_users=True``. Token values are
        never listed (only their first characters, ``prefix``)."""
        params: dict[str, Any] = {"username": username, "all": "true" if all_users else None}
        return [TokenOut.model_validate(t) for t in self._paginate("/tokens", "items", params)]

    def revoke_token(self, token_id: int) -> TokenOut:
        return TokenOut.model_validate(self._request("DELETE", f"/tokens/{int(token_id)}"))

    # ------------------------------------------------------------------ service accounts (admins)
    def create_service_account(
        self, name: str, role: str = "viewer", *, description: str | None = None
    ) -> ServiceAccountOut:
        """A non-human account for automation (CI): API tokens only, no password, no UI."""
        body = {"name": name, "role": role, "description": description}
        return ServiceAccountOut.model_validate(
            self._request("POST", "/service-accounts", json=body)
        )

    def list_service_accounts(self) -> list[ServiceAccountOut]:
        return [
            ServiceAccountOut.model_validate(a)
            for a in self._paginate("/service-accounts", "items")
        ]

    def get_service_account(self, name: str) -> ServiceAccountOut:
        return ServiceAccountOut.model_validate(
            self._request("GET", f"/service-accounts/{seg(name)}")
        )

    def update_service_account(
        self,
        name: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        description: str | None = _UNSET,
    ) -> ServiceAccountOut:
        """Changes only what is passed; ``description=None`` clears it."""
        body: dict[str, Any] = {}
        if role is not None:
            body["role"] = role
        if disabled is not None:
            body["disabled"] = disabled
        if description is not _UNSET:
            body["description"] = description
        return ServiceAccountOut.model_validate(
            self._request("PATCH", f"/service-accounts/{seg(name)}", json=body)
        )

    def create_service_account_token(
        self,
        name: str,
        token_name: str,
        expires_in_days: int | None = None,
        *,
        expires_at: datetime | None = None,
    ) -> TokenCreated:
        """Issues a token to service account ``name``; ``.token`` is shown only this once.
        List and revoke its tokens with ``list_tokens(username=name)`` / ``revoke_token``."""
        body: dict[str, Any] = {"name": token_name}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        return TokenCreated.model_validate(
            self._request("POST", f"/service-accounts/{seg(name)}/tokens", json=body)
        )

    # ------------------------------------------------------------------ audit (admins)
    def list_audit_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        since: datetime | None = None,
        max_results: int | None = 1000,
    ) -> list[AuditEventOut]:
        """Audit events, newest first (at most ``max_results``; None for all)."""
        params: dict[str, Any] = {
            "actor": actor,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "since": since.isoformat() if since else None,
            "limit": min(max_results, 1000) if max_results else None,
        }
        return [
            AuditEventOut.model_validate(e)
            for e in self._paginate("/audit", "items", params, max_items=max_results)
        ]

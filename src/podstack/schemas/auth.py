"""Wire contract for the caller, users and API tokens.

Token responses never carry the hash; the token value itself appears exactly once, in the
response to ``POST /tokens`` (``TokenCreated.token``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field, computed_field

from podstack.schemas.common import Input, Schema

# Loose bounds only: the service owns the real rules (and their error messages), these
# just stop absurd payloads before they reach it.
_Username = Annotated[str, Field(max_length=200)]
_Password = Annotated[str, Field(max_length=1024)]
_Email = Annotated[str, Field(max_length=320)]
_DisplayName = Annotated[str, Field(max_length=200)]


class MeOut(Schema):
    """Who the server thinks the caller is."""

    username: str
    role: str
    user_id: int | None = None
    # token | session | local (no-auth or embedded mode)
    via: str = "token"
    # Set for tokens limited to one run (handed to scheduled jobs).
    scope: str | None = None


class UserCreate(Input):
    username: _Username
    role: str = "viewer"
    password: _Password | None = None
    email: _Email | None = None
    display_name: _DisplayName | None = None


class UserUpdate(Input):
    """Only the fields sent are changed. ``password: null`` removes the password (the user
    can then sign in with API tokens only); ``email``/``display_name`` null clears them."""

    role: str | None = None
    disabled: bool | None = None
    password: _Password | None = None
    email: _Email | None = None
    display_name: _DisplayName | None = None


class UserOut(Schema):
    id: int
    username: str
    role: str
    display_name: str | None = None
    email: str | None = None
    disabled: bool = False
    has_password: bool = False
    created_at: datetime
    # "human", or "service" for a service account (tokens only; /service-accounts).
    kind: str = "human"


class TokenCreate(Input):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    expires_at: datetime | None = None
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    # Admins may create a token for another user; everyone else only for themselves.
    username: _Username | None = None


class TokenOut(Schema):
    """A token's metadata. Never the value, never the hash."""

    id: int
    name: str
    # First characters of a generated token; None for a chosen value (PODSTACK_ADMIN_TOKEN).
    prefix: str | None = None
    username: str
    scope: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> Literal["active", "revoked", "expired"]:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= datetime.now(UTC):
            return "expired"
        return "active"


class TokenCreated(TokenOut):
    """Returned once, at creation: ``token`` is the secret to store now."""

    token: str


# ---------------------------------------------------------------- service accounts


class ServiceAccountCreate(Input):
    """A non-human account (e.g. a CI pipeline): API tokens only, never a password or a
    browser session."""

    name: _Username
    role: str = "viewer"
    description: _DisplayName | None = None


class ServiceAccountUpdate(Input):
    """Only the fields sent are changed; ``description: null`` clears it."""

    role: str | None = None
    disabled: bool | None = None
    description: _DisplayName | None = None


class ServiceAccountOut(Schema):
    id: int
    name: str
    role: str
    description: str | None = None
    disabled: bool = False
    created_at: datetime


class ServiceAccountTokenCreate(Input):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    expires_at: datetime | None = None
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None

"""Users and API tokens; external identities (single sign-on) and directory groups."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from podstack.server.db.base import Base, UTCDateTime, utcnow

HUMAN_KIND = "human"
SERVICE_KIND = "service"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    # argon2id hash; NULL means the user can only use API tokens.
    password_hash: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Browser sessions carry the value they were signed in under (deps.py ``authenticate``);
    # sign-out, a password, role change or disabling bumps it, which ends every session
    # signed in before.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # "human" or "service" (a non-human account for CI pipelines: API tokens only, never a
    # password or a browser session; auth/service_accounts.py).
    kind: Mapped[str] = mapped_column(String(16), default="human", server_default="human")

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete")

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None

    @property
    def is_service_account(self) -> bool:
        return self.kind == SERVICE_KIND


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    # First characters of a generated ``pst_`` token, shown in lists so people can tell tokens
    # apart. NULL for a value someone chose (PODSTACK_ADMIN_TOKEN): its first characters
    # would be a real piece of a secret that may be used elsewhere.
    prefix: Mapped[str | None] = mapped_column(String(16))
    # sha256 of the full token. Tokens are 256-bit random, so a fast hash is safe and
    # lets us look a token up by hash in one indexed query.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Optional narrowing, e.g. "run:<run_id>" for tokens handed to scheduled jobs.
    scope: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")

    @property
    def username(self) -> str:
        return self.user.username


class UserIdentity(Base):
    """The account at an OpenID provider that signs in as a user: (issuer, subject) is the
    provider's stable, unique id for a person (usernames and emails can change or be reused)."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="uq_user_identities_iss_sub"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True, index=True
    )
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DirectoryGroup(Base):
    """A group as the identity provider names it (the groups claim), recorded at sign-in.
    Kept apart from approval reviewer groups (admin-managed): a reviewer group includes the
    members of the directory group of the same name (approvals/policies.py), and grants to
    groups can refer to these rows later."""

    __tablename__ = "directory_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DirectoryGroupMember(Base):
    """Replaced at each single sign-on of the user by what the provider says then."""

    __tablename__ = "directory_group_members"
    __table_args__ = (Index("ix_directory_group_members_user", "user_id"),)

    group_id: Mapped[int] = mapped_column(
        ForeignKey("directory_groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

"""Service accounts: non-human users for CI pipelines and other automation.

A service account is a row in ``users`` with ``kind = "service"``: it has a global role and
API tokens like anyone (so every role check, audit entry and token rule applies unchanged),
but never a password and never a browser session, and it cannot mint tokens for itself:
only admins issue them, so revoking a leaked token is not undone by tokens it made.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, Unauthenticated
from podstack.schemas.auth import ServiceAccountOut
from podstack.server.audit import service as audit
from podstack.server.auth import service
from podstack.server.auth.models import SERVICE_KIND, User
from podstack.server.auth.principal import Principal
from podstack.server.db.base import utcnow


def to_out(user: User) -> ServiceAccountOut:
    return ServiceAccountOut(
        id=user.id,
        name=user.username,
        role=user.role,
        description=user.display_name,
        disabled=user.disabled,
        created_at=user.created_at,
    )


def create(
    session: Session, actor: str, name: str, role: str = "viewer", description: str | None = None
) -> User:
    service.validate_username(name)
    role = service.validate_role(role)
    description = service.validate_display_name(description)
    if session.scalar(select(User.id).where(User.username == name)) is not None:
        raise Conflict(
            f"A user or service account named {name!r} already exists; choose another name.",
            {"name": name},
        )
    user = User(
        username=name,
        role=role,
        display_name=description,
        password_hash=None,
        kind=SERVICE_KIND,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "service_account.create",
        "user",
        name,
        None,
        {"name": name, "role": role, "description": description},
    )
    return user


def list_all(session: Session) -> list[User]:
    q = select(User).where(User.kind == SERVICE_KIND).order_by(User.username)
    return list(session.scalars(q))


def get(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.username == name, User.kind == SERVICE_KIND))
    if user is None:
        raise NotFound(
            f"Service account {name!r} does not exist (people are listed under /users).",
            {"name": name},
        )
    return user


def update(session: Session, actor: str, name: str, changes: dict[str, Any]) -> User:
    """Role, disabled and description; one transaction, audited by the user rules."""
    get(session, name)
    mapped = {("display_name" if k == "description" else k): v for k, v in changes.items()}
    return service.update_user(session, actor, name, mapped)


def issue_token(
    session: Session,
    principal: Principal,
    name: str,
    token_name: str,
    *,
    expires_at: datetime | None = None,
    expires_in_days: int | None = None,
) -> service.IssuedToken:
    """An admin issuing a token to a service account (the value is shown once)."""
    account = get(session, name)
    if account.disabled:
        raise Conflict(
            f"Service account {name!r} is disabled; enable it before issuing tokens.",
            {"name": name},
        )
    return service.issue_token(
        session,
        principal,
        token_name,
        username=name,
        expires_at=expires_at,
        expires_in_days=expires_in_days,
    )


def is_service_account(session: Session, user_id: int | None) -> bool:
    if user_id is None:
        return False
    kind = session.scalar(select(User.kind).where(User.id == user_id))
    return kind == SERVICE_KIND


def browser_refusal(session: Session, user_id: int | None) -> Unauthenticated | None:
    """Service accounts never get a browser session (not even by pasting their token into
    the sign-in form): a session outlives the pipeline and carries no CI context."""
    if is_service_account(session, user_id):
        return Unauthenticated(
            "Service accounts cannot sign in to the web UI; use their API tokens with the "
            "SDK, the CLI or the REST API."
        )
    return None

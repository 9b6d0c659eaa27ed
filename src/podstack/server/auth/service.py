"""Users, API tokens and the first-start admin: the auth capability's entry point. Password
hashing and password sign-in live in passwords.py, API tokens in tokens.py; their public names
are re-exported here, so callers reach all of auth through this module."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, ValidationFailed
from podstack.server.audit import service as audit
from podstack.server.auth import token_cache
from podstack.server.auth.models import ApiToken, User
from podstack.server.auth.passwords import (
    authenticate_password,
    hash_password,
    refuse_service_account_password,
)
from podstack.server.auth.principal import ROLES, Principal
from podstack.server.auth.tokens import (
    TOKEN_PREFIX,
    IssuedToken,
    TokenCheck,
    authenticate_token,
    create_token,
    hash_token,
    issue_token,
    new_token_value,
    resolve_token,
    revoke_token,
    token_is_active,
    touch_token,
    visible_tokens,
)
from podstack.server.db.base import utcnow

# Re-exported: the sign-in routes, the request dependencies (deps.py), the CLI and the token
# pages reach password sign-in and API tokens through the service.
__all__ = [
    "TOKEN_PREFIX",
    "IssuedToken",
    "TokenCheck",
    "authenticate_password",
    "authenticate_token",
    "create_token",
    "hash_token",
    "issue_token",
    "new_token_value",
    "resolve_token",
    "revoke_token",
    "token_is_active",
    "touch_token",
    "visible_tokens",
]

_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


def validate_username(username: str) -> str:
    if not _USERNAME_RE.match(username or ""):
        raise ValidationFailed(
            "Usernames are 1-64 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            {"field": "username", "value": username[:100] if username else username},
        )
    return username


def validate_role(role: str) -> str:
    role = (role or "").lower()
    if role not in ROLES:
        raise ValidationFailed(
            f"Unknown role {role!r}; valid roles are {', '.join(ROLES)}.",
            {"field": "role", "valid": list(ROLES)},
        )
    return role


def validate_email(email: str | None) -> str | None:
    """Empty means "no email". A light shape check: the address is only used for notices."""
    email = (email or "").strip() or None
    if email is not None and (len(email) > 320 or not _EMAIL_RE.match(email)):
        raise ValidationFailed(
            f"{email[:100]!r} is not an email address (expected name@domain).",
            {"field": "email"},
        )
    return email


def validate_display_name(display_name: str | None) -> str | None:
    display_name = (display_name or "").strip() or None
    if display_name is not None and len(display_name) > 200:
        raise ValidationFailed(
            "Display names are at most 200 characters.", {"field": "display_name"}
        )
    return display_name


# ---------------------------------------------------------------- users


def count_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"User {username!r} does not exist.", {"username": username})
    return user


def list_users(
    session: Session, *, limit: int | None = None, after: str | None = None
) -> list[User]:
    """Users by username; ``after`` + ``limit`` give keyset pages."""
    q = select(User).order_by(User.username)
    if after is not None:
        q = q.where(User.username > after)
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q))


def create_user(
    session: Session,
    actor: str,
    username: str,
    role: str = "viewer",
    password: str | None = None,
    email: str | None = None,
    display_name: str | None = None,
) -> User:
    validate_username(username)
    role = validate_role(role)
    email = validate_email(email)
    display_name = validate_display_name(display_name)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"User {username!r} already exists.", {"username": username})
    user = User(
        username=username,
        role=role,
        email=email,
        display_name=display_name,
        password_hash=hash_password(password) if password is not None else None,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "user.create",
        "user",
        username,
        None,
        {"username": username, "role": role, "email": email},
    )
    return user


def end_browser_sessions(user: User) -> None:
    """Every browser session of ``user`` signed in before this stops working (deps.py
    ``check_session`` compares the generation). In SQL, so concurrent bumps do not merge."""
    user.session_generation = User.session_generation + 1  # type: ignore[assignment]


def sign_out(session: Session, user: User) -> None:
    """``POST /logout``: ends all of the user's browser sessions (one counter per user)."""
    end_browser_sessions(user)
    audit.record(session, user.username, "user.sign_out", "user", user.username)


def set_role(session: Session, actor: str, username: str, role: str) -> User:
    role = validate_role(role)
    user = get_user(session, username)
    before = user.role
    if before == "admin" and role != "admin":
        _ensure_other_admin(session, user)
    user.role = role
    end_browser_sessions(user)
    token_cache.mark_auth_changed(session)
    audit.record(
        session, actor, "user.set_role", "user", username, {"role": before}, {"role": role}
    )
    return user


def set_disabled(session: Session, actor: str, username: str, disabled: bool) -> User:
    user = get_user(session, username)
    if disabled and user.role == "admin":
        _ensure_other_admin(session, user)
    before = user.disabled
    user.disabled = disabled
    if disabled:
        end_browser_sessions(user)
    token_cache.mark_auth_changed(session)
    audit.record(
        session,
        actor,
        "user.disable" if disabled else "user.enable",
        "user",
        username,
        {"disabled": before},
        {"disabled": disabled},
    )
    return user


def set_password(session: Session, actor: str, username: str, password: str) -> User:
    user = get_user(session, username)
    refuse_service_account_password(user)
    user.password_hash = hash_password(password)
    end_browser_sessions(user)
    audit.record(session, actor, "user.set_password", "user", username)
    return user


def clear_password(session: Session, actor: str, username: str) -> User:
    """The user can then authenticate with API tokens only."""
    user = get_user(session, username)
    if user.password_hash is not None:
        user.password_hash = None
        end_browser_sessions(user)
        audit.record(session, actor, "user.clear_password", "user", username)
    return user


_UPDATABLE = ("role", "disabled", "password", "email", "display_name")


def update_user(session: Session, actor: str, username: str, changes: dict[str, Any]) -> User:
    """Applies a partial update (only the keys present). One transaction: if any change is
    refused, the caller's session rolls back and nothing changes."""
    unknown = sorted(set(changes) - set(_UPDATABLE))
    if unknown:
        raise ValidationFailed(
            f"Cannot change {', '.join(unknown)}; changeable fields are {', '.join(_UPDATABLE)}.",
            {"fields": unknown},
        )
    for field in ("role", "disabled"):
        if field in changes and changes[field] is None:
            raise ValidationFailed(f"{field} cannot be null.", {"field": field})
    user = get_user(session, username)
    if "role" in changes and validate_role(changes["role"]) != user.role:
        set_role(session, actor, username, changes["role"])
    if "disabled" in changes and bool(changes["disabled"]) != user.disabled:
        set_disabled(session, actor, username, bool(changes["disabled"]))
    if "password" in changes:
        if changes["password"] is None:
            clear_password(session, actor, username)
        else:
            set_password(session, actor, username, changes["password"])
    profile_before: dict[str, Any] = {}
    profile_after: dict[str, Any] = {}
    for field, check in (("email", validate_email), ("display_name", validate_display_name)):
        if field in changes:
            value = check(changes[field])
            if value != getattr(user, field):
                profile_before[field] = getattr(user, field)
                profile_after[field] = value
                setattr(user, field, value)
    if profile_after:
        audit.record(session, actor, "user.update", "user", username, profile_before, profile_after)
    return user


def _ensure_other_admin(session: Session, user: User) -> None:
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == "admin", User.disabled.is_(False), User.id != user.id)
    )
    if not others:
        raise Conflict("Refusing to remove the last active admin.", {"username": user.username})


def principal_for_user(user: User) -> Principal:
    return Principal(username=user.username, role=user.role, user_id=user.id, via="session")


# ---------------------------------------------------------------- bootstrap


def bootstrap_admin(session: Session, admin_token: str | None) -> str | None:
    """Creates ``admin`` on a server with no users. Returns the token to print, if random."""
    if count_users(session) > 0:
        if admin_token:
            # Servers before the prefix rule stored the chosen token's first characters.
            session.execute(
                update(ApiToken)
                .where(ApiToken.token_hash == hash_token(admin_token), ApiToken.prefix.is_not(None))
                .values(prefix=None)
                .execution_options(synchronize_session=False)
            )
        return None
    create_user(session, "system", "admin", role="admin")
    if admin_token:
        create_token(session, "system", "admin", "bootstrap", value=admin_token)
        return None
    issued = create_token(session, "system", "admin", "bootstrap")
    return issued.value

"""Users, API tokens and the first-start admin: the auth capability's entry point. Password
hashing and password sign-in live in passwords.py (``authenticate_password`` is re-exported
here)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, PermissionDenied, Unauthenticated, ValidationFailed
from podstack.server.audit import service as audit
from podstack.server.auth import token_cache
from podstack.server.auth.models import SERVICE_KIND, ApiToken, User
from podstack.server.auth.passwords import (
    authenticate_password,
    hash_password,
    refuse_service_account_password,
)
from podstack.server.auth.principal import ROLES, Principal
from podstack.server.db.base import as_utc, utcnow

# Re-exported: the sign-in routes reach password sign-in through the service.
__all__ = ["authenticate_password"]

TOKEN_PREFIX = "pst_"
_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
# Throttle last_used_at writes: one UPDATE per token per minute is plenty for humans.
_LAST_USED_RESOLUTION = timedelta(minutes=1)
_MAX_ID = 2**31  # ids are 32-bit integer columns


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_value() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


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


# ---------------------------------------------------------------- tokens


@dataclass
class IssuedToken:
    token: ApiToken
    value: str  # shown exactly once


def create_token(
    session: Session,
    actor: str,
    username: str,
    name: str,
    expires_at: datetime | None = None,
    scope: str | None = None,
    value: str | None = None,
) -> IssuedToken:
    user = get_user(session, username)
    if not name or len(name) > 128:
        raise ValidationFailed("Token names are 1-128 characters.", {"field": "name"})
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed("expires_at must be in the future.", {"field": "expires_at"})
    raw = value or new_token_value()
    digest = hash_token(raw)
    if session.scalar(select(ApiToken.id).where(ApiToken.token_hash == digest)) is not None:
        raise Conflict("That token value is already in use.")
    tok = ApiToken(
        user_id=user.id,
        name=name,
        # Only a generated token has a prefix worth showing; a chosen value's first characters
        # are part of a secret that may be used elsewhere.
        prefix=raw[:8] if value is None else None,
        token_hash=digest,
        scope=scope,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(tok)
    session.flush()
    audit.record(
        session,
        actor,
        "token.create",
        "token",
        str(tok.id),
        None,
        {
            "user": username,
            "name": name,
            "prefix": tok.prefix,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "scope": scope,
        },
    )
    return IssuedToken(tok, raw)


def list_tokens(session: Session, username: str | None = None) -> list[ApiToken]:
    q = select(ApiToken).join(User).order_by(ApiToken.id)
    if username:
        q = q.where(User.username == username)
    return list(session.scalars(q))


def revoke_token(session: Session, principal: Principal, token_id: int) -> ApiToken:
    # Out-of-range ids cannot exist (and would overflow PostgreSQL's integer column).
    tok = session.get(ApiToken, token_id) if 0 < token_id < _MAX_ID else None
    if tok is None:
        raise NotFound(f"Token {token_id} does not exist.", {"token_id": token_id})
    if not principal.has_role("admin") and tok.user_id != principal.user_id:
        raise PermissionDenied("You can only revoke your own tokens.")
    if tok.revoked_at is None:
        tok.revoked_at = utcnow()
        token_cache.mark_auth_changed(session)
        audit.record(
            session,
            principal.username,
            "token.revoke",
            "token",
            str(tok.id),
            {"revoked": False},
            {"revoked": True},
        )
    return tok


def issue_token(
    session: Session,
    principal: Principal,
    name: str,
    *,
    username: str | None = None,
    expires_at: datetime | None = None,
    expires_in_days: int | None = None,
) -> IssuedToken:
    """A caller creating a token: for themselves, or (admins only) for another user."""
    if principal.scope:
        raise PermissionDenied(
            "A token limited to a single run cannot create API tokens.",
            {"scope": principal.scope},
        )
    if username is None:
        if principal.user_id is None:
            raise ValidationFailed(
                f"You are acting as {principal.username!r} (authentication is off), which has "
                "no user account; pass the username the token is for.",
                {"field": "username"},
            )
        username = principal.username
    if principal.user_id is not None:
        caller = session.get(User, principal.user_id)
        if caller is not None and caller.kind == SERVICE_KIND:
            # A leaked token must not be able to outlive its revocation by minting others.
            raise PermissionDenied(
                f"{principal.username!r} is a service account: only an admin can create its "
                "tokens (`podstack service-accounts token`).",
                {"username": principal.username},
            )
    if username != principal.username and not principal.has_role("admin"):
        raise PermissionDenied(
            f"Only admins can create tokens for other users; you ({principal.username}) "
            "can create tokens for yourself.",
            {"username": username},
        )
    if expires_at is not None and expires_in_days is not None:
        raise ValidationFailed(
            "Give either expires_at or expires_in_days, not both.",
            {"fields": ["expires_at", "expires_in_days"]},
        )
    if expires_in_days is not None:
        if expires_in_days < 1:
            raise ValidationFailed(
                "expires_in_days must be at least 1.", {"field": "expires_in_days"}
            )
        expires_at = utcnow() + timedelta(days=expires_in_days)
    elif expires_at is not None:
        expires_at = as_utc(expires_at)
    return create_token(session, principal.username, username, name, expires_at=expires_at)


def visible_tokens(
    session: Session,
    principal: Principal,
    *,
    username: str | None = None,
    all_users: bool = False,
    limit: int | None = None,
    after_id: int | None = None,
) -> list[ApiToken]:
    """Tokens the caller may see: their own; admins may ask for one user's or everyone's."""
    is_admin = principal.has_role("admin")
    if all_users and not is_admin:
        raise PermissionDenied("Only admins can list everyone's tokens.")
    if username is not None and username != principal.username and not is_admin:
        raise PermissionDenied(
            f"Only admins can list other users' tokens; you ({principal.username}) can list "
            "your own.",
            {"username": username},
        )
    q = select(ApiToken).join(User).order_by(ApiToken.id)
    if not all_users:
        if username is None:
            if principal.user_id is None:
                raise ValidationFailed(
                    f"You are acting as {principal.username!r} (authentication is off), which "
                    "has no tokens; pass a username or all=true.",
                    {"field": "username"},
                )
            q = q.where(ApiToken.user_id == principal.user_id)
        else:
            get_user(session, username)  # a clear 404 rather than an empty list
            q = q.where(User.username == username)
    if after_id is not None:
        q = q.where(ApiToken.id > after_id)
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q))


@dataclass(frozen=True)
class TokenCheck:
    principal: Principal
    expires_at: datetime | None
    stale: bool  # last_used_at is older than the resolution: call ``touch_token``


def resolve_token(session: Session, raw: str) -> TokenCheck:
    """The caller a raw token stands for. Reads only: it runs for every request whose token
    is not cached, so one indexed join and no write lock (on SQLite a write transaction per
    request would queue every reader behind the writer lock)."""
    row = session.execute(
        select(
            ApiToken.id,
            ApiToken.scope,
            ApiToken.expires_at,
            ApiToken.revoked_at,
            ApiToken.last_used_at,
            User.id,
            User.username,
            User.role,
            User.disabled,
        )
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(raw))
    ).one_or_none()
    now = utcnow()
    if row is None:
        raise Unauthenticated("Invalid API token.")
    tok_id, scope, expires_at, revoked_at, last_used_at, user_id, username, role, disabled = row
    if revoked_at is not None:
        raise Unauthenticated("This API token has been revoked.")
    if expires_at is not None and expires_at <= now:
        raise Unauthenticated("This API token has expired.")
    if disabled:
        raise Unauthenticated("This user is disabled.")
    stale = last_used_at is None or now - last_used_at > _LAST_USED_RESOLUTION
    principal = Principal(
        username=username, role=role, user_id=user_id, scope=scope, token_id=tok_id
    )
    return TokenCheck(principal, expires_at, stale)


def touch_token(session: Session, token_id: int) -> None:
    """Records use, at most once per ``_LAST_USED_RESOLUTION`` per token: the condition is in
    the UPDATE, so concurrent requests (or replicas) seeing the same stale value write once."""
    now = utcnow()
    session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            (ApiToken.last_used_at.is_(None))
            | (ApiToken.last_used_at < now - _LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def authenticate_token(session: Session, raw: str) -> Principal:
    """``resolve_token`` + ``touch_token`` in one (write) session: for sign-in."""
    check = resolve_token(session, raw)
    if check.stale and check.principal.token_id is not None:
        touch_token(session, check.principal.token_id)
    return check.principal


def token_is_active(session: Session, token_id: int) -> bool:
    """For UI sessions that signed in with a pasted token: still valid?"""
    tok = session.get(ApiToken, token_id)
    return (
        tok is not None
        and tok.revoked_at is None
        and (tok.expires_at is None or tok.expires_at > utcnow())
    )


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

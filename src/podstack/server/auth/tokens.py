"""API tokens: issuing them (value shown once, only its SHA-256 kept), listing and revoking
them, and checking the token a request carries (expiry, revocation, disabled user; ``last_used_at``
written at most once a minute). Callers reach these through ``auth.service``, which re-exports
them, as it does password sign-in from passwords.py.

The user lookup (``get_user``) stays in service.py with the rest of user management; the two
functions here that name a user import it when called, since service.py imports this module."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound, PermissionDenied, Unauthenticated, ValidationFailed
from podstack.server.audit import service as audit
from podstack.server.auth import token_cache
from podstack.server.auth.models import SERVICE_KIND, ApiToken, User
from podstack.server.auth.principal import Principal
from podstack.server.db.base import as_utc, utcnow

TOKEN_PREFIX = "pst_"
# Throttle last_used_at writes: one UPDATE per token per minute is plenty for humans.
_LAST_USED_RESOLUTION = timedelta(minutes=1)
_MAX_ID = 2**31  # ids are 32-bit integer columns


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_value() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


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
    # Imported here: service.py (which keeps the user lookups) imports this module.
    from podstack.server.auth.service import get_user

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
    # Imported here: service.py (which keeps the user lookups) imports this module.
    from podstack.server.auth.service import get_user

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

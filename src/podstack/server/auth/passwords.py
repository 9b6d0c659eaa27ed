"""Passwords: hashing (argon2), the password rules (length; service accounts have none) and
password sign-in (lockout after repeated failures; every refusal reads and takes the same).
Callers reach ``authenticate_password`` through ``auth.service``, which re-exports it."""

from __future__ import annotations

import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from podstack.errors import Unauthenticated, ValidationFailed
from podstack.server.auth.models import SERVICE_KIND, User
from podstack.server.db.base import utcnow

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"Passwords need at least {MIN_PASSWORD_LENGTH} characters.", {"field": "password"}
        )
    return _hasher.hash(password)


def refuse_service_account_password(user: User) -> None:
    # Service accounts (auth/service_accounts.py) authenticate with API tokens only.
    if user.kind == SERVICE_KIND:
        raise ValidationFailed(
            f"{user.username!r} is a service account: service accounts authenticate with API "
            "tokens only and cannot have a password.",
            {"field": "password", "username": user.username},
        )


_dummy_hash: str | None = None


def _verify_dummy(password: str) -> None:
    """One argon2 verification that always fails: the same work as checking a real password,
    so the time taken does not tell an unknown or locked account from a real one."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    try:
        _hasher.verify(_dummy_hash, password)
    except (VerificationError, InvalidHashError):
        pass


def sign_in_refused(max_failures: int, lockout_seconds: int) -> Unauthenticated:
    """The one answer to every refused password sign-in. Unknown user, wrong password, disabled
    or locked account all read the same (message, status, no details), so nobody can tell which
    usernames exist by failing a few times and watching for a lockout message."""
    minutes = max(1, round(lockout_seconds / 60))
    return Unauthenticated(
        f"Wrong username or password. After {max_failures} failed attempts in a row an "
        f"account is locked for {minutes} minute{'s' if minutes != 1 else ''}."
    )


def authenticate_password(
    session: Session, username: str, password: str, *, max_failures: int, lockout_seconds: int
) -> User:
    """Checks a password; locks the account for a while after repeated failures."""
    user = session.scalar(select(User).where(User.username == username))
    now = utcnow()
    generic = sign_in_refused(max_failures, lockout_seconds)
    if user is None or user.disabled or not user.password_hash:
        _verify_dummy(password)
        raise generic
    if user.locked_until and user.locked_until > now:
        # Locked: refused like any wrong password (even the right one, until the lock ends).
        _verify_dummy(password)
        raise generic
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        if user.failed_logins >= max_failures:
            user.locked_until = now + timedelta(seconds=lockout_seconds)
            user.failed_logins = 0
        raise generic
    user.failed_logins = 0
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user
